"""Latency of served pages per experiment variant: what the experiments report's p95 guardrail reads.

Experiments sit below serving, so they do not query this app's table: `ServingConfig.ready` registers
`served_latency_quantiles` with `recadmin.experiments.selectors.page_latency_reader_register`.

The quantile is exact (numpy.percentile's default, PostgreSQL's percentile_cont) without sorting a
variant's pages: the partial index `served_experiment_latency` (experiment, variant, latency_ms) holds
them in latency order, so one index-only count gives n, and the two values around position q (n - 1)
are read by walking the index from the slow end: for the 95th percentile, 5 % of the entries. The
portable ORM query does this on PostgreSQL and SQLite alike (bench/experiment_guardrails.py measures it
against percentile_cont on millions of pages).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.cache import cache
from django.db.models import Count

from recadmin.experiments import statistics
from recadmin.experiments.selectors import PageLatency
from recadmin.serving.models import ServedRecommendation

# The count walks every page of the experiment (about 0.3 s per million on 2 shared cores), and the
# dashboards read every running experiment's report on each load: the result is kept until a newer
# page arrives, or this long (pages drained late with an older timestamp).
CACHE_SECONDS = 60


def served_latency_quantiles(experiment_id: int, variant_ids: Sequence[int], q: float) -> dict[int, PageLatency]:
    """variant id -> its pages in the experiment and their latency q-quantile (ms); cached (see above)."""
    newest = (
        ServedRecommendation.objects.filter(experiment_id=experiment_id)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if newest is None:
        return {variant_id: PageLatency(0, None) for variant_id in variant_ids}
    ids = ",".join(str(v) for v in variant_ids)
    key = f"serving:latency-quantiles:v1:{experiment_id}:{ids}:{q}:{newest.timestamp()}"
    cached = cache.get_or_set(
        key, lambda: served_latency_quantiles_compute(experiment_id, variant_ids, q), CACHE_SECONDS
    )
    if isinstance(cached, dict):
        return cached
    return served_latency_quantiles_compute(experiment_id, variant_ids, q)


def served_latency_quantiles_compute(
    experiment_id: int, variant_ids: Sequence[int], q: float
) -> dict[int, PageLatency]:
    """variant id -> its pages in the experiment and their latency q-quantile (ms), from the database."""
    pages = ServedRecommendation.objects.filter(experiment_id=experiment_id)
    counts = dict(
        pages.filter(variant_id__in=list(variant_ids))
        .values("variant_id")
        .annotate(n=Count("*"))
        .values_list("variant_id", "n")
        .order_by()
    )
    result: dict[int, PageLatency] = {}
    for variant_id in variant_ids:
        n = int(counts.get(variant_id, 0))
        if n == 0:
            result[variant_id] = PageLatency(0, None)
            continue
        low, high, fraction = statistics.percentile_positions(n, q)
        # Descending from the slowest page: ascending position p is descending position n - 1 - p.
        values = list(
            pages.filter(variant_id=variant_id)
            .order_by("-latency_ms")
            .values_list("latency_ms", flat=True)[n - 1 - high : n - low]
        )
        if len(values) < (high - low + 1):  # pages deleted between the count and the read
            result[variant_id] = PageLatency(n, None)
            continue
        high_value, low_value = float(values[0]), float(values[-1])
        result[variant_id] = PageLatency(n, statistics.interpolate_percentile(low_value, high_value, fraction))
    return result
