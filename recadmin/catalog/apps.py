from __future__ import annotations

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.catalog"
    label = "catalog"
    verbose_name = "Catalog"
