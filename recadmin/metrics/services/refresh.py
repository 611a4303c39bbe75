"""The metrics pipeline: drain the served log, attribute events to served lists, roll up the hours
that changed, refresh the experiments' per-customer sums. One entry point, `metrics_refresh`, run
every minute by the `metrics.tasks.refresh_metrics` periodic task in every mode (beat, or the
in-process scheduler when embedded).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from recadmin.metrics.models import RollupState
from recadmin.metrics.services.attribution import attribution_run
from recadmin.metrics.services.common import EPOCH, EVENTS_LOOKBACK, SERVED_ID_LOOKBACK, hour_of
from recadmin.metrics.services.experiment_customers import experiment_customers_refresh
from recadmin.metrics.services.rollups import rollups_recompute
from recadmin.serving.models import ServedRecommendation

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


def metrics_refresh(*, drain: bool = True) -> RefreshResult:
    """Drain the served log, then attribute new events and roll up every hour they or newly written
    pages touched, then refresh the experiments' per-customer table. Safe to run concurrently (the
    bookmark row is locked) and to re-run (see the module)."""
    began = time.perf_counter()
    result = RefreshResult()
    start = timezone.now()
    if drain:
        from recadmin.serving.served_log import served_log_drain

        try:
            result.drained = served_log_drain()
        except Exception:  # the database refused a batch; it went back to the buffer
            logger.exception("metrics: draining the served log failed; rolling up what is written")
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(key="default")
        since = (state.events_read_until or EPOCH) - EVENTS_LOOKBACK
        attributed = attribution_run(since=since)
        result.direct, result.window = attributed.direct, attributed.window

        hours = set(attributed.hours)
        pairs = set(attributed.experiment_customers)
        pages = ServedRecommendation.objects.all()
        # Pages below the bookmark that were committed after the last run (a concurrent drain's
        # transaction): the count of the last run's checked id range has changed.
        low, high = state.served_check_low, state.served_read_id
        late = high > 0 and pages.filter(id__gt=low, id__lte=high).count() != state.served_check_count
        newest_id = state.served_read_id
        fields = ("id", "created_at", "experiment_id", "customer_shop_id")
        for page_id, created, experiment_id, customer in (
            pages.filter(id__gt=low if late else high).values_list(*fields).iterator(chunk_size=10000)
        ):
            hours.add(hour_of(created))
            newest_id = max(newest_id, page_id)
            if experiment_id is not None and customer:
                pairs.add((experiment_id, customer))
        state.served_check_low = max(0, newest_id - SERVED_ID_LOOKBACK)
        state.served_check_count = pages.filter(id__gt=state.served_check_low, id__lte=newest_id).count()
        result.hours = len(hours)
        result.rows = rollups_recompute(hours=hours) if hours else 0
        result.experiment_customers = experiment_customers_refresh(pairs=pairs) if pairs else 0

        state.events_read_until = start
        state.served_read_id = newest_id
        state.complete_until = start
        result.seconds = time.perf_counter() - began
        state.last_run_seconds = result.seconds
        state.save()
    return result


def metrics_rebuild(*, since: dt.datetime | None = None) -> RefreshResult:
    """Recompute everything from `since` (default: all history): attributions are kept, rollups of
    every hour with served pages are rebuilt. For a changed attribution window or a repaired log."""
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(key="default")
        state.events_read_until = since
        state.served_read_id = 0
        state.served_check_low = state.served_check_count = 0
        state.save()
    return metrics_refresh()
