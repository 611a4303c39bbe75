from __future__ import annotations

from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.experiments"
    label = "experiments"
    verbose_name = "Experiments"

    def ready(self) -> None:
        from recadmin.experiments import signals  # noqa: F401 - connects the cache invalidation
