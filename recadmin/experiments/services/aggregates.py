"""The per-customer table (the idempotent upsert) and the variants' totals kept over it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from recadmin.core.errors import ValidationError
from recadmin.core.iterables import chunked
from recadmin.experiments.models import (
    TOTAL_COUNTERS,
    TOTAL_PRODUCTS,
    Experiment,
    ExperimentCustomer,
    VariantTotals,
)
from recadmin.experiments.selectors import TOTAL_FIELDS, variant_sums_exact
from recadmin.experiments.services.exposures import (
    _CHUNK,
    _experiment_lock,
    _first_exposures_refresh,
    experiment_first_exposures_rebuild,
)

# --- the per-customer table ------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSums:
    """One customer's totals in one variant (absolute values, not increments)."""

    variant_id: int
    customer_shop_id: str
    exposures: int = 0
    lists: int = 0
    fallback_lists: int = 0
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    purchases: int = 0
    revenue: Decimal = Decimal("0")
    first_seen_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None


# What one customer's row sums (TOTAL_COUNTERS and revenue), then the span of their exposures.
_ROW_FIELDS = (*TOTAL_COUNTERS, "revenue")
_SUM_FIELDS = (*_ROW_FIELDS, "first_seen_at", "last_seen_at")


@transaction.atomic
def experiment_customers_upsert(*, experiment: Experiment, rows: Iterable[CustomerSums], batch_size: int = 2000) -> int:
    """Write customers' totals (insert or overwrite): idempotent, so recomputing a period from the
    attributed events and writing it again gives the same table; then what is kept over the rows in
    step with them: the variants' totals (`VariantTotals`), the customers' first exposures and their
    counts (`ExperimentFirstExposure`, `ExposureCount`). Returns the rows written."""
    _experiment_lock(experiment)
    variant_ids = set(experiment.variants.values_list("pk", flat=True))
    now = timezone.now()
    objects = []
    for row in rows:
        if row.variant_id not in variant_ids:
            raise ValidationError(f"Variant {row.variant_id} is not part of '{experiment.name}'.", field="variant_id")
        objects.append(
            ExperimentCustomer(
                experiment=experiment,
                variant_id=row.variant_id,
                customer_shop_id=row.customer_shop_id,
                exposures=row.exposures,
                lists=row.lists,
                fallback_lists=row.fallback_lists,
                impressions=row.impressions,
                clicks=row.clicks,
                add_to_carts=row.add_to_carts,
                purchases=row.purchases,
                revenue=Decimal(row.revenue),
                first_seen_at=row.first_seen_at or now,
                last_seen_at=row.last_seen_at or now,
            )
        )
    before = _rows_before(experiment, objects)
    ExperimentCustomer.objects.bulk_create(
        objects,
        batch_size=batch_size,
        update_conflicts=True,
        unique_fields=["experiment", "variant", "customer_shop_id"],
        update_fields=list(_SUM_FIELDS),
    )
    _variant_totals_move(experiment, before, objects)
    _first_exposures_refresh(
        experiment, {row.customer_shop_id for row in objects}, firsts=_firsts_after(before, objects)
    )
    return len(objects)


# --- the variants' totals (what the report and Thompson sampling read) ------------------------------
# Kept by difference: each written row adds its new contribution and takes back its old one.

_Contribution = list[Any]  # one value per selectors.TOTAL_FIELDS


def _contribution(row: Mapping[str, Any]) -> _Contribution:
    revenue = Decimal(row["revenue"])
    return [
        1,
        *(int(row[name]) for name in TOTAL_COUNTERS),
        revenue,
        *(int(row[a]) * int(row[b]) for _, a, b in TOTAL_PRODUCTS),
        revenue * revenue,
    ]


def _rows_before(
    experiment: Experiment, objects: Sequence[ExperimentCustomer]
) -> dict[tuple[int, str], dict[str, Any]]:
    """(variant id, customer) -> the row as it is, for every row (any variant) of the customers about
    to be written: the old contributions to the totals, and with the written rows over them, each
    customer's rows after the write (their first exposure), from one read."""
    before: dict[tuple[int, str], dict[str, Any]] = {}
    for chunk in chunked(sorted({row.customer_shop_id for row in objects}), _CHUNK):
        rows = ExperimentCustomer.objects.filter(experiment=experiment, customer_shop_id__in=chunk).values(
            "variant_id", "customer_shop_id", "first_seen_at", *_ROW_FIELDS
        )
        for row in rows:
            before[(row["variant_id"], row["customer_shop_id"])] = row
    return before


def _firsts_after(
    before: Mapping[tuple[int, str], Mapping[str, Any]], objects: Sequence[ExperimentCustomer]
) -> dict[str, tuple[int, dt.datetime]]:
    """customer -> (variant id, time) of their first exposure once `objects` are written over `before`
    (the rule of `selectors.customers_first_rows`)."""
    seen = {key: row["first_seen_at"] for key, row in before.items()}
    seen.update({(row.variant_id, row.customer_shop_id): row.first_seen_at for row in objects})
    firsts: dict[str, tuple[dt.datetime, int]] = {}
    for (variant_id, customer), moment in seen.items():
        known = firsts.get(customer)
        if known is None or (moment, variant_id) < known:
            firsts[customer] = (moment, variant_id)
    return {customer: (variant_id, moment) for customer, (moment, variant_id) in firsts.items()}


def _variant_totals_move(
    experiment: Experiment, before: Mapping[tuple[int, str], Mapping[str, Any]], objects: Sequence[ExperimentCustomer]
) -> None:
    deltas: dict[int, _Contribution] = {}
    for row in objects:
        new = _contribution({name: getattr(row, name) for name in _ROW_FIELDS})
        found = before.get((row.variant_id, row.customer_shop_id))
        old = _contribution(found) if found is not None else None
        delta = deltas.setdefault(row.variant_id, [0] * len(TOTAL_FIELDS))
        for i, value in enumerate(new):
            delta[i] += value - (old[i] if old is not None else 0)
    if not deltas:
        return
    existing = {
        totals.variant_id: totals
        for totals in VariantTotals.objects.filter(experiment=experiment, variant_id__in=deltas)
    }
    rows = []
    for variant_id, delta in deltas.items():
        totals = existing.get(variant_id) or VariantTotals(experiment=experiment, variant_id=variant_id)
        for name, value in zip(TOTAL_FIELDS, delta, strict=True):
            setattr(totals, name, getattr(totals, name) + value)
        rows.append(totals)
    VariantTotals.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["experiment", "variant"], update_fields=list(TOTAL_FIELDS)
    )


@transaction.atomic
def experiment_aggregates_rebuild(*, experiment: Experiment, analyze: bool = True) -> None:
    """Everything kept over the experiment's customer rows, from scratch: the variants' totals, the
    first exposures and their counts. For `metrics_rebuild`, and rows written around the upsert.
    `analyze`: as in `experiment_first_exposures_rebuild`."""
    experiment_variant_totals_rebuild(experiment=experiment)
    experiment_first_exposures_rebuild(experiment=experiment, analyze=analyze)


@transaction.atomic
def experiment_variant_totals_rebuild(*, experiment: Experiment) -> None:
    """The variants' totals from scratch, from every customer row (`selectors.variant_sums_direct`
    with exact sums): what the upkeep gives (a test compares them)."""
    _experiment_lock(experiment)
    VariantTotals.objects.filter(experiment=experiment).delete()
    VariantTotals.objects.bulk_create(
        VariantTotals(experiment=experiment, variant_id=variant_id, **sums)
        for variant_id, sums in variant_sums_exact(experiment).items()
    )
