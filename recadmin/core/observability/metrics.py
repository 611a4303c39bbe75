"""Every Prometheus metric recadmin exports, defined once (prometheus-client).

Counters and histograms are updated where things happen, in whichever process: under gunicorn each
worker writes its own files in PROMETHEUS_MULTIPROC_DIR (set by `recadmin.gunicorn_conf`) and the
`/metrics` view aggregates them (prometheus-client's multiprocess mode). Without that variable (runserver,
tests) they live in this process's default registry.

Values that are a state rather than a count (backlogs, lags, the default model's age, training runs
in the registry) are computed when Prometheus scrapes, by functions registered with `scrape_gauge`:
the database or Redis has the answer for every process, and in compose for other containers too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUEST_SECONDS = Histogram(
    "recadmin_http_request_duration_seconds",
    "Time to answer an HTTP request, by route name, method and status; recommendation endpoints also by "
    "scene and source (model, fallback, popular).",
    ["route", "method", "status", "scene", "source"],
    buckets=LATENCY_BUCKETS,
)
FALLBACKS = Counter(
    "recadmin_fallbacks",
    "Recommendation answers that fell back to trending lists instead of the model, by reason.",
    ["reason", "route"],
)
TORCHSERVE_CALL_SECONDS = Histogram(
    "recadmin_torchserve_call_duration_seconds",
    "Time of a call to TorchServe through the adapter, by operation and outcome (ok or the error class).",
    ["operation", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0),
)
TORCHSERVE_ERRORS = Counter(
    "recadmin_torchserve_errors",
    "Calls to TorchServe that failed, by operation and error class.",
    ["operation", "error"],
)
EVENTS_INGESTED = Counter(
    "recadmin_events_ingested",
    "Events stored through the API, by type.",
    ["type"],
)
EVENTS_REJECTED = Counter(
    "recadmin_events_rejected",
    'Event rows refused by the API, by type ("invalid" when the type itself is not accepted) and field.',
    ["type", "field"],
)
EVENTS_DUPLICATES = Counter(
    "recadmin_events_duplicates",
    "Event rows not stored again because their event_id already was.",
    [],
)
CACHE_REQUESTS = Counter(
    "recadmin_cache_requests",
    "Reads through the cache helpers, by cache and result (hit, miss, error).",
    ["cache", "result"],
)
REDIS_CIRCUIT_CHANGES = Counter(
    "recadmin_redis_circuit_changes",
    "Changes of the Redis circuit breaker's state (open: Redis failed, calls fail fast; closed: it answers again).",
    ["server", "state"],
)
SCHEDULER_RUNS = Counter(
    "recadmin_scheduler_task_runs",
    "Tasks run by the in-process scheduler, by task and outcome (ok, error).",
    ["task", "outcome"],
)

# Gauges computed at scrape time (see scrape_gauge); their names are declared here so that the
# dashboard and the test that checks it know them even before the owning app registers a source.
SERVED_LOG_BACKLOG = "recadmin_served_log_backlog"
SERVED_LOG_OLDEST_SECONDS = "recadmin_served_log_oldest_age_seconds"
SERVED_LOG_REJECTED = "recadmin_served_log_rejected"
ROLLUP_LAG_SECONDS = "recadmin_rollup_lag_seconds"
DEFAULT_MODEL_VERSION = "recadmin_default_model_version"
DEFAULT_MODEL_AGE_SECONDS = "recadmin_default_model_age_seconds"
TRAINING_RUNS = "recadmin_training_runs"
TRAINING_RUN_SECONDS = "recadmin_training_run_duration_seconds"

# A scrape gauge's source returns None (no sample), a number, or {label values tuple: number}.
GaugeValue = float | int | Mapping[tuple[str, ...], float] | None


@dataclass
class ScrapeGauge:
    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    source: Callable[[], GaugeValue] | None = None
    # A histogram source returns {label values: (sorted [(upper bound, cumulative count)], sum)}.
    histogram: bool = False


_scrape: dict[str, ScrapeGauge] = {}
_scrape_lock = threading.Lock()


def scrape_gauge(
    name: str,
    documentation: str,
    source: Callable[[], Any] | None = None,
    *,
    labels: Iterable[str] = (),
    histogram: bool = False,
) -> ScrapeGauge:
    """Declare (or give a source to) a value computed when /metrics is scraped. Declaring without a
    source reserves the name; a later call with the same name sets the source."""
    with _scrape_lock:
        found = _scrape.get(name)
        if found is None:
            found = _scrape[name] = ScrapeGauge(name, documentation, tuple(labels), source, histogram)
        elif source is not None:
            found.source = source
            found.labels = tuple(labels) or found.labels
            found.histogram = histogram or found.histogram
        return found


def scrape_gauges() -> dict[str, ScrapeGauge]:
    return dict(_scrape)


scrape_gauge(SERVED_LOG_BACKLOG, "Served pages waiting to be written to the served log.")
scrape_gauge(SERVED_LOG_OLDEST_SECONDS, "Age of the oldest served page not yet written (the drain's lag).")
scrape_gauge(SERVED_LOG_REJECTED, "Served pages the drain set aside: malformed, or refused by the database.")
scrape_gauge(ROLLUP_LAG_SECONDS, "Seconds between now and the newest served-log data the rollups include.")
scrape_gauge(DEFAULT_MODEL_VERSION, "The default model version number, per model name.", labels=("name", "kind"))
scrape_gauge(
    DEFAULT_MODEL_AGE_SECONDS, "Seconds since the default version was trained, per model name.", labels=("name",)
)
scrape_gauge(TRAINING_RUNS, "Training runs in the registry, by status (outcome) and kind.", labels=("status", "kind"))
scrape_gauge(TRAINING_RUN_SECONDS, "Duration of finished training runs, by status.", labels=("status",), histogram=True)


class _ScrapeCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        for gauge in list(_scrape.values()):
            if gauge.source is None:
                continue
            try:
                value = gauge.source()
            except Exception:
                logger.warning("metrics: the source of %s failed", gauge.name, exc_info=True)
                continue
            if value is None:
                continue
            if gauge.histogram:
                histogram = HistogramMetricFamily(gauge.name, gauge.documentation, labels=gauge.labels)
                series: Mapping[tuple[str, ...], Any] = value  # type: ignore[assignment]
                for label_values, (buckets, total) in series.items():
                    histogram.add_metric(list(label_values), [(_le(b), c) for b, c in buckets], total)
                yield histogram
                continue
            family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labels)
            if isinstance(value, Mapping):
                for label_values, number in value.items():
                    family.add_metric(list(label_values), float(number))
            else:
                family.add_metric([], float(value))
            yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def histogram_buckets(values: Iterable[float], bounds: Iterable[float]) -> tuple[list[tuple[float, int]], float]:
    """Cumulative buckets (with +Inf) and the sum, for a scrape-time histogram."""
    data = sorted(values)
    out: list[tuple[float, int]] = []
    index = 0
    for bound in [*bounds, float("inf")]:
        while index < len(data) and data[index] <= bound:
            index += 1
        out.append((bound, index))
    return out, float(sum(data))


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


_scrape_collector = _ScrapeCollector()


def metrics_registry() -> CollectorRegistry:
    """The registry a scrape reads: every process's files in multiprocess mode, else this process's."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        registry.register(_scrape_collector)
        return registry
    return _single_registry()


_single: CollectorRegistry | None = None


def _single_registry() -> CollectorRegistry:
    global _single
    if _single is None:
        registry = CollectorRegistry()

        class _Default(Collector):
            def collect(self) -> Iterator[Metric]:
                yield from REGISTRY.collect()

        registry.register(_Default())
        registry.register(_scrape_collector)
        _single = registry
    return _single


def metrics_exposition() -> bytes:
    return generate_latest(metrics_registry())


_cache_children: dict[tuple[str, str], Any] = {}


def cache_count(cache_name: str, result: str, amount: int = 1) -> None:
    """Count a read of an app's cache: result "hit", "miss" (loaded from the database) or "error"."""
    child = _cache_children.get((cache_name, result))
    if child is None:
        child = _cache_children[(cache_name, result)] = CACHE_REQUESTS.labels(cache_name, result)
    child.inc(amount)
