"""Behaviour events: what a customer did with an item, when, and where."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from recadmin.catalog.models import Customer, Item

EVENT_ID_MAX_LENGTH = 128
SCENE_MAX_LENGTH = 64
TYPE_MAX_LENGTH = 32
RECOMMENDATION_ID_MAX_LENGTH = 64
# Event.price: a DecimalField(12, 2) holds at most this much per unit.
PRICE_MAX_DIGITS = 12
PRICE_DECIMAL_PLACES = 2
PRICE_MAX = 10 ** (PRICE_MAX_DIGITS - PRICE_DECIMAL_PLACES) - 1


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No database-level foreign keys: PostgreSQL checks each one at commit by locking the referenced
    # customer and item rows (FOR KEY SHARE), which more than doubled the database's work per ingested
    # event. Integrity is kept by the application instead: ingestion resolves both ids in the same
    # transaction, Django's collector cascades a customer's deletion and protects items with events
    # (on_delete below still applies). No separate single-column indexes either: the composite
    # indexes below start with these columns.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="events", db_constraint=False, db_index=False
    )
    # Items are deactivated, never deleted, while events point at them: their history is training data.
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="events", db_constraint=False, db_index=False)
    # The allowed types and their training weights are a setting (EVENT_TYPE_WEIGHTS), not choices,
    # so a shop can add one without a migration.
    type = models.CharField(max_length=TYPE_MAX_LENGTH)
    value = models.FloatField(null=True, blank=True, help_text="Rating or quantity, when the type has one.")
    # Per unit. For a purchase sent without one, the item's catalog price at ingestion time is
    # recorded here: a later price change must not rewrite past revenue.
    price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Price per unit (purchases: sent, or the catalog price when the event was stored).",
    )
    occurred_at = models.DateTimeField()
    # A scene's slug, kept as a string: events sit below rules and must not depend on them.
    scene = models.CharField(max_length=SCENE_MAX_LENGTH, blank=True, default="")
    context = models.JSONField(default=dict, blank=True, help_text="Device, page, ... as the shop sends them.")
    recommendation_id = models.CharField(max_length=RECOMMENDATION_ID_MAX_LENGTH, null=True, blank=True)
    event_id = models.CharField(
        max_length=EVENT_ID_MAX_LENGTH, unique=True, help_text="The client's id: resending it stores nothing twice."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-occurred_at"], name="event_customer_latest"),
            models.Index(fields=["item", "occurred_at"], name="event_item_time"),
            models.Index(fields=["occurred_at"], name="event_occurred_at"),
            models.Index(
                fields=["recommendation_id"],
                name="event_recommendation",
                condition=Q(recommendation_id__isnull=False),
            ),
            # Metrics' attribution reads the events stored in the last minutes every minute: without
            # it, a scan of the whole table (views included) each time.
            models.Index(
                fields=["created_at"],
                name="event_attributable_created",
                condition=Q(type__in=("click", "add_to_cart", "purchase")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.item_id} by {self.customer_id} at {self.occurred_at:%Y-%m-%d %H:%M}"
