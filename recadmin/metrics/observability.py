"""Metrics' scrape-time gauge: how far behind now the rollups are complete."""

from __future__ import annotations

from recadmin.core.observability.metrics import ROLLUP_LAG_SECONDS, scrape_gauge


def register() -> None:
    from recadmin.metrics.selectors import rollup_lag_seconds

    scrape_gauge(ROLLUP_LAG_SECONDS, "", rollup_lag_seconds)
