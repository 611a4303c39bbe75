"""Metrics in the admin: the attributed events (read-only), with links to the dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from recadmin.core.admin_base import ModelAdmin
from recadmin.metrics.models import Attribution


@admin.register(Attribution)
class AttributionAdmin(ModelAdmin):
    list_display = (
        "event_id",
        "type",
        "method",
        "recommendation_id",
        "position",
        "scene",
        "model_label",
        "variant_id",
        "revenue",
        "occurred_at",
    )
    list_filter = ("type", "method", "scene")
    search_fields = ("recommendation_id", "customer_shop_id")
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
