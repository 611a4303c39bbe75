from __future__ import annotations

from django.apps import AppConfig


class ModelopsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.modelops"
    label = "modelops"
    verbose_name = "Model operations"

    def ready(self) -> None:
        # TorchServe call metrics, the readiness check and the registry's gauges.
        from recadmin.modelops.observability import register

        register()
