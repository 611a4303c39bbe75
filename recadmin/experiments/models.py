"""A/B experiments and bandits on scenes: the experiment, its variants, the history of its weights and
the per-customer sums its report is computed from.

Place in the dependency order: `core -> catalog -> events -> rules -> modelops -> (metrics) ->
experiments -> serving`. Experiments name scenes (rules) and model versions (modelops); serving reads
the running experiment of a scene through `recadmin.experiments.selectors`.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from recadmin.catalog.models import SHOP_ID_MAX_LENGTH
from recadmin.experiments.params import DEFAULT_THOMPSON_FLOOR
from recadmin.modelops.models import ModelVersion
from recadmin.rules.models import Scene


def new_salt() -> str:
    return secrets.token_hex(8)


class PrimaryMetric(models.TextChoices):
    CTR = "ctr", "CTR (clicks per impression)"
    CONVERSION_RATE = "conversion_rate", "Conversion rate (purchases per list served)"
    REVENUE_PER_CUSTOMER = "revenue_per_customer", "Revenue per customer"


class AllocationKind(models.TextChoices):
    FIXED = "fixed", "Fixed weights (A/B test)"
    THOMPSON = "thompson", "Thompson sampling (bandit)"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Experiment(models.Model):
    name = models.CharField(max_length=200)
    hypothesis = models.TextField(blank=True, default="", help_text="What should change, and why.")
    scenes = models.ManyToManyField(
        Scene, related_name="experiments", help_text="Where it runs. A scene runs at most one experiment at a time."
    )
    primary_metric = models.CharField(max_length=32, choices=PrimaryMetric.choices, default=PrimaryMetric.CTR)
    fallback_share_max = models.FloatField(
        "guardrail: fallback share max",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="0..1: a variant serving the fallback more often than this is failing. Empty: no guardrail.",
    )
    p95_latency_ms_max = models.PositiveIntegerField(
        "guardrail: p95 latency max (ms)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="A variant slower than this at the 95th percentile is failing. Empty: no guardrail.",
    )
    minimum_sample = models.PositiveIntegerField(
        "minimum sample (customers per variant)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Read the fixed-horizon result only once every variant has this many customers; "
        "the always-valid interval is tightest around it.",
    )
    allocation = models.CharField(max_length=16, choices=AllocationKind.choices, default=AllocationKind.FIXED)
    thompson_floor = models.FloatField(
        "Thompson floor per arm",
        default=DEFAULT_THOMPSON_FLOOR,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Thompson sampling only: the least share of traffic each arm keeps (0.05 = 5 %).",
    )
    status = models.CharField(
        max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT, db_index=True
    )
    salt = models.CharField(
        max_length=32, default=new_salt, editable=False, help_text="Hashed with each customer id to assign variants."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    promoted_variant = models.ForeignKey(
        "Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    promoted_at = models.DateTimeField(null=True, blank=True, editable=False)
    note = models.TextField(blank=True, default="", editable=False, help_text="The last thing that happened to it.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class Variant(models.Model):
    """One arm. The first (lowest position) is the control every other is compared with. It changes at
    most one thing: a model version, a strategy, or scene settings; none means the scene as it is."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in the experiment; 0 is the control.")
    name = models.CharField(max_length=64)
    weight = models.FloatField(
        validators=[MinValueValidator(0.0)],
        help_text="Relative share of customers (50 and 50 split evenly). 0: configured but not served.",
    )
    model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="experiment_variants",
        help_text="Serve this version of the recommender instead of the default.",
    )
    strategy = models.JSONField(
        null=True,
        blank=True,
        help_text='Candidate sources in order, e.g. ["popular"] or ["similar", "model", "popular"].',
    )
    scene_settings = models.JSONField(
        null=True, blank=True, help_text='Scene fields to override, e.g. {"mmr_enabled": false}.'
    )

    class Meta:
        ordering = ["experiment", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="experiments_variant_name_unique"),
            models.CheckConstraint(condition=Q(weight__gte=0), name="experiments_variant_weight_non_negative"),
            models.CheckConstraint(
                condition=~(Q(model_version__isnull=False) & Q(strategy__isnull=False))
                & ~(Q(model_version__isnull=False) & Q(scene_settings__isnull=False))
                & ~(Q(strategy__isnull=False) & Q(scene_settings__isnull=False)),
                name="experiments_variant_changes_one_thing",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def change(self) -> str:
        """What the variant changes, in words."""
        if self.model_version_id is not None:
            return f"model version {self.model_version.version if self.model_version else self.model_version_id}"
        if self.strategy is not None:
            return "strategy " + " -> ".join(self.strategy)
        if self.scene_settings is not None:
            return "scene settings " + ", ".join(f"{k}={v}" for k, v in self.scene_settings.items())
        return "the scene as it is"


class AllocationSnapshot(models.Model):
    """The weights in force from `created_at` on: one at start (the configured weights), then one per
    Thompson update that changed them. The latest one is what assignment uses."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="allocations")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    weights = models.JSONField(help_text="Variant name -> share of customers (sums to 1).")
    probability_best = models.JSONField(
        null=True, blank=True, help_text="Thompson sampling: variant name -> posterior probability of being best."
    )
    reason = models.CharField(max_length=32, default="start", help_text="start, thompson, ...")

    class Meta:
        ordering = ["experiment", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.experiment_id} @ {self.created_at:%Y-%m-%d %H:%M}"


class ExperimentCustomer(models.Model):
    """One customer's sums in one variant of one experiment: the unit of analysis of the report.

    Filled from attributed events by the metrics pipeline. One row per (experiment, variant, customer):
    under Thompson sampling a customer may move between variants (see `assignment`), and each variant
    keeps what happened in it."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="customers")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="customers")
    customer_shop_id = models.CharField(max_length=SHOP_ID_MAX_LENGTH)
    exposures = models.PositiveIntegerField(default=0, help_text="Requests in which the customer got this variant.")
    lists = models.PositiveIntegerField(default=0, help_text="Lists served (non-empty answers).")
    fallback_lists = models.PositiveIntegerField(default=0, help_text="Lists served by the fallback.")
    impressions = models.PositiveIntegerField(default=0, help_text="Items shown in those lists.")
    clicks = models.PositiveIntegerField(default=0)
    add_to_carts = models.PositiveIntegerField(default=0)
    purchases = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "variant", "customer_shop_id"], name="experiments_customer_unique"
            ),
        ]
        # (experiment, variant) lookups use the unique constraint's index. This one hands each
        # customer's rows over in first-exposure order without a sort, index-only: the sample-ratio
        # test under Thompson sampling (selectors.first_exposures, DISTINCT ON the customer).
        indexes = [
            models.Index(
                fields=["experiment", "customer_shop_id", "first_seen_at", "variant"], name="experiments_customer_first"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_shop_id} in {self.variant_id}"


class ExperimentFirstExposure(models.Model):
    """Each customer of an experiment once, at their first exposure: the variant and time of their
    earliest `ExperimentCustomer` row, the allocation period in force then (the snapshot; the first
    one for an exposure before it) and whether it was settled (not within the settling window after
    a reallocation, see `selectors.first_exposures`). Kept by `services.experiment_customers_upsert`
    as it writes the per-customer sums, and moved when a snapshot is added; `ExposureCount` sums it,
    so the sample-ratio test under Thompson sampling reads a few hundred rows, not every customer."""

    # No index of their own on the foreign keys (the two below start with the experiment, and a
    # variant or a snapshot goes with its experiment) and no database constraints (Django's collector
    # cascades): each is paid on every customer written, and the constraint checks of a rebuild of
    # 500,000 customers took longer than the rebuild itself (22 s against 20 s).
    experiment = models.ForeignKey(
        Experiment, on_delete=models.CASCADE, related_name="first_exposures", db_index=False, db_constraint=False
    )
    customer_shop_id = models.CharField(max_length=SHOP_ID_MAX_LENGTH)
    variant = models.ForeignKey(
        Variant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    first_seen_at = models.DateTimeField()
    # Null until the experiment has a snapshot (a customer written before it started), or after its
    # snapshot was deleted (the next snapshot, or a rebuild, places it again).
    allocation = models.ForeignKey(
        AllocationSnapshot,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    settled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "customer_shop_id"], name="experiments_first_unique"),
        ]
        # A new snapshot moves the customers first seen from its time on: a range on this index.
        indexes = [models.Index(fields=["experiment", "first_seen_at"], name="experiments_first_seen")]

    def __str__(self) -> str:
        return f"{self.customer_shop_id} first in {self.variant_id} at {self.first_seen_at}"


class ExposureCount(models.Model):
    """How many customers had their first exposure in a variant during an allocation period, settled
    or not: `ExperimentFirstExposure` counted, kept in step with it. `settle_ms` is the settling
    window the rows were classified with (a changed EXPERIMENTS_PROCESS_CACHE_SECONDS means a rebuild)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="exposure_counts")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="+")
    allocation = models.ForeignKey(AllocationSnapshot, on_delete=models.CASCADE, related_name="+")
    settled = models.BooleanField()
    settle_ms = models.PositiveIntegerField()
    customers = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "variant", "allocation", "settled"], name="experiments_exposure_count_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customers} first in {self.variant_id} under {self.allocation_id}"

    @staticmethod
    def settle_ms_of(settle: dt.timedelta) -> int:
        """`settle_ms` for a settling window: what the writers store and the reader compares."""
        return round(settle.total_seconds() * 1000)


# The sums `VariantTotals` keeps over a variant's `ExperimentCustomer` rows: the row count, each
# counter, and the products every metric's variance needs (see selectors.variant_sums).
TOTAL_COUNTERS = ("exposures", "lists", "fallback_lists", "impressions", "clicks", "add_to_carts", "purchases")
TOTAL_PRODUCTS = (
    ("clicks_sq", "clicks", "clicks"),
    ("impressions_sq", "impressions", "impressions"),
    ("clicks_impressions", "clicks", "impressions"),
    ("purchases_sq", "purchases", "purchases"),
    ("lists_sq", "lists", "lists"),
    ("purchases_lists", "purchases", "lists"),
)


class VariantTotals(models.Model):
    """A variant's customers and the sums over their `ExperimentCustomer` rows, exact (whole numbers
    and decimals), kept in step with the rows as they are written: the report and Thompson sampling
    read one row per variant instead of aggregating every customer."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="totals", db_index=False)
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="+")
    customers = models.BigIntegerField(default=0)
    exposures = models.BigIntegerField(default=0)
    lists = models.BigIntegerField(default=0)
    fallback_lists = models.BigIntegerField(default=0)
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    add_to_carts = models.BigIntegerField(default=0)
    purchases = models.BigIntegerField(default=0)
    revenue = models.DecimalField(max_digits=24, decimal_places=2, default=0)
    clicks_sq = models.BigIntegerField(default=0)
    impressions_sq = models.BigIntegerField(default=0)
    clicks_impressions = models.BigIntegerField(default=0)
    purchases_sq = models.BigIntegerField(default=0)
    lists_sq = models.BigIntegerField(default=0)
    purchases_lists = models.BigIntegerField(default=0)
    revenue_sq = models.DecimalField(max_digits=38, decimal_places=4, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "variant"], name="experiments_variant_totals")]

    def __str__(self) -> str:
        return f"variant {self.variant_id}: {self.customers} customers"
