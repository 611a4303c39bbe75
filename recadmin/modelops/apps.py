from __future__ import annotations

from django.apps import AppConfig


class ModelopsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recadmin.modelops"
    label = "modelops"
    verbose_name = "Model operations"
