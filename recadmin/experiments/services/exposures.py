"""The customers' first exposures and their counts per variant, allocation period and settledness."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q

from recadmin.core.iterables import chunked
from recadmin.experiments.models import (
    AllocationSnapshot,
    Experiment,
    ExperimentCustomer,
    ExperimentFirstExposure,
    ExposureCount,
)
from recadmin.experiments.selectors import (
    ExposurePeriods,
    allocation_history,
    customers_first_rows,
    first_exposure_settle,
)

# --- first exposures (the sample-ratio test under Thompson sampling) -------------------------------
# Each customer's first exposure is kept as their rows are written, with the allocation period in
# force then, and counted per (variant, period, settled): the report reads the counts. A change moves
# the counts by the difference between the customer's old and new first exposure, so the writers of
# one experiment take its row lock first (the upsert, a new snapshot, a rebuild): two of them at once
# would otherwise both add the same customer.

_CHUNK = 2000


def _experiment_lock(experiment: Experiment) -> None:
    list(Experiment.objects.select_for_update().filter(pk=experiment.pk).values_list("pk", flat=True))


@dataclass(frozen=True)
class _Classifier:
    """A first exposure's allocation period (the snapshot in force, the first one before it) and
    whether it was settled, by the buckets `selectors.first_exposures` counts in."""

    snapshot_ids: list[int]
    periods: ExposurePeriods

    @classmethod
    def of(cls, experiment: Experiment, settle: dt.timedelta) -> _Classifier:
        history = list(allocation_history(experiment).values_list("pk", "created_at"))
        return cls([pk for pk, _ in history], ExposurePeriods.of([at for _, at in history], settle))

    def classify(self, seen: dt.datetime) -> tuple[int | None, bool]:
        if not self.snapshot_ids:
            return None, True  # not started: no period yet (the first snapshot will place it)
        bucket = self.periods.bucket(seen)
        return self.snapshot_ids[self.periods.period[bucket]], self.periods.settled[bucket]


_FirstKey = tuple[int, dt.datetime, int | None, bool]  # variant, first seen, snapshot, settled


def _first_exposures_refresh(
    experiment: Experiment, customers: Iterable[str], *, firsts: Mapping[str, tuple[int, dt.datetime]] | None = None
) -> None:
    """Recompute these customers' first exposures from their `ExperimentCustomer` rows (or `firsts`,
    when the caller knows them: customer -> variant id, time) and move the counts by the difference.
    The caller holds the experiment's row lock."""
    settle = first_exposure_settle()
    settle_ms = ExposureCount.settle_ms_of(settle)
    if ExposureCount.objects.filter(experiment=experiment).exclude(settle_ms=settle_ms).exists():
        # Classified with another settling window: every customer moves, not only these.
        experiment_first_exposures_rebuild(experiment=experiment)
        return
    classifier = _Classifier.of(experiment, settle)
    deltas: dict[tuple[int, int, bool], int] = defaultdict(int)
    for chunk in chunked(sorted(set(customers)), _CHUNK):
        new = (
            firsts
            if firsts is not None
            else customers_first_rows(
                ExperimentCustomer.objects.filter(experiment=experiment, customer_shop_id__in=chunk)
            )
        )
        old: dict[str, _FirstKey] = {
            customer: (variant_id, seen, allocation_id, settled)
            for customer, variant_id, seen, allocation_id, settled in ExperimentFirstExposure.objects.filter(
                experiment=experiment, customer_shop_id__in=chunk
            ).values_list("customer_shop_id", "variant_id", "first_seen_at", "allocation_id", "settled")
        }
        write: list[ExperimentFirstExposure] = []
        gone: list[str] = []
        for customer in chunk:
            before = old.get(customer)
            after: _FirstKey | None = None
            if customer in new:
                variant_id, seen = new[customer]
                after = (variant_id, seen, *classifier.classify(seen))
            if before == after:
                continue
            if before is not None and before[2] is not None:
                deltas[(before[0], before[2], before[3])] -= 1
            if after is None:
                gone.append(customer)
                continue
            if after[2] is not None:
                deltas[(after[0], after[2], after[3])] += 1
            write.append(
                ExperimentFirstExposure(
                    experiment=experiment,
                    customer_shop_id=customer,
                    variant_id=after[0],
                    first_seen_at=after[1],
                    allocation_id=after[2],
                    settled=after[3],
                )
            )
        ExperimentFirstExposure.objects.bulk_create(
            write,
            update_conflicts=True,
            unique_fields=["experiment", "customer_shop_id"],
            update_fields=["variant", "first_seen_at", "allocation", "settled"],
        )
        if gone:
            ExperimentFirstExposure.objects.filter(experiment=experiment, customer_shop_id__in=gone).delete()
    _exposure_counts_move(experiment, deltas, settle_ms)


def _exposure_counts_move(experiment: Experiment, deltas: Mapping[tuple[int, int, bool], int], settle_ms: int) -> None:
    changed = {key: delta for key, delta in deltas.items() if delta}
    if not changed:
        return
    existing = {
        (variant_id, allocation_id, settled): n
        for variant_id, allocation_id, settled, n in ExposureCount.objects.filter(
            experiment=experiment,
            variant_id__in={key[0] for key in changed},
            allocation_id__in={key[1] for key in changed},
        ).values_list("variant_id", "allocation_id", "settled", "customers")
    }
    rows = []
    for (variant_id, allocation_id, settled), delta in changed.items():
        customers = existing.get((variant_id, allocation_id, settled), 0) + delta
        if customers < 0:  # a count out of step with the customers' rows: a bug, never a silent fix
            raise RuntimeError(f"experiment {experiment.pk}: first-exposure count below zero for variant {variant_id}")
        rows.append(
            ExposureCount(
                experiment=experiment,
                variant_id=variant_id,
                allocation_id=allocation_id,
                settled=settled,
                settle_ms=settle_ms,
                customers=customers,
            )
        )
    ExposureCount.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["experiment", "variant", "allocation", "settled"],
        update_fields=["customers", "settle_ms"],
    )


@transaction.atomic
def experiment_first_exposures_reclassify(*, snapshot: AllocationSnapshot) -> None:
    """A new allocation snapshot: the customers first exposed from its time on (or not placed yet)
    now fall in its period or its settling window. Usually none (a snapshot is written at the time it
    takes effect); a back-dated one, or one racing a refresh that wrote customers just before it,
    moves some. The first snapshot of an experiment places every customer."""
    experiment = snapshot.experiment
    _experiment_lock(experiment)
    rows = ExperimentFirstExposure.objects.filter(experiment=experiment)
    first = allocation_history(experiment).values_list("pk", flat=True).first()
    if first != snapshot.pk:
        rows = rows.filter(Q(first_seen_at__gte=snapshot.created_at) | Q(allocation__isnull=True))
    customers = list(rows.values_list("customer_shop_id", flat=True))
    if customers:
        _first_exposures_refresh(experiment, customers)


@transaction.atomic
def experiment_first_exposures_rebuild(*, experiment: Experiment, analyze: bool = True) -> int:
    """Recompute the experiment's first exposures and their counts from scratch from its customers'
    rows (what the incremental upkeep gives; a test compares them). For `metrics_rebuild`, a changed
    settling window, or rows written around the upsert (a bulk load). Returns the customers placed.
    `analyze=False`: a caller rebuilding several experiments refreshes the planner statistics once
    at the end (`experiment_first_exposures_analyze`)."""
    _experiment_lock(experiment)
    ExposureCount.objects.filter(experiment=experiment).delete()
    ExperimentFirstExposure.objects.filter(experiment=experiment).delete()
    settle = first_exposure_settle()
    classifier = _Classifier.of(experiment, settle)
    if connection.vendor != "postgresql" or not classifier.snapshot_ids:
        customers = ExperimentCustomer.objects.filter(experiment=experiment).values_list("customer_shop_id", flat=True)
        _first_exposures_refresh(experiment, customers.distinct().order_by())
        return ExperimentFirstExposure.objects.filter(experiment=experiment).count()
    # PostgreSQL: the customers never leave the database (bucket b's period and settledness by index).
    periods = classifier.periods
    bucket_snapshot = [classifier.snapshot_ids[t] for t in periods.period]
    first_table = ExperimentFirstExposure._meta.db_table
    bucket = "width_bucket(f.first_seen_at, %s::timestamptz[]) + 1"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {first_table} (experiment_id, customer_shop_id, variant_id, first_seen_at, allocation_id, "
            f"settled) SELECT %s, f.customer_shop_id, f.variant_id, f.first_seen_at, (%s::bigint[])[{bucket}], "
            f"(%s::boolean[])[{bucket}] FROM (SELECT DISTINCT ON (customer_shop_id) customer_shop_id, variant_id, "
            f"first_seen_at FROM {ExperimentCustomer._meta.db_table} WHERE experiment_id = %s "
            "ORDER BY customer_shop_id, first_seen_at, variant_id) AS f",
            [experiment.pk, bucket_snapshot, periods.edges, periods.settled, periods.edges, experiment.pk],
        )
        placed = int(cursor.rowcount)
        cursor.execute(
            f"INSERT INTO {ExposureCount._meta.db_table} (experiment_id, variant_id, allocation_id, settled, "
            f"settle_ms, customers) SELECT experiment_id, variant_id, allocation_id, settled, %s, COUNT(*) "
            f"FROM {first_table} WHERE experiment_id = %s GROUP BY 1, 2, 3, 4",
            [ExposureCount.settle_ms_of(settle), experiment.pk],
        )
    if analyze:
        experiment_first_exposures_analyze()
    return placed


def experiment_first_exposures_analyze() -> None:
    """Planner statistics for first-exposure rows just written in bulk: the upkeep's reads by
    customer need the index (PostgreSQL; a no-op elsewhere)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ExperimentFirstExposure._meta.db_table}")
