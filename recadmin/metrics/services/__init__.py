"""The metrics pipeline: drain the served log, attribute events to served lists, add the new pages
and attributions to the rollups, refresh the experiments' per-customer sums. One entry point,
`metrics_refresh`, run every minute by the `metrics.tasks.refresh_metrics` periodic task in every
mode (beat, or the in-process scheduler when embedded).

The package, by topic: `attribution` (events to served lists), `rollups` (hourly, position and rule
rollups, added incrementally), `recompute` (the same rollups from scratch), `experiment_customers`
(the experiments' per-customer sums), `refresh` (the pipeline that runs them in order under the
bookmark lock); `common` holds what they share.
"""

from __future__ import annotations

from recadmin.metrics.services.attribution import AttributionResult, attribution_run, attribution_run_new
from recadmin.metrics.services.common import (
    ATTRIBUTED_TYPES,
    EPOCH,
    EVENT_ID_LOOKBACK,
    EVENTS_LOOKBACK,
    SERVED_ID_LOOKBACK,
    WINDOW_TYPES,
    attribution_window,
    hour_of,
)
from recadmin.metrics.services.experiment_customers import experiment_customers_refresh
from recadmin.metrics.services.recompute import rollups_rebuild, rollups_recompute
from recadmin.metrics.services.refresh import RefreshResult, metrics_rebuild, metrics_refresh
from recadmin.metrics.services.rollups import RollupsUpdate, group_key, rollups_update

__all__ = [
    "ATTRIBUTED_TYPES",
    "EPOCH",
    "EVENTS_LOOKBACK",
    "EVENT_ID_LOOKBACK",
    "SERVED_ID_LOOKBACK",
    "WINDOW_TYPES",
    "AttributionResult",
    "RefreshResult",
    "RollupsUpdate",
    "attribution_run",
    "attribution_run_new",
    "attribution_window",
    "experiment_customers_refresh",
    "group_key",
    "hour_of",
    "metrics_rebuild",
    "metrics_refresh",
    "rollups_rebuild",
    "rollups_recompute",
    "rollups_update",
]
