"""Events in the admin: read-only, fast on millions of rows (no full counts, a cheap date
hierarchy, filters that need no DISTINCT over the table), and each customer's latest events
inline on the customer page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from recadmin.catalog.admin import CustomerAdmin
from recadmin.catalog.admin_tools import CappedCountPaginator, cheap_dates
from recadmin.catalog.models import Customer, Item
from recadmin.core.admin_base import ModelAdmin, TabularInline
from recadmin.events.models import Event

INLINE_LATEST = 20
EVENT_FIELDS = ["occurred_at", "type", "item", "value", "scene", "recommendation_id", "event_id"]


class EventTypeFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # The configured types: no SELECT DISTINCT over millions of rows.
        return [(name, name) for name in settings.EVENT_TYPE_WEIGHTS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(type=self.value()) if self.value() else queryset


class SceneFilter(admin.SimpleListFilter):
    title = "scene"
    parameter_name = "scene"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Scenes seen in the latest events (an index range, not a scan); any other can be typed in the URL.
        recent = Event.objects.order_by("-occurred_at").values_list("scene", flat=True)[:5000]
        return [(s, s) for s in sorted(set(recent)) if s]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(scene=self.value()) if self.value() else queryset


class FromRecommendationFilter(admin.SimpleListFilter):
    title = "from a recommendation"
    parameter_name = "from_recommendation"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        if self.value() == "yes":
            return queryset.filter(recommendation_id__isnull=False)
        if self.value() == "no":
            return queryset.filter(recommendation_id__isnull=True)
        return queryset


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ["occurred_at", "type", "customer", "item", "value", "scene", "recommendation_id"]
    list_filter = [EventTypeFilter, SceneFilter, FromRecommendationFilter]
    list_select_related = ["customer", "item"]
    raw_id_fields = ["customer", "item"]
    search_fields = ["=event_id"]  # shows the search box; get_search_results does the work
    search_help_text = "An exact event id, recommendation id, or a customer's or item's shop id."
    date_hierarchy = "occurred_at"
    ordering = ["-occurred_at"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        return cheap_dates(super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Event], search_term: str) -> Any:
        # An exact id: the event's, its recommendation's, or a customer's or item's shop id. Resolving
        # the shop ids first turns the search into an OR of index probes; Django's own search would
        # OR across joins, which PostgreSQL can only answer with a scan of the whole table.
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(event_id=term) | Q(recommendation_id=term)
        customer_ids = list(Customer.objects.filter(shop_id=term).values_list("id", flat=True))
        item_ids = list(Item.objects.filter(shop_id=term).values_list("id", flat=True))
        if customer_ids:
            condition |= Q(customer_id__in=customer_ids)
        if item_ids:
            condition |= Q(item_id__in=item_ids)
        return queryset.filter(condition), False


class LatestEventsInline(ReadOnlyMixin, TabularInline):
    model = Event
    fields = EVENT_FIELDS
    readonly_fields = EVENT_FIELDS
    extra = 0
    max_num = 0
    show_change_link = True
    verbose_name_plural = f"latest {INLINE_LATEST} events"
    ordering = ["-occurred_at"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        qs = super().get_queryset(request).select_related("item")
        match = request.resolver_match
        customer_id = match.kwargs.get("object_id") if match else None
        if not customer_id or not str(customer_id).isdigit():
            return qs.none()
        # A customer may have thousands of events: only the newest few are worth a page.
        latest = list(
            Event.objects.filter(customer_id=int(customer_id))
            .order_by("-occurred_at")
            .values_list("id", flat=True)[:INLINE_LATEST]
        )
        return qs.filter(id__in=latest)


admin.site.unregister(Customer)


@admin.register(Customer)
class CustomerWithEventsAdmin(CustomerAdmin):
    inlines = [LatestEventsInline]
