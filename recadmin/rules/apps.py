from __future__ import annotations

from django.apps import AppConfig


class RulesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.rules"
    label = "rules"
    verbose_name = "Rules"

    def ready(self) -> None:
        from recadmin.rules import signals  # noqa: F401 - connects the cache invalidation
