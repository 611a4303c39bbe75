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

from django.db.models import Count

from recadmin.experiments import statistics
from recadmin.experiments.selectors import PageLatency
from recadmin.serving.models import ServedRecommendation


def served_latency_quantiles(experiment_id: int, variant_ids: Sequence[int], q: float) -> dict[int, PageLatency]:
    """variant id -> its pages in the experiment and their latency q-quantile (ms)."""
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
