"""Scenes (where a list is shown) and the business rules merchandisers steer them with."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from recadmin.catalog.models import Item
from recadmin.core.history import history_user
from recadmin.rules import engine
from recadmin.rules.conditions import FIELDS_HELP
from recadmin.rules.params import DEFAULT_STRATEGIES, DEFAULT_STRATEGY, SOURCE_HELP, strategy_problem

MAX_LIST_LENGTH = 100


def validate_strategy(value: object) -> None:
    problem = strategy_problem(value)
    if problem:
        raise DjangoValidationError(f"The strategy {problem}.", code="strategy")


STRATEGY_HELP = (
    "The candidate sources, in order, as a JSON list: each is asked in turn until one gives enough items, "
    "then the rules and diversity apply. Sources: "
    + "; ".join(f"{name}: {text}" for name, text in SOURCE_HELP.items())
    + ". Empty: the default of the slug ("
    + ", ".join(f"{slug} = {' then '.join(chain)}" for slug, chain in DEFAULT_STRATEGIES.items())
    + f", any other = {' then '.join(DEFAULT_STRATEGY)})."
)


class FallbackKind(models.TextChoices):
    CATEGORY = engine.FALLBACK_CATEGORY, "Trending in the current item's category (overall without one)"
    OVERALL = engine.FALLBACK_OVERALL, "Trending overall"


class RankBy(models.TextChoices):
    OFF = "", "Off (the candidate sources' order)"
    CLICKS = "clicks", "Predicted clicks (pCTR)"
    PURCHASES = "purchases", "Predicted purchases (pCTCVR)"
    REVENUE = "revenue", "Predicted revenue (pCTCVR x price)"


class Scene(models.Model):
    slug = models.SlugField(
        max_length=64, unique=True, help_text="How the shop names the placement in API calls: home, product_detail..."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="", help_text="Where the list appears, for merchandisers.")
    default_n = models.PositiveSmallIntegerField(
        "default list length",
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LIST_LENGTH)],
        help_text=f"Items returned when the request gives no n (1..{MAX_LIST_LENGTH}).",
    )
    candidate_multiplier = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="The model is asked for k = multiplier x n candidates, so filters and diversity have room "
        "to remove some and still fill the list (1..50).",
    )
    max_per_category = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="At most this many items of one category in the list served (pins count first). Empty: no cap.",
    )
    mmr_enabled = models.BooleanField(
        "MMR re-rank",
        default=False,
        help_text="Re-rank with Maximal Marginal Relevance over item embeddings: trade relevance for variety.",
    )
    mmr_lambda = models.FloatField(
        "MMR lambda",
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="0..1. 1 keeps the score order; lower values favour items unlike those already listed.",
    )
    fallback = models.CharField(
        max_length=16,
        choices=FallbackKind.choices,
        default=FallbackKind.OVERALL,
        help_text="What is shown for a customer without history, or when the model cannot answer.",
    )
    exclude_purchased_days = models.PositiveSmallIntegerField(
        "exclude purchased within (days)",
        null=True,
        blank=True,
        help_text="Leave out items the customer bought in the last D days. Empty: bought items may be shown.",
    )
    exclude_current_item = models.BooleanField(
        default=True, help_text="Never recommend the item the customer is looking at."
    )
    enabled = models.BooleanField(default=True, help_text="A disabled scene serves its fallback only.")
    strategy = models.JSONField(default=list, blank=True, validators=[validate_strategy], help_text=STRATEGY_HELP)
    rank_by = models.CharField(
        "rank by",
        max_length=16,
        blank=True,
        default="",
        choices=RankBy.choices,
        help_text="Rank stage: the candidates go to the ranker model (when one is the default) and are ordered by "
        "predicted clicks, purchases or revenue (purchases x price) before the rules and diversity. Empty: off.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # Who changed which setting, when (the admin's History page); the user comes from the request.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def to_settings(self) -> engine.SceneSettings:
        return engine.SceneSettings(
            slug=self.slug,
            default_n=self.default_n,
            candidate_multiplier=self.candidate_multiplier,
            max_per_category=self.max_per_category,
            mmr_enabled=self.mmr_enabled,
            mmr_lambda=float(self.mmr_lambda),
            fallback=self.fallback,
            exclude_purchased_days=self.exclude_purchased_days,
            exclude_current_item=self.exclude_current_item,
            strategy=tuple(self.strategy or ()),
            rank_by=self.rank_by or "",
        )


class RuleKind(models.TextChoices):
    FILTER = engine.KIND_FILTER, "Filter"
    BOOST = engine.KIND_BOOST, "Boost"
    BURY = engine.KIND_BURY, "Bury"
    PIN = engine.KIND_PIN, "Pin"


class FilterMode(models.TextChoices):
    EXCLUDE = engine.FILTER_EXCLUDE, "Exclude matching items"
    INCLUDE = engine.FILTER_INCLUDE, "Include only matching items"


class WeightMode(models.TextChoices):
    MULTIPLY = engine.WEIGHT_MULTIPLY, "Multiply (boost: score x weight, bury: score / weight)"
    ADD = engine.WEIGHT_ADD, "Add (boost: score + weight, bury: score - weight)"


CONDITION_HELP = (
    "A JSON condition over item fields. Fields: "
    f'{FIELDS_HELP}. A leaf is {{"field": ..., "op": ..., "value": ...}}; combine with '
    '{"all": [...]}, {"any": [...]}, {"not": {...}}. Operators: category in_subtree (slug or list, includes '
    "descendants) / eq / in; brand eq / ne / in / not_in; price lt / lte / gt / gte / eq / between [min, max]; "
    "in_stock and active eq true/false; item eq / in (shop ids); attributes.NAME eq / ne / in / not_in / exists. "
    'Example: {"all": [{"field": "category", "op": "in_subtree", "value": "skincare"}, '
    '{"field": "price", "op": "between", "value": [10, 50]}]}. Required for filter, boost and bury; '
    "leave {} for a pin."
)


class BusinessRule(models.Model):
    name = models.CharField(max_length=200, help_text="Shown in the reasons of every item the rule touches.")
    scenes = models.ManyToManyField(
        Scene, blank=True, related_name="rules", help_text="The scenes the rule applies to (ignored with 'all scenes')."
    )
    all_scenes = models.BooleanField(default=False, help_text="Apply in every scene, present and future.")
    kind = models.CharField(
        max_length=8,
        choices=RuleKind.choices,
        help_text="Filter: keep or drop matching items. Boost / bury: raise or lower their score. "
        "Pin: put the chosen items at a fixed position.",
    )
    condition = models.JSONField(default=dict, blank=True, help_text=CONDITION_HELP)
    filter_mode = models.CharField(
        max_length=8,
        choices=FilterMode.choices,
        default=FilterMode.EXCLUDE,
        help_text="Filters only. Several 'include only' filters must all be satisfied.",
    )
    weight = models.FloatField(
        null=True,
        blank=True,
        help_text="Boost / bury only, above 0. Multiply: 1.5 makes a boosted score 50% larger (a buried one "
        "1.5 times smaller), always in the rule's direction even for negative scores. Add: the amount added "
        "or subtracted.",
    )
    weight_mode = models.CharField(
        max_length=8, choices=WeightMode.choices, default=WeightMode.MULTIPLY, help_text="Boost / bury only."
    )
    position = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Pin only: the 1-based position of the first pinned item; the others follow it.",
    )
    pinned_items = models.ManyToManyField(
        Item,
        blank=True,
        related_name="pinned_by_rules",
        help_text=("Pin only: the item(s) to pin; several fill consecutive positions in the order of their shop id."),
    )
    valid_from = models.DateTimeField(null=True, blank=True, help_text="Empty: valid from now on.")
    valid_until = models.DateTimeField(null=True, blank=True, help_text="Empty: valid until disabled. Exclusive.")
    priority = models.IntegerField(
        default=0,
        help_text="Higher runs first: boosts and buries stack in this order, and the higher pin wins a contested "
        "position. Ties: the older rule first.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # Who changed the rule, when and what, including its scenes and pinned items; restorable in the admin.
    history = HistoricalRecords(m2m_fields=[scenes, pinned_items], get_user=history_user)

    class Meta:
        ordering = ["-priority", "id"]
        indexes = [models.Index(fields=["enabled", "all_scenes"], name="rule_enabled_all")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        # Many-to-many fields are not set before the first save: the admin form and the services
        # validate the scenes and pinned items with the same validator.
        from recadmin.core.errors import ValidationError
        from recadmin.rules.validation import RuleSpec, rule_validate

        try:
            rule_validate(RuleSpec.from_instance(self))
        except ValidationError as exc:
            raise DjangoValidationError(exc.extra.get("fields") or exc.message) from exc
