from __future__ import annotations

from django.apps import AppConfig


class ServingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.serving"
    label = "serving"
    verbose_name = "Serving"

    def ready(self) -> None:
        from recadmin.serving.observability import register

        register()
