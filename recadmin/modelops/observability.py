"""Model operations as operators see them: TorchServe call metrics, readiness, registry gauges.

`instrument_torchserve_client` wraps the adapter client's public methods once per process (at app
start), so every call, from serving's hot path or the pipeline, is timed and its errors counted
without the adapter knowing about Prometheus. The wrapper costs two perf_counter calls and one
histogram observation per call (measured in tests/core/test_observability.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from django.db.models import Count
from django.utils import timezone

from recadmin.core.observability.metrics import (
    DEFAULT_MODEL_AGE_SECONDS,
    DEFAULT_MODEL_VERSION,
    TORCHSERVE_CALL_SECONDS,
    TORCHSERVE_ERRORS,
    TRAINING_RUN_SECONDS,
    TRAINING_RUNS,
    histogram_buckets,
    scrape_gauge,
)
from recadmin.core.observability.readiness import readiness_check
from recadmin.modelops.models import ModelVersion, ModelVersionStatus, TrainingRun, TrainingRunStatus

INSTRUMENTED_METHODS = (
    "predict_fast",
    "predict",
    "ping",
    "register",
    "unregister",
    "set_default",
    "describe",
    "list_models",
    "scale_workers",
    "wait_until_ready",
    "metrics_text",
)
_MARK = "_recadmin_instrumented"


def _timed(operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
    ok = TORCHSERVE_CALL_SECONDS.labels(operation, "ok")
    clock = time.perf_counter

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            result = method(self, *args, **kwargs)
        except Exception as exc:
            error = type(exc).__name__
            TORCHSERVE_CALL_SECONDS.labels(operation, error).observe(clock() - started)
            TORCHSERVE_ERRORS.labels(operation, error).inc()
            raise
        ok.observe(clock() - started)
        return result

    setattr(wrapper, _MARK, True)
    return wrapper


def instrument_torchserve_client(cls: type | None = None) -> None:
    """Time the public methods of the adapter's client class (idempotent)."""
    if cls is None:
        from recadmin.modelops.torchserve import TorchServeClient

        cls = TorchServeClient
    for name in INSTRUMENTED_METHODS:
        method = getattr(cls, name, None)
        if method is None or getattr(method, _MARK, False):
            continue
        setattr(cls, name, _timed(name, method))


# --- readiness -----------------------------------------------------------------------------------


def check_torchserve(timeout: float) -> dict[str, Any]:
    """TorchServe answers /ping and has the registry's default version loaded with a ready worker."""
    from recadmin.modelops.selectors import default_model_get
    from recadmin.modelops.torchserve import ModelNotRegistered, get_client

    client = get_client()
    if not client.ping(timeout=timeout):
        return {"ok": False, "error": f"no answer to /ping at {client.config.inference_url}"}
    default = default_model_get()
    if default is None:
        return {"ok": True, "default": None, "note": "no default version in the registry"}
    label = f"{default.name}:{default.version}"
    try:
        infos = client.describe(default.name, str(default.version))
    except ModelNotRegistered:
        return {"ok": False, "default": label, "loaded": False, "error": f"{label} is not loaded in TorchServe"}
    ready = sum(info.ready_workers for info in infos)
    return {
        "ok": ready > 0,
        "default": label,
        "loaded": True,
        "workers_ready": ready,
        **({} if ready else {"error": f"{label} has no ready worker"}),
    }


# --- scrape-time gauges ----------------------------------------------------------------------------

DURATION_BOUNDS = (30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)


def default_models() -> dict[tuple[str, ...], float]:
    return {
        (row.name, row.kind): float(row.version)
        for row in ModelVersion.objects.filter(status=ModelVersionStatus.DEFAULT).only("name", "kind", "version")
    }


def default_model_ages() -> dict[tuple[str, ...], float]:
    now = timezone.now()
    return {
        (row.name,): (now - row.created_at).total_seconds()
        for row in ModelVersion.objects.filter(status=ModelVersionStatus.DEFAULT).only("name", "created_at")
    }


def training_runs_by_status() -> dict[tuple[str, ...], float]:
    counts = TrainingRun.objects.order_by().values("status", "kind").annotate(n=Count("id"))
    return {(row["status"], row["kind"]): float(row["n"]) for row in counts}


def training_run_durations() -> dict[tuple[str, ...], tuple[list[tuple[float, int]], float]]:
    out: dict[tuple[str, ...], tuple[list[tuple[float, int]], float]] = {}
    for status in (TrainingRunStatus.SUCCEEDED, TrainingRunStatus.FAILED, TrainingRunStatus.CANCELLED):
        rows = TrainingRun.objects.filter(
            status=status, started_at__isnull=False, finished_at__isnull=False
        ).values_list("started_at", "finished_at")
        seconds = [max(0.0, (end - start).total_seconds()) for start, end in rows if start and end]
        out[(str(status),)] = histogram_buckets(seconds, DURATION_BOUNDS)
    return out


def register() -> None:
    instrument_torchserve_client()
    readiness_check("torchserve", check_torchserve, critical=False)
    scrape_gauge(DEFAULT_MODEL_VERSION, "", default_models, labels=("name", "kind"))
    scrape_gauge(DEFAULT_MODEL_AGE_SECONDS, "", default_model_ages, labels=("name",))
    scrape_gauge(TRAINING_RUNS, "", training_runs_by_status, labels=("status", "kind"))
    scrape_gauge(TRAINING_RUN_SECONDS, "", training_run_durations, labels=("status",), histogram=True)
