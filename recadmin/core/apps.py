from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Registers the OpenAPI description of API-key auth with drf-spectacular.
        from django.core.signals import request_finished

        from recadmin.core import schema  # noqa: F401
        from recadmin.core.observability import readiness  # noqa: F401 - core's readiness checks
        from recadmin.core.observability.middleware import request_ended
        from recadmin.core.observability.tasks import connect

        connect()
        request_finished.connect(request_ended, dispatch_uid="recadmin-request-id-end")
