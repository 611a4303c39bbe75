"""Reads of experiments: the cached running experiment per scene (the hot path) and the report.

Caching (the app owns these keys): the running experiments of all scenes are one small map, cached
under a key that embeds a version token (`experiments:version`). Every write that changes what runs
(start, stop, a Thompson reallocation, an edit in the admin) replaces the token, so the next read
rebuilds the map from the database once. On top of it each process keeps the parsed map and trusts
it for `EXPERIMENTS_PROCESS_CACHE_SECONDS` (2 s) before checking the token again, so a warm
`experiment_running_for_scene` makes no database query and, most of the time, no cache round trip
either; serving may also fetch the token with its own batch of keys (`EXPERIMENTS_VERSION_KEY`) and
pass it as `version=`. A change is seen at once by the process that makes it and within the window
everywhere else. A missing token becomes a fresh one, never an old one; a cache outage falls back to
the database.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, DecimalField, F, QuerySet, Sum
from django.db.models.functions import Cast

from recadmin.core.errors import NotFound
from recadmin.experiments import statistics
from recadmin.experiments.assignment import RunningExperiment, VariantSpec
from recadmin.experiments.models import (
    TOTAL_COUNTERS,
    TOTAL_PRODUCTS,
    AllocationKind,
    AllocationSnapshot,
    Experiment,
    ExperimentCustomer,
    ExperimentStatus,
    ExposureCount,
    PrimaryMetric,
    Variant,
    VariantTotals,
)
from recadmin.experiments.params import GUARDRAIL_MIN_PAGES, LATENCY_QUANTILE, METRIC_LABELS, REPORT_MDE

logger = logging.getLogger(__name__)

EXPERIMENTS_VERSION_KEY = "experiments:version"
# Part of the entry's key: bump it when the cached shape changes.
CACHE_SCHEMA = 1
_CACHE_SECONDS = 3600

_local_lock = threading.Lock()
_local: dict[str, Any] = {"version": None, "by_scene": {}, "trusted_until": 0.0}


def experiments_cache_version() -> str:
    try:
        version = cache.get(EXPERIMENTS_VERSION_KEY)
        if version is None:
            cache.add(EXPERIMENTS_VERSION_KEY, uuid.uuid4().hex, None)
            version = cache.get(EXPERIMENTS_VERSION_KEY)
    except Exception:
        logger.warning("experiments cache unavailable; reading running experiments from the database", exc_info=True)
        return ""
    return str(version or "")


def experiments_cache_bump() -> None:
    """Invalidate the cached running experiments now and again at commit (a reader inside the
    transaction may have cached the old state under the new token)."""

    def bump() -> None:
        experiments_forget_local()
        with contextlib.suppress(Exception):
            cache.set(EXPERIMENTS_VERSION_KEY, uuid.uuid4().hex, None)

    bump()
    transaction.on_commit(bump)


def _current_weights(experiment: Experiment, variants: list[Variant]) -> list[float]:
    snapshot = experiment.allocations.order_by("-created_at", "-id").first()
    if snapshot is not None:
        return [float(snapshot.weights.get(v.name, 0.0)) for v in variants]
    return [float(v.weight) for v in variants]


def running_experiments_build() -> dict[str, dict[str, Any]]:
    """scene slug -> the running experiment's dict (RunningExperiment.to_dict), from the database."""
    by_scene: dict[str, dict[str, Any]] = {}
    experiments = (
        Experiment.objects.filter(status=ExperimentStatus.RUNNING)
        .prefetch_related("scenes", "variants__model_version")
        .order_by("started_at", "id")
    )
    for experiment in experiments:
        variants = sorted(experiment.variants.all(), key=lambda v: (v.position, v.id))
        weights = _current_weights(experiment, variants)
        if not variants or sum(weights) <= 0:
            continue
        running = RunningExperiment(
            id=experiment.pk,
            name=experiment.name,
            salt=experiment.salt,
            variants=tuple(_variant_spec(v) for v in variants),
            weights=tuple(weights),
        )
        for scene in experiment.scenes.all():
            by_scene.setdefault(scene.slug, running.to_dict())
    return by_scene


def _variant_spec(variant: Variant) -> VariantSpec:
    version = variant.model_version
    return VariantSpec(
        id=variant.pk,
        name=variant.name,
        model_name=version.name if version is not None else None,
        model_version=version.version if version is not None else None,
        strategy=tuple(variant.strategy) if variant.strategy is not None else None,
        scene_settings=dict(variant.scene_settings) if variant.scene_settings is not None else None,
    )


def _parse(by_scene: Mapping[str, Mapping[str, Any]]) -> dict[str, RunningExperiment]:
    return {slug: RunningExperiment.from_dict(data) for slug, data in by_scene.items()}


def running_experiments(*, version: str | None = None) -> dict[str, RunningExperiment]:
    """scene slug -> its running experiment, for every scene that has one (cached, see the module)."""
    now = time.monotonic()
    if version is None:
        with _local_lock:
            if _local["version"] is not None and now < _local["trusted_until"]:
                return _local["by_scene"]
    token = experiments_cache_version() if version is None else version
    if not token:
        return _parse(running_experiments_build())
    trust = now + float(getattr(settings, "EXPERIMENTS_PROCESS_CACHE_SECONDS", 2.0))
    with _local_lock:
        if _local["version"] == token:
            _local["trusted_until"] = trust
            return _local["by_scene"]
    key = f"experiments:running:s{CACHE_SCHEMA}:{token}"
    try:
        raw = cache.get(key)
    except Exception:  # noqa: BLE001
        raw = None
    if raw is None:
        raw = running_experiments_build()
        with contextlib.suppress(Exception):
            cache.set(key, raw, _CACHE_SECONDS)
    parsed = _parse(raw)
    with _local_lock:
        _local.update(version=token, by_scene=parsed, trusted_until=trust)
    return parsed


def experiment_running_for_scene(slug: str, *, version: str | None = None) -> RunningExperiment | None:
    """The experiment running on scene `slug`, or None. What the hot path calls, then
    `.assign(customer_id)` for the customer's `VariantSpec`. Warm: one cache read, no database query."""
    return running_experiments(version=version).get(slug)


def experiments_forget_local() -> None:
    """Drop this process's parsed copy: after a change made here, and in tests."""
    with _local_lock:
        _local.update(version=None, by_scene={}, trusted_until=0.0)


# --- reads for the API and the admin -------------------------------------------------------------


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
    weights = _current_weights(experiment, variants)
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


# --- latency of served pages (read through the layer that owns them) --------------------------------


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


# --- the report ------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def metric_estimate(metric: str, sums: Mapping[str, float]) -> statistics.Estimate:
    """The primary metric of one variant from its `variant_sums` row."""
    n = int(sums.get("customers", 0))
    if metric == PrimaryMetric.CTR:
        return statistics.ratio_estimate(
            statistics.RatioMoments(
                n=n,
                sum_y=sums.get("clicks", 0.0),
                sum_x=sums.get("impressions", 0.0),
                sum_yy=sums.get("clicks_sq", 0.0),
                sum_xx=sums.get("impressions_sq", 0.0),
                sum_xy=sums.get("clicks_impressions", 0.0),
            )
        )
    if metric == PrimaryMetric.CONVERSION_RATE:
        return statistics.ratio_estimate(
            statistics.RatioMoments(
                n=n,
                sum_y=sums.get("purchases", 0.0),
                sum_x=sums.get("lists", 0.0),
                sum_yy=sums.get("purchases_sq", 0.0),
                sum_xx=sums.get("lists_sq", 0.0),
                sum_xy=sums.get("purchases_lists", 0.0),
            )
        )
    if metric == PrimaryMetric.REVENUE_PER_CUSTOMER:
        return statistics.mean_estimate(
            statistics.MeanMoments(n=n, sum_y=sums.get("revenue", 0.0), sum_yy=sums.get("revenue_sq", 0.0))
        )
    raise ValueError(f"unknown metric {metric!r}")


def _tuning_n(experiment: Experiment) -> float:
    # The always-valid interval is tightest at the planned sample of both arms compared.
    if experiment.minimum_sample:
        return float(experiment.minimum_sample * 2)
    return float(statistics.DEFAULT_TUNING_N)


def experiment_report(experiment: Experiment, *, sums: dict[int, dict[str, float]] | None = None) -> dict[str, Any]:
    """Everything `GET /api/v1/experiments/<id>/report` returns (JSON-ready: NaN becomes None).

    Per variant: customers, lists, impressions, clicks, ctr, add_to_carts, purchases, conversion_rate,
    revenue, revenue_per_customer, fallback_share; for every variant after the first (the control), on
    the primary metric: lift with its 95 % interval and p-value, the always-valid interval and p-value,
    and the customers needed for a 5 % lift. Then the sample-ratio test (fixed allocation: customers per
    variant against the weights; Thompson: each customer once, in their first variant, against the
    allocation in force then), the guardrails (p95 latency of the served pages, fallback share), the
    verdict in words (a variant failing a guardrail is never called the winner) and the allocation
    history. `sums`: the experiment's `variant_sums` when the caller has them already (the aggregate
    over its customers is much of the report's time)."""
    variants = experiment_variants(experiment)
    if sums is None:
        sums = variant_sums(experiment)
    metric = experiment.primary_metric
    label = METRIC_LABELS.get(metric, metric)
    weights_now = experiment_current_weights(experiment)
    tuning_n = _tuning_n(experiment)

    estimates = {v.pk: metric_estimate(metric, sums.get(v.pk, {})) for v in variants}
    control = variants[0] if variants else None
    rows: list[dict[str, Any]] = []
    treatments: list[statistics.VariantVerdictInput] = []
    for variant in variants:
        s = sums.get(variant.pk, {})
        customers = int(s.get("customers", 0))
        lists, impressions = s.get("lists", 0.0), s.get("impressions", 0.0)
        row: dict[str, Any] = {
            "name": variant.name,
            "change": variant.change,
            "configured_weight": variant.weight,
            "weight": weights_now.get(variant.name, 0.0),
            "customers": customers,
            "exposures": int(s.get("exposures", 0)),
            "lists": int(lists),
            "impressions": int(impressions),
            "clicks": int(s.get("clicks", 0)),
            "ctr": _ratio(s.get("clicks", 0.0), impressions),
            "add_to_carts": int(s.get("add_to_carts", 0)),
            "purchases": int(s.get("purchases", 0)),
            "conversion_rate": _ratio(s.get("purchases", 0.0), lists),
            "revenue": round(s.get("revenue", 0.0), 2),
            "revenue_per_customer": _ratio(s.get("revenue", 0.0), customers),
            "fallback_share": _ratio(s.get("fallback_lists", 0.0), lists),
            "is_control": variant is control,
            "lift": None,
            "ci_low": None,
            "ci_high": None,
            "p_value": None,
            "significant": None,
            "sequential_ci_low": None,
            "sequential_ci_high": None,
            "sequential_p_value": None,
            "sequential_significant": None,
            "customers_needed": None,
        }
        if control is not None and variant is not control:
            comparison = statistics.compare(
                estimates[control.pk], estimates[variant.pk], tuning_n=tuning_n, mde=REPORT_MDE
            )
            needed = _finite(comparison.customers_needed)
            row.update(
                lift=_finite(comparison.lift),
                ci_low=_finite(comparison.ci_low),
                ci_high=_finite(comparison.ci_high),
                p_value=_finite(comparison.p_value),
                significant=comparison.significant,
                sequential_ci_low=_finite(comparison.sequential_ci_low),
                sequential_ci_high=_finite(comparison.sequential_ci_high),
                sequential_p_value=_finite(comparison.sequential_p_value),
                sequential_significant=comparison.sequential_significant,
                customers_needed=math.ceil(needed) if needed is not None else None,
            )
            if variant.weight > 0 or comparison.treatment.n > 0:
                treatments.append(statistics.VariantVerdictInput(name=variant.name, comparison=comparison))
        rows.append(row)

    counts = [int(sums.get(v.pk, {}).get("customers", 0)) for v in variants]
    srm_weights = [float(v.weight) for v in variants]
    srm_p: float | None = None
    srm_note = ""
    srm_counts = counts
    srm_expected: list[float] = []
    history = list(allocation_history(experiment))
    if experiment.allocation == AllocationKind.THOMPSON and variants and history:
        # The split moves: each customer is expected in the allocation in force at their first exposure.
        settle = first_exposure_settle()
        # Read from the counts kept as customers are written (a few rows per allocation period).
        firsts = first_exposures_counted(experiment, history, settle=settle)
        if firsts is not None and sum(counts) > 0 and sum(firsts.by_period) + firsts.unsettled == 0:
            firsts = None  # customers written around the upsert (a bulk load) and not rebuilt yet
        if firsts is None:
            # Classified with another settling window (the setting changed), or not kept: a rebuild
            # (`metrics_rebuild`) brings them in line. Until then one pass over every customer of the
            # experiment (about 0.6 s per 500,000 on 2 shared cores), kept a minute or until the next
            # reallocation.
            def compute() -> FirstExposures:
                return first_exposures(experiment, [snapshot.created_at for snapshot in history], settle=settle)

            cached = cache.get_or_set(
                f"experiments:first-exposures:v1:{experiment.pk}:{history[-1].pk}:{settle.total_seconds()}",
                compute,
                FIRST_EXPOSURES_CACHE_SECONDS,
            )
            firsts = cached if isinstance(cached, FirstExposures) else compute()
        srm_counts = [firsts.by_variant.get(v.pk, 0) for v in variants]
        period_weights = [[float(snapshot.weights.get(v.name, 0.0)) for v in variants] for snapshot in history]
        test = statistics.srm_time_weighted(srm_counts, firsts.by_period, period_weights)
        srm_p = _finite(test.p_value)
        srm_expected = [round(e, 1) for e in test.expected]
        srm_note = (
            "customers counted once, in the variant of their first exposure, against the allocation in force "
            f"then ({len(history)} allocation period(s))"
        )
        if firsts.unsettled:
            srm_note += (
                f"; {firsts.unsettled:,} first exposed within {settle.total_seconds():.0f} s of a reallocation "
                "(when either allocation may have served them) are left out"
            )
        if srm_p is None:
            srm_note = "no customers yet"
    elif variants and sum(srm_weights) > 0:
        srm_p = _finite(statistics.srm_p_value(counts, srm_weights))
        if srm_p is None:
            srm_note = "no customers yet"
        elif sum(counts):
            total_w = sum(srm_weights)
            srm_expected = [round(sum(counts) * w / total_w, 1) for w in srm_weights]
    flagged = statistics.srm_flagged(srm_p)

    guardrails = _guardrails(experiment, variants, rows)
    failures = {g["name"]: g["failures"] for g in guardrails["variants"] if g["failures"]}

    if control is None:
        verdict = "The experiment has no variants."
    elif sum(counts) == 0:
        verdict = "No data yet: no customer has been exposed to the experiment."
    else:
        verdict = statistics.verdict(
            statistics.VerdictInput(
                metric_label=label,
                control_name=control.name,
                treatments=treatments,
                counts=srm_counts,
                weights=srm_weights,
                srm_p=srm_p,
                minimum_sample=experiment.minimum_sample,
                names=[v.name for v in variants],
                expected=srm_expected if experiment.allocation == AllocationKind.THOMPSON else (),
                guardrail_failures=failures,
            )
        )

    return {
        "id": experiment.pk,
        "name": experiment.name,
        "status": experiment.status,
        "allocation": experiment.allocation,
        "primary_metric": metric,
        "started_at": experiment.started_at,
        "stopped_at": experiment.stopped_at,
        "minimum_sample": experiment.minimum_sample,
        "alpha": statistics.ALPHA,
        "sequential_tuning_n": tuning_n,
        "mde": REPORT_MDE,
        "control": control.name if control else None,
        "variants": rows,
        "srm_p_value": srm_p,
        "srm_flag": flagged,
        "srm_note": srm_note,
        "srm_customers": dict(zip([v.name for v in variants], srm_counts, strict=True)),
        "srm_expected": dict(zip([v.name for v in variants], srm_expected, strict=True)) if srm_expected else None,
        "guardrails": guardrails,
        "verdict": verdict,
        "allocation_history": [
            {
                "at": snapshot.created_at,
                "reason": snapshot.reason,
                "weights": snapshot.weights,
                "probability_best": snapshot.probability_best,
            }
            for snapshot in history
        ],
    }


def _guardrails(experiment: Experiment, variants: list[Variant], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The guardrails section of the report: each variant's p95 latency over its served pages and its
    fallback share over its lists, against the experiment's limits. A variant is judged once it has
    GUARDRAIL_MIN_PAGES pages (lists for the fallback share); it fails when a value is above its limit.
    Also sets each report row's `pages` and `p95_latency_ms`."""
    latency_max = experiment.p95_latency_ms_max
    share_max = experiment.fallback_share_max
    latencies = variant_page_latency(experiment, [v.pk for v in variants])
    checked: list[dict[str, Any]] = []
    for variant, row in zip(variants, rows, strict=True):
        latency = (latencies or {}).get(variant.pk, PageLatency(0, None))
        row["pages"] = latency.pages
        row["p95_latency_ms"] = _finite(latency.quantile_ms)
        failures: list[str] = []
        judged_latency = latency_max is not None and latency.pages >= GUARDRAIL_MIN_PAGES
        latency_passed: bool | None = None
        if judged_latency and row["p95_latency_ms"] is not None and latency_max is not None:
            latency_passed = row["p95_latency_ms"] <= latency_max
            if not latency_passed:
                failures.append(
                    f"p95 latency {row['p95_latency_ms']:.0f} ms is above the {latency_max} ms guardrail "
                    f"({latency.pages:,} pages)"
                )
        share = row["fallback_share"]
        share_passed: bool | None = None
        if share_max is not None and share is not None and row["lists"] >= GUARDRAIL_MIN_PAGES:
            share_passed = share <= share_max
            if not share_passed:
                failures.append(
                    f"fallback share {share * 100:.1f} % is above the {share_max * 100:.1f} % guardrail "
                    f"({row['lists']:,} lists)"
                )
        checked.append(
            {
                "name": variant.name,
                "pages": latency.pages,
                "p95_latency_ms": row["p95_latency_ms"],
                "p95_latency_passed": latency_passed,
                "lists": row["lists"],
                "fallback_share": share,
                "fallback_share_passed": share_passed,
                "failures": failures,
            }
        )
    return {
        "fallback_share_max": share_max,
        "p95_latency_ms_max": latency_max,
        "minimum_pages": GUARDRAIL_MIN_PAGES,
        "fallback_share_exceeded": [c["name"] for c in checked if c["fallback_share_passed"] is False],
        "p95_latency_exceeded": [c["name"] for c in checked if c["p95_latency_passed"] is False],
        "latency_note": "" if latencies is not None else "latency not available: the metrics app is not loaded",
        "variants": checked,
    }


__all__ = [
    "EXPERIMENTS_VERSION_KEY",
    "TOTAL_FIELDS",
    "ExposurePeriods",
    "FirstExposures",
    "allocation_history",
    "customers_first_rows",
    "experiment_current_weights",
    "experiment_get",
    "experiment_list",
    "experiment_report",
    "experiment_running_for_scene",
    "experiment_variants",
    "experiments_cache_bump",
    "experiments_cache_version",
    "first_exposure_settle",
    "first_exposures",
    "first_exposures_counted",
    "page_latency_reader_register",
    "running_experiments",
    "variant_page_latency",
    "variant_sums",
    "variant_sums_direct",
    "variant_sums_exact",
]
