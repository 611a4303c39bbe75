"""What recommendations did: events attributed to served lists, and hourly rollups of both.

`Attribution` is one row per counted event (click, add-to-cart, purchase) with the served list it
belongs to, copied from the list (scene, strategy, model version, experiment variant, source, the
hour it was served) so that rollups read one table. Rollups are keyed by the hour the list was
*served*: a click arriving late adds to the row of its list's hour.

Rollups are incremental: each run adds the pages and attributions it has not counted yet (the
bookmarks in `RollupState` and the `RollupPage` ledger say which are counted) to additive counters,
and keeps the distinct counts (customers, items, lists) exact through the recent hours' sets in
`HourlyDistinct`. A full recompute of any hours from the same counted pages and attributions gives
the same rows.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from recadmin.catalog.models import SHOP_ID_MAX_LENGTH
from recadmin.events.models import RECOMMENDATION_ID_MAX_LENGTH, SCENE_MAX_LENGTH


class AttributionMethod(models.TextChoices):
    DIRECT = "direct", "Direct (the event carried the recommendation_id)"
    WINDOW = "window", "Window (the customer's last click on the item within the attribution window)"


class Dimensions(models.Model):
    """The columns every rollup row is grouped by (copied from the served list)."""

    scene = models.CharField(max_length=SCENE_MAX_LENGTH, blank=True, default="")
    strategy = models.CharField(max_length=200, blank=True, default="")
    # Plain ids, no foreign keys: a deleted version or experiment must not rewrite history.
    model_version_id = models.BigIntegerField(null=True, blank=True)
    model_label = models.CharField(max_length=120, blank=True, default="")
    experiment_id = models.BigIntegerField(null=True, blank=True)
    variant_id = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=20, blank=True, default="")

    class Meta:
        abstract = True


class Attribution(Dimensions):
    # The Event's primary key (no foreign key: events are written by COPY, in bulk).
    event_id = models.BigIntegerField(unique=True)
    # Counts once: (type, list, item) for clicks and add-to-carts (a double click is one click);
    # purchases are each their own (a second purchase is revenue), keyed by the event.
    dedup_key = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=32)
    method = models.CharField(max_length=8, choices=AttributionMethod.choices)
    served_id = models.BigIntegerField(help_text="The ServedRecommendation page holding the item.")
    recommendation_id = models.CharField(max_length=RECOMMENDATION_ID_MAX_LENGTH)
    served_hour = models.DateTimeField(help_text="The hour the list was served: the rollup row it counts in.")
    position = models.PositiveIntegerField()
    item_id = models.BigIntegerField()
    item_source = models.CharField(max_length=20, blank=True, default="")
    rules = models.JSONField(default=list, blank=True, help_text="The rules that placed the item.")
    page_rules = models.JSONField(default=list, blank=True, help_text="Every rule that placed an item of the page.")
    customer_shop_id = models.CharField(max_length=SHOP_ID_MAX_LENGTH, blank=True, default="")
    occurred_at = models.DateTimeField()
    quantity = models.FloatField(default=1.0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["served_hour"], name="metrics_attr_hour"),
            models.Index(fields=["experiment_id", "customer_shop_id"], name="metrics_attr_experiment"),
            models.Index(fields=["customer_shop_id", "item_id", "occurred_at"], name="metrics_attr_window"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} -> {self.recommendation_id}@{self.position} ({self.method})"


class HourlyRollup(Dimensions):
    hour = models.DateTimeField()
    # A digest of (hour, dimensions): the one-column key the incremental upserts conflict on (the
    # nullable dimensions would make a unique constraint over the columns let duplicates in).
    group_key = models.CharField(max_length=32, unique=True)
    lists = models.PositiveIntegerField(default=0)
    fallback_lists = models.PositiveIntegerField(default=0)
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    add_to_carts = models.PositiveIntegerField(default=0)
    purchases = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    direct_attributions = models.PositiveIntegerField(default=0)
    window_attributions = models.PositiveIntegerField(default=0)
    customers = models.PositiveIntegerField(default=0, help_text="Distinct customers served in the hour.")
    items = models.PositiveIntegerField(default=0, help_text="Distinct items served in the hour.")

    class Meta:
        indexes = [
            models.Index(fields=["hour"], name="metrics_rollup_hour"),
            models.Index(fields=["scene", "hour"], name="metrics_rollup_scene_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.scene} {self.model_label or self.source}"

    @property
    def fallback_share(self) -> float:
        return self.fallback_lists / self.lists if self.lists else 0.0


class DailyItem(models.Model):
    """The set of items served per day and scene: coverage (distinct items / active items) over any
    period is a count of distinct items here. Insert-only (a set), so recomputing adds nothing."""

    day = models.DateField()
    scene = models.CharField(max_length=SCENE_MAX_LENGTH, blank=True, default="")
    strategy = models.CharField(max_length=200, blank=True, default="")
    model_version_id = models.BigIntegerField(default=0, help_text="0: none (the fallback).")
    variant_id = models.BigIntegerField(default=0, help_text="0: outside an experiment.")
    item = models.CharField(max_length=SHOP_ID_MAX_LENGTH)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "scene", "strategy", "model_version_id", "variant_id", "item"], name="metrics_daily_item"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.scene} {self.item}"


class PositionRollup(models.Model):
    """Impressions and clicks per scene, hour and position: the position-bias curve."""

    hour = models.DateTimeField()
    scene = models.CharField(max_length=SCENE_MAX_LENGTH, blank=True, default="")
    position = models.PositiveIntegerField()
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["hour", "scene"], name="metrics_position_hour")]
        constraints = [models.UniqueConstraint(fields=["hour", "scene", "position"], name="metrics_position_unique")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.scene} #{self.position}"


def _latency_edges() -> tuple[float, ...]:
    edges, edge = [], 0.1
    while edge < 120_000:
        edges.append(round(edge, 6))
        edge *= 1.02
    return tuple(edges)


# The lower bounds of the latency histogram's buckets (ms): 0.1 ms to 2 minutes, each 2 % wider than
# the one before, so a quantile read from it is within 2 % of the exact one. Bucket b holds
# latencies in [EDGES[b - 1], EDGES[b]) (bucket 0: below 0.1 ms; the last: 2 minutes and more):
# `bisect_right` in Python and `width_bucket` in PostgreSQL give the same b for the same value.
LATENCY_EDGES_MS = _latency_edges()


class LatencyRollup(models.Model):
    """Per hour, experiment and variant: how many served pages took how long (a histogram). The
    experiments report's p95-latency guardrail reads it: a few hundred rows per variant, however
    many pages it served."""

    hour = models.DateTimeField()
    experiment_id = models.BigIntegerField()
    variant_id = models.BigIntegerField()
    bucket = models.PositiveSmallIntegerField(help_text="Index into LATENCY_EDGES_MS (see there).")
    pages = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["experiment_id", "variant_id"], name="metrics_latency_variant")]
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "experiment_id", "variant_id", "bucket"], name="metrics_latency_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} variant {self.variant_id} bucket {self.bucket}: {self.pages}"


class RuleRollup(models.Model):
    """Per rule and hour: the items it boosted or pinned against the other items of the same lists."""

    hour = models.DateTimeField()
    scene = models.CharField(max_length=SCENE_MAX_LENGTH, blank=True, default="")
    rule_id = models.BigIntegerField()
    lists = models.PositiveIntegerField(default=0)
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    other_impressions = models.PositiveIntegerField(default=0)
    other_clicks = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["hour", "rule_id"], name="metrics_rule_hour")]
        constraints = [models.UniqueConstraint(fields=["hour", "scene", "rule_id"], name="metrics_rule_unique")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} rule {self.rule_id}"


class RollupState(models.Model):
    """The pipeline's bookmarks (one row): how far events and served pages have been read."""

    key = models.CharField(max_length=32, unique=True, default="default")
    events_read_until = models.DateTimeField(null=True, blank=True, help_text="Event.created_at read up to.")
    events_read_id = models.BigIntegerField(
        default=0, db_default=0, help_text="The highest Event.id read for attribution."
    )
    # Events with an id up to this are read; above it, those in the AttributionEvent ledger are (an
    # event committed late, below the highest id, is still found: it is not in the ledger).
    events_check_low = models.BigIntegerField(default=0, db_default=0)
    served_read_id = models.BigIntegerField(default=0, help_text="The highest ServedRecommendation.id counted.")
    # Pages with an id up to this are counted; above it, those in the RollupPage ledger are (a page
    # committed late, below the highest id, is still found: it is not in the ledger).
    served_check_low = models.BigIntegerField(default=0)
    attributions_read_id = models.BigIntegerField(
        default=0,
        db_default=0,
        help_text="Attribution.id counted up to (attributions are written under this row's lock).",
    )
    complete_until = models.DateTimeField(
        null=True, blank=True, help_text="Everything served and drained before this moment is in the rollups."
    )
    last_run_seconds = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rollups complete until {self.complete_until}"


class RollupPage(models.Model):
    """The ledger of served pages counted by the rollups above `RollupState.served_check_low` (a few
    thousand recent ids): a page is new when its id is above the mark and not here."""

    page_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"page {self.page_id} counted"


class AttributionEvent(models.Model):
    """The ledger of events read for attribution above `RollupState.events_check_low`: an event is new
    when its id is above the mark and not here. An event naming a list not found yet (still in the
    served-log buffer) stays out of it, so the next runs read it again until the mark passes it."""

    event_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"event {self.event_id} read"


class DistinctKind(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    ITEM = "item", "Item"
    LIST = "list", "List (recommendation_id)"
    FALLBACK = "fallback", "Fallback list (recommendation_id)"


class HourlyDistinct(models.Model):
    """The sets behind an hourly row's distinct counts (customers, items, lists, fallback lists),
    kept for the recent hours only (`RollupOpenHour`): new pages add members if absent, and the
    members actually added are the counts' increments. An older hour that gets a page again is read
    back from the served log first."""

    group_key = models.CharField(max_length=32)
    hour = models.DateTimeField()
    kind = models.CharField(max_length=8, choices=DistinctKind.choices)
    value = models.CharField(max_length=max(SHOP_ID_MAX_LENGTH, RECOMMENDATION_ID_MAX_LENGTH))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group_key", "kind", "value"], name="metrics_distinct_member")]
        indexes = [models.Index(fields=["hour"], name="metrics_distinct_hour")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.kind} {self.value}"


class RollupOpenHour(models.Model):
    """An hour whose distinct sets in `HourlyDistinct` are complete."""

    hour = models.DateTimeField(unique=True)

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} sets complete"
