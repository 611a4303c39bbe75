"""Background work of metrics: the minute's drain, attribution and rollup (every mode, embedded too)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from recadmin.celery import app

REFRESH_EVERY_SECONDS = 60.0


@shared_task(name="recadmin.metrics.tasks.refresh_metrics", ignore_result=True, acks_late=True)
def refresh_metrics() -> dict[str, Any]:
    """Drain the served log, attribute new events, roll up the touched hours, refresh the
    experiments' per-customer sums (what the report and Thompson sampling read)."""
    from recadmin.metrics.services import metrics_refresh

    return metrics_refresh().as_dict()


@app.on_after_finalize.connect
def _schedule(sender: Any, **kwargs: Any) -> None:
    # Read at call time: a test (or an operator's shell) may shorten it before the schedule is loaded.
    every = REFRESH_EVERY_SECONDS
    sender.add_periodic_task(
        every,
        refresh_metrics.s(),
        name="metrics: drain, attribute and roll up",
        options={"expires": max(every - 10.0, 5.0)},
    )
