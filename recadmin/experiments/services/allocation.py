"""Thompson sampling: a running experiment's weights recomputed from the variants' sums."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from recadmin.core.errors import Conflict
from recadmin.experiments import bandit
from recadmin.experiments.models import (
    AllocationKind,
    AllocationSnapshot,
    Experiment,
    ExperimentStatus,
    PrimaryMetric,
    Variant,
)
from recadmin.experiments.selectors import experiments_cache_bump, variant_sums

# A Thompson update that moves no weight by more than this writes no new snapshot.
ALLOCATION_MIN_CHANGE = 0.001


def thompson_arms(
    experiment: Experiment, variants: Sequence[Variant]
) -> list[bandit.BetaArm] | list[bandit.GaussianArm]:
    """The bandit's view of each variant from the per-customer sums, for the primary metric."""
    sums = variant_sums(experiment)
    if experiment.primary_metric == PrimaryMetric.REVENUE_PER_CUSTOMER:
        return [
            bandit.GaussianArm(
                n=int(sums.get(v.pk, {}).get("customers", 0)),
                sum_y=sums.get(v.pk, {}).get("revenue", 0.0),
                sum_yy=sums.get(v.pk, {}).get("revenue_sq", 0.0),
            )
            for v in variants
        ]
    success, trial = (
        ("clicks", "impressions") if experiment.primary_metric == PrimaryMetric.CTR else ("purchases", "lists")
    )
    return [
        bandit.BetaArm(successes=sums.get(v.pk, {}).get(success, 0.0), trials=sums.get(v.pk, {}).get(trial, 0.0))
        for v in variants
    ]


def _seed(experiment: Experiment, step: int) -> int:
    digest = hashlib.blake2b(f"{experiment.salt}:allocation:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@transaction.atomic
def experiment_allocation_update(
    *, experiment: Experiment, now: dt.datetime | None = None, draws: int = bandit.DEFAULT_DRAWS
) -> AllocationSnapshot | None:
    """Recompute a running Thompson experiment's weights from the per-customer sums. Variants configured
    with weight 0 stay out of it. Writes a snapshot (and bumps the cache) only when a weight moves by
    more than ALLOCATION_MIN_CHANGE; returns it, or None when nothing changed."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != ExperimentStatus.RUNNING or experiment.allocation != AllocationKind.THOMPSON:
        raise Conflict(
            f"Experiment '{experiment.name}' is not a running Thompson-sampling experiment.",
            extra={"status": experiment.status, "allocation": experiment.allocation},
        )
    variants = [v for v in experiment.variants.order_by("position", "id") if v.weight > 0]
    arms = thompson_arms(experiment, variants)
    step = experiment.allocations.count()
    result = bandit.thompson_allocation(
        arms, floor=experiment.thompson_floor, draws=draws, seed=_seed(experiment, step)
    )
    weights = {v.name: w for v, w in zip(variants, result.weights, strict=True)}
    last = experiment.allocations.order_by("-created_at", "-id").first()
    if last is not None and all(
        abs(float(last.weights.get(name, 0.0)) - w) <= ALLOCATION_MIN_CHANGE for name, w in weights.items()
    ):
        return None
    snapshot = AllocationSnapshot.objects.create(
        experiment=experiment,
        created_at=now or timezone.now(),
        weights=weights,
        probability_best={v.name: p for v, p in zip(variants, result.probability_best, strict=True)},
        reason="thompson",
    )
    experiments_cache_bump()
    return snapshot


def experiment_allocations_update_running(*, now: dt.datetime | None = None) -> int:
    """Reallocate every running Thompson experiment; returns how many got new weights."""
    changed = 0
    ids = Experiment.objects.filter(status=ExperimentStatus.RUNNING, allocation=AllocationKind.THOMPSON).values_list(
        "pk", flat=True
    )
    for experiment in Experiment.objects.filter(pk__in=list(ids)):
        if experiment_allocation_update(experiment=experiment, now=now) is not None:
            changed += 1
    return changed
