"""Reads of experiments for the API and the admin: the list, one experiment, its variants and weights, the
per-variant sums every metric is computed from."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import BigIntegerField, Count, DecimalField, F, QuerySet, Sum
from django.db.models.functions import Cast

from recadmin.core.errors import NotFound
from recadmin.experiments.models import (
    TOTAL_COUNTERS,
    TOTAL_PRODUCTS,
    AllocationSnapshot,
    Experiment,
    ExperimentCustomer,
    Variant,
    VariantTotals,
)
from recadmin.experiments.selectors.running import weights_in_force

logger = logging.getLogger(__name__)


def experiment_list(*, status: str | None = None, scene: str | None = None) -> QuerySet[Experiment]:
    experiments = Experiment.objects.prefetch_related("scenes", "variants__model_version")
    if status:
        experiments = experiments.filter(status=status)
    if scene:
        experiments = experiments.filter(scenes__slug=scene).distinct()
    return experiments.order_by("-id")


def experiment_get(experiment_id: int) -> Experiment:
    experiment = experiment_list().filter(pk=experiment_id).first()
    if experiment is None:
        raise NotFound(f"Unknown experiment {experiment_id}.")
    return experiment


def experiment_variants(experiment: Experiment) -> list[Variant]:
    return sorted(experiment.variants.all(), key=lambda v: (v.position, v.id))


def experiment_current_weights(experiment: Experiment) -> dict[str, float]:
    """Variant name -> share of customers in force (normalised); the configured weights before start."""
    variants = experiment_variants(experiment)
    weights = weights_in_force(experiment, variants)
    total = sum(weights) or 1.0
    return {v.name: w / total for v, w in zip(variants, weights, strict=True)}


def allocation_history(experiment: Experiment) -> QuerySet[AllocationSnapshot]:
    return experiment.allocations.order_by("created_at", "id")


TOTAL_FIELDS = ("customers", *TOTAL_COUNTERS, "revenue", *(name for name, _, _ in TOTAL_PRODUCTS), "revenue_sq")


def variant_sums(experiment: Experiment) -> dict[int, dict[str, float]]:
    """variant id -> customers, the sums and the second moments every metric needs, from the totals
    kept as customers are written (`VariantTotals`: one row per variant). Equal to
    `variant_sums_direct` (a test compares them); variants without customers are left out."""
    rows = VariantTotals.objects.filter(experiment=experiment, customers__gt=0).values_list("variant_id", *TOTAL_FIELDS)
    return {int(row[0]): {key: float(value) for key, value in zip(TOTAL_FIELDS, row[1:], strict=True)} for row in rows}


def _product(a: str, b: str) -> Any:
    return Cast(a, BigIntegerField()) * Cast(b, BigIntegerField())


def variant_sums_exact(experiment: Experiment) -> dict[int, dict[str, Any]]:
    """variant id -> the `TOTAL_FIELDS` aggregated from every `ExperimentCustomer` row of the
    experiment in one query, exact (whole numbers and decimals): what the kept totals' rebuild writes."""
    # Annotation names must not shadow the model's fields (F("clicks") would then be the Sum), hence
    # the "s_" prefix, stripped from the result.
    sums: dict[str, Any] = {"s_customers": Count("id")}
    sums.update({f"s_{name}": Sum(name) for name in TOTAL_COUNTERS})
    sums["s_revenue"] = Sum("revenue")
    sums.update({f"s_{name}": Sum(_product(a, b)) for name, a, b in TOTAL_PRODUCTS})
    sums["s_revenue_sq"] = Sum(F("revenue") * F("revenue"), output_field=DecimalField())
    rows = ExperimentCustomer.objects.filter(experiment=experiment).values("variant_id").annotate(**sums).order_by()
    result: dict[int, dict[str, Any]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        variant_id = int(values.pop("variant_id"))
        result[variant_id] = {key.removeprefix("s_"): value or 0 for key, value in values.items()}
    return result


def variant_sums_direct(experiment: Experiment) -> dict[int, dict[str, float]]:
    """`variant_sums` aggregated from every customer row: the reference of the kept totals. Exact
    sums made floats at the end, as the kept totals are, so both give the same floats."""
    return {
        variant_id: {key: float(value) for key, value in sums.items()}
        for variant_id, sums in variant_sums_exact(experiment).items()
    }
