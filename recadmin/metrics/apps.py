from __future__ import annotations

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.metrics"
    label = "metrics"
    verbose_name = "Metrics"

    def ready(self) -> None:
        from recadmin.experiments.selectors import page_latency_reader_register
        from recadmin.metrics.observability import register
        from recadmin.metrics.selectors import variant_latency_quantiles
        from recadmin.modelops.registry import impressions_export_register

        register()
        impressions_export_register("recadmin.metrics.impressions.impressions_export")
        page_latency_reader_register(variant_latency_quantiles)
