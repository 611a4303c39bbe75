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

A package by topic: `running` (the cached running experiments of the hot path), `reads` (the API's
and the admin's reads, the per-variant sums), `exposures` (pages' latency, first exposures) and
`report`. Callers import from the package.
"""

from __future__ import annotations

from recadmin.experiments.selectors.exposures import (
    FIRST_EXPOSURES_CACHE_SECONDS,
    ExposurePeriods,
    FirstExposures,
    PageLatency,
    PageLatencyReader,
    customers_first_rows,
    first_exposure_settle,
    first_exposures,
    first_exposures_counted,
    page_latency_reader_register,
    variant_page_latency,
)
from recadmin.experiments.selectors.reads import (
    TOTAL_FIELDS,
    allocation_history,
    experiment_current_weights,
    experiment_get,
    experiment_list,
    experiment_variants,
    variant_sums,
    variant_sums_direct,
    variant_sums_exact,
)
from recadmin.experiments.selectors.report import experiment_report, metric_estimate
from recadmin.experiments.selectors.running import (
    CACHE_SCHEMA,
    EXPERIMENTS_VERSION_KEY,
    experiment_running_for_scene,
    experiments_cache_bump,
    experiments_cache_version,
    experiments_forget_local,
    running_experiments,
    running_experiments_build,
    weights_in_force,
)

__all__ = [
    "CACHE_SCHEMA",
    "EXPERIMENTS_VERSION_KEY",
    "FIRST_EXPOSURES_CACHE_SECONDS",
    "TOTAL_FIELDS",
    "ExposurePeriods",
    "FirstExposures",
    "PageLatency",
    "PageLatencyReader",
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
    "experiments_forget_local",
    "first_exposure_settle",
    "first_exposures",
    "first_exposures_counted",
    "metric_estimate",
    "page_latency_reader_register",
    "running_experiments",
    "running_experiments_build",
    "variant_page_latency",
    "variant_sums",
    "variant_sums_direct",
    "variant_sums_exact",
    "weights_in_force",
]
