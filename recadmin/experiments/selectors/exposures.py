"""What the report reads beside the sums: served pages' latency per variant (through the layer that owns
the rollups) and each customer's first exposure (the sample-ratio test under Thompson sampling)."""

from __future__ import annotations

import bisect
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from recadmin.experiments.models import (
    AllocationSnapshot,
    Experiment,
    ExperimentCustomer,
    ExposureCount,
)
from recadmin.experiments.params import LATENCY_QUANTILE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageLatency:
    """One variant's served pages: how many, and the latency quantile over them (None without pages)."""

    pages: int
    quantile_ms: float | None


# (experiment id, variant ids, quantile) -> variant id -> PageLatency. The latency histograms are
# metrics' rollups, above this app: metrics registers its reader when it loads (MetricsConfig.ready)
# instead of this module importing it.
PageLatencyReader = Callable[[int, Sequence[int], float], Mapping[int, PageLatency]]
_page_latency_reader: list[PageLatencyReader] = []


def page_latency_reader_register(reader: PageLatencyReader) -> None:
    _page_latency_reader[:] = [reader]


def variant_page_latency(experiment: Experiment, variant_ids: Sequence[int]) -> dict[int, PageLatency] | None:
    """variant id -> its pages' p95 latency; None when no reader is registered (metrics not loaded)."""
    if not _page_latency_reader:
        return None
    return dict(_page_latency_reader[0](experiment.pk, list(variant_ids), LATENCY_QUANTILE))


# --- first exposures (the sample-ratio test under Thompson sampling) -------------------------------

FIRST_EXPOSURES_CACHE_SECONDS = 60


@dataclass(frozen=True)
class FirstExposures:
    """Each customer once, at their first exposure: per variant, per allocation period, and how many
    were left out because they arrived while a new allocation was still reaching every process."""

    by_variant: dict[int, int]
    by_period: list[int]
    unsettled: int = 0


def first_exposure_settle() -> dt.timedelta:
    """How long after a reallocation a first exposure is left out of the sample-ratio test: the
    processes' trust in their copy of the weights (EXPERIMENTS_PROCESS_CACHE_SECONDS), plus a second."""
    return dt.timedelta(seconds=float(getattr(settings, "EXPERIMENTS_PROCESS_CACHE_SECONDS", 2.0)) + 1.0)


@dataclass(frozen=True)
class ExposurePeriods:
    """The allocation periods cut into buckets at the boundaries and at the end of each settling
    window: bucket b holds the times in [edges[b - 1], edges[b]) (`bisect_right` in Python,
    `width_bucket` in PostgreSQL give the same b) and counts in `period[b]`, settled or not."""

    edges: list[dt.datetime]
    period: list[int]
    settled: list[bool]

    @classmethod
    def of(cls, boundaries: Sequence[dt.datetime], settle: dt.timedelta) -> ExposurePeriods:
        edges: list[dt.datetime] = []
        period, settled = [0], [True]  # before the first boundary: the first period
        for t, boundary in enumerate(boundaries):
            edges.append(boundary)
            period.append(t)
            settled.append(True)
            if t > 0 and settle > dt.timedelta(0):
                end = boundary + settle
                if t + 1 < len(boundaries):
                    end = min(end, boundaries[t + 1])
                settled[-1] = False
                edges.append(end)
                period.append(t)
                settled.append(True)
        return cls(edges, period, settled)

    def bucket(self, moment: dt.datetime) -> int:
        return bisect.bisect_right(self.edges, moment)


def first_exposures(
    experiment: Experiment,
    boundaries: Sequence[dt.datetime],
    *,
    settle: dt.timedelta = dt.timedelta(0),
    in_database: bool | None = None,
) -> FirstExposures:
    """Each customer counted once, in the variant and the allocation period of their first exposure
    (the earliest `first_seen_at` of their rows: under Thompson sampling a customer who moved has one
    row per variant), computed directly from every `ExperimentCustomer` row. Period t runs from
    `boundaries[t]` to the next boundary; a first exposure before the first boundary counts in the
    first period. A customer first exposed within `settle` after a change (boundaries[1:]) is left out
    (`unsettled`): processes trust their copy of the weights for a moment
    (EXPERIMENTS_PROCESS_CACHE_SECONDS), so such a customer may have been assigned by either
    allocation. Leaving them out depends only on when they came, not on their variant: no bias.

    The report reads the same counts from `ExposureCount` (`first_exposures_counted`), kept as the
    customers are written; this is the reference it is tested against and what a rebuild does.
    PostgreSQL: one query (DISTINCT ON the customer, width_bucket over the buckets' edges); the
    customers never leave the database. Elsewhere (SQLite, the embedded mode's small shops) the rows
    are read and reduced here (`in_database=False` forces that path, for tests)."""
    if not boundaries:
        return FirstExposures(by_variant={}, by_period=[])
    periods = ExposurePeriods.of(boundaries, settle)
    table = ExperimentCustomer._meta.db_table
    if in_database is None:
        in_database = connection.vendor == "postgresql"
    if in_database:
        sql = f"""
            SELECT first.variant_id, width_bucket(first.first_seen_at, %s::timestamptz[]), COUNT(*)
            FROM (
                SELECT DISTINCT ON (customer_shop_id) customer_shop_id, variant_id, first_seen_at
                FROM {table} WHERE experiment_id = %s
                ORDER BY customer_shop_id, first_seen_at, variant_id
            ) AS first
            GROUP BY 1, 2
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, [periods.edges, experiment.pk])
            rows = cursor.fetchall()
    else:
        firsts = customers_first_rows(ExperimentCustomer.objects.filter(experiment=experiment))
        counted: dict[tuple[int, int], int] = {}
        for variant_id, seen in firsts.values():
            key = (variant_id, periods.bucket(seen))
            counted[key] = counted.get(key, 0) + 1
        rows = [(variant_id, bucket, n) for (variant_id, bucket), n in counted.items()]
    by_variant: dict[int, int] = {}
    by_period = [0] * len(boundaries)
    unsettled = 0
    for variant_id, bucket, n in rows:
        if not periods.settled[int(bucket)]:
            unsettled += int(n)
            continue
        by_variant[int(variant_id)] = by_variant.get(int(variant_id), 0) + int(n)
        by_period[periods.period[int(bucket)]] += int(n)
    return FirstExposures(by_variant, by_period, unsettled)


def customers_first_rows(rows: QuerySet[ExperimentCustomer]) -> dict[str, tuple[int, dt.datetime]]:
    """customer -> (variant id, time) of their first exposure among these rows: the earliest
    `first_seen_at`, the lower variant id on a tie (what DISTINCT ON ... ORDER BY first_seen_at,
    variant_id keeps)."""
    firsts: dict[str, tuple[dt.datetime, int]] = {}
    for customer, variant_id, seen in rows.values_list("customer_shop_id", "variant_id", "first_seen_at"):
        known = firsts.get(customer)
        if known is None or (seen, variant_id) < known:
            firsts[customer] = (seen, variant_id)
    return {customer: (variant_id, seen) for customer, (seen, variant_id) in firsts.items()}


def first_exposures_counted(
    experiment: Experiment, history: Sequence[AllocationSnapshot], *, settle: dt.timedelta
) -> FirstExposures | None:
    """What `first_exposures(experiment, [s.created_at for s in history], settle=settle)` gives, read
    from `ExposureCount` (a few rows per allocation period). None when the counts were classified with
    another settling window (the setting changed since): the caller computes them directly."""
    settle_ms = ExposureCount.settle_ms_of(settle)
    position = {snapshot.pk: t for t, snapshot in enumerate(history)}
    by_variant: dict[int, int] = {}
    by_period = [0] * len(history)
    unsettled = 0
    rows = ExposureCount.objects.filter(experiment=experiment, customers__gt=0).values_list(
        "variant_id", "allocation_id", "settled", "settle_ms", "customers"
    )
    for variant_id, allocation_id, settled, row_settle_ms, n in rows:
        if row_settle_ms != settle_ms or allocation_id not in position:
            return None
        if not settled:
            unsettled += n
            continue
        by_variant[variant_id] = by_variant.get(variant_id, 0) + n
        by_period[position[allocation_id]] += n
    return FirstExposures(by_variant, by_period, unsettled)
