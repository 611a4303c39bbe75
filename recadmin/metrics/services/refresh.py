"""The metrics pipeline: drain the served log, attribute events to served lists, add the new pages
and attributions to the rollups, refresh the experiments' per-customer sums. One entry point,
`metrics_refresh`, run every minute by the `metrics.tasks.refresh_metrics` periodic task in every
mode (beat, or the in-process scheduler when embedded).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from recadmin.experiments.models import Experiment
from recadmin.experiments.services import experiment_aggregates_rebuild, experiment_first_exposures_analyze
from recadmin.metrics.models import RollupState
from recadmin.metrics.services.attribution import attribution_run, attribution_run_new, events_bookmark_reset
from recadmin.metrics.services.common import EPOCH, EVENTS_LOOKBACK
from recadmin.metrics.services.experiment_customers import experiment_customers_refresh
from recadmin.metrics.services.recompute import rollups_rebuild
from recadmin.metrics.services.rollups import RollupsUpdate, rollups_update
from recadmin.serving.served_log import served_log_drain

logger = logging.getLogger(__name__)


@dataclass
class RefreshResult:
    drained: int = 0
    direct: int = 0
    window: int = 0
    hours: int = 0
    rows: int = 0
    experiment_customers: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _drain(result: RefreshResult) -> None:
    try:
        result.drained = served_log_drain()
    except Exception:  # the database refused a batch; it went back to the buffer
        logger.exception("metrics: draining the served log failed; rolling up what is written")


def metrics_refresh(*, drain: bool = True) -> RefreshResult:
    """Drain the served log, then attribute new events, add the pages and attributions not counted
    yet to the rollups, then refresh the experiments' per-customer table. Safe to run concurrently
    (the bookmark row is locked) and to re-run: one transaction moves the sums and the bookmarks."""
    began = time.perf_counter()
    result = RefreshResult()
    start = timezone.now()
    if drain:
        _drain(result)
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(key="default")
        attributed = attribution_run_new(state=state)
        result.direct, result.window = attributed.direct, attributed.window
        update = rollups_update(state=state)
        _finish(state, update, result, start=start, began=began)
    return result


def _finish(state: RollupState, update: RollupsUpdate, result: RefreshResult, *, start: Any, began: float) -> None:
    result.hours = len(update.hours)
    result.rows = update.rows
    pairs = update.experiment_customers
    result.experiment_customers = experiment_customers_refresh(pairs=pairs) if pairs else 0
    state.events_read_until = start
    state.complete_until = start
    result.seconds = time.perf_counter() - began
    state.last_run_seconds = result.seconds
    state.save()


def metrics_rebuild(*, since: dt.datetime | None = None) -> RefreshResult:
    """Attribute the events stored from `since` (default: all history) that are not attributed yet
    (attributions are kept), then recompute every rollup row from scratch, every experiment
    customer and what is kept over them (variant totals, first exposures). For a changed
    attribution window or a repaired log; gives the rows the incremental runs give (a test compares
    them)."""
    began = time.perf_counter()
    result = RefreshResult()
    start = timezone.now()
    _drain(result)
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(key="default")
        attributed = attribution_run(since=(since or EPOCH) - EVENTS_LOOKBACK)
        events_bookmark_reset(state=state)
        result.direct, result.window = attributed.direct, attributed.window
        update = rollups_rebuild(state=state)
        _finish(state, update, result, start=start, began=began)
        _experiment_aggregates_rebuild()
    return result


def _experiment_aggregates_rebuild() -> None:
    """Every experiment's variant totals, first exposures and their counts from scratch (the upsert
    keeps them as it writes; this repairs rows written around it)."""
    for experiment in Experiment.objects.filter(customers__isnull=False).distinct().order_by("pk"):
        experiment_aggregates_rebuild(experiment=experiment, analyze=False)
    experiment_first_exposures_analyze()  # once for all of them
