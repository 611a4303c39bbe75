"""The experiment report: per variant the primary metric's estimate against control, the guardrails, the
sample-ratio test and what the report may conclude."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from django.core.cache import cache

from recadmin.experiments import statistics
from recadmin.experiments.models import (
    AllocationKind,
    Experiment,
    PrimaryMetric,
    Variant,
)
from recadmin.experiments.params import GUARDRAIL_MIN_PAGES, METRIC_LABELS, REPORT_MDE
from recadmin.experiments.selectors.exposures import (
    FIRST_EXPOSURES_CACHE_SECONDS,
    FirstExposures,
    PageLatency,
    first_exposure_settle,
    first_exposures,
    first_exposures_counted,
    variant_page_latency,
)
from recadmin.experiments.selectors.reads import (
    allocation_history,
    experiment_current_weights,
    experiment_variants,
    variant_sums,
)

logger = logging.getLogger(__name__)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# The ratio metrics' numerator and denominator columns in `variant_sums`; each has its square
# ("<column>_sq") and their product beside it.
_RATIO_COLUMNS: dict[str, tuple[str, str, str]] = {
    PrimaryMetric.CTR: ("clicks", "impressions", "clicks_impressions"),
    PrimaryMetric.CONVERSION_RATE: ("purchases", "lists", "purchases_lists"),
}


def metric_estimate(metric: str, sums: Mapping[str, float]) -> statistics.Estimate:
    """The primary metric of one variant from its `variant_sums` row."""
    n = int(sums.get("customers", 0))
    if metric in _RATIO_COLUMNS:
        y, x, xy = _RATIO_COLUMNS[metric]
        return statistics.ratio_estimate(
            statistics.RatioMoments(
                n=n,
                sum_y=sums.get(y, 0.0),
                sum_x=sums.get(x, 0.0),
                sum_yy=sums.get(f"{y}_sq", 0.0),
                sum_xx=sums.get(f"{x}_sq", 0.0),
                sum_xy=sums.get(xy, 0.0),
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
