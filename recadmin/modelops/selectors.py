"""Reads of the model registry.

`default_model_get` is on the serving hot path: it answers from the cache and touches the database
only on a miss. Every service that changes the default drops that cache entry after commit.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet

from recadmin.core.observability.metrics import cache_count
from recadmin.modelops.models import LIVE_STATUSES, ModelVersion, ModelVersionStatus, TrainingRun

logger = logging.getLogger(__name__)

_DEFAULT_CACHE_PREFIX = "modelops:default:"
# Long enough that serving almost never queries; every change of default deletes the key anyway.
_DEFAULT_CACHE_SECONDS = 300
_NONE = "none"
# What the TorchServe sync unloaded lately (written by services.models_sync_torchserve).
UNLOADED_CACHE_KEY = "modelops:sync:unloaded"


@dataclass(frozen=True)
class DefaultModel:
    """What serving needs to know about the current default: small, cacheable, no ORM object."""

    id: int
    name: str
    version: int
    kind: str


def default_cache_key(name: str) -> str:
    return f"{_DEFAULT_CACHE_PREFIX}{name}"


def model_name_resolve(name: str | None = None) -> str:
    return name or settings.RECOMMENDER_MODEL_NAME


def model_version_default(*, name: str | None = None) -> ModelVersion | None:
    """The default version of `name` (the configured recommender by default), from the database."""
    return (
        ModelVersion.objects.filter(name=model_name_resolve(name), status=ModelVersionStatus.DEFAULT)
        .select_related("training_run")
        .first()
    )


def default_model_get(*, name: str | None = None) -> DefaultModel | None:
    """The current default version, cached: call it on every request without a database query."""
    resolved = model_name_resolve(name)
    key = default_cache_key(resolved)
    try:
        cached = cache.get(key)
    except Exception:  # noqa: BLE001 - a cache outage falls back to the database
        cache_count("default_model", "error")
        cached = None
    if cached == _NONE:
        cache_count("default_model", "hit")
        return None
    if isinstance(cached, dict):
        cache_count("default_model", "hit")
        return DefaultModel(**cached)
    cache_count("default_model", "miss")
    row = (
        ModelVersion.objects.filter(name=resolved, status=ModelVersionStatus.DEFAULT)
        .values("id", "name", "version", "kind")
        .first()
    )
    value: Any = row if row is not None else _NONE
    with contextlib.suppress(Exception):  # a cache outage must not fail the request
        cache.set(key, value, _DEFAULT_CACHE_SECONDS)
    return DefaultModel(**row) if row is not None else None


_serving_versions: dict[tuple[str, int], tuple[float, DefaultModel | None]] = {}
SERVING_VERSION_SECONDS = 30.0


def serving_model_get(*, name: str, version: int) -> DefaultModel | None:
    """A named version as serving needs it (an experiment's variant): kept per process for
    SERVING_VERSION_SECONDS, so the hot path makes no query for it while warm."""
    import time

    key = (name, int(version))
    hit = _serving_versions.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < SERVING_VERSION_SECONDS:
        return hit[1]
    row = ModelVersion.objects.filter(name=name, version=version).values("id", "name", "version", "kind").first()
    found = DefaultModel(**row) if row else None
    _serving_versions[key] = (now, found)
    return found


def model_version_get(*, name: str, version: int) -> ModelVersion | None:
    return ModelVersion.objects.select_related("training_run").filter(name=name, version=version).first()


def model_version_list(*, name: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.select_related("training_run").order_by("name", "-version")
    if name:
        qs = qs.filter(name=name)
    return qs


def model_version_previous_default(*, name: str) -> ModelVersion | None:
    """The version a rollback goes to: the most recently promoted live version that is not the
    current default and was not itself rolled back from."""
    return (
        ModelVersion.objects.filter(
            name=name,
            status=ModelVersionStatus.REGISTERED,
            promoted_at__isnull=False,
            rolled_back_at__isnull=True,
        )
        .order_by("-promoted_at", "-version")
        .first()
    )


def model_versions_live(*, name: str | None = None) -> QuerySet[ModelVersion]:
    """Versions TorchServe should have loaded (default first)."""
    qs = ModelVersion.objects.filter(status__in=LIVE_STATUSES)
    if name:
        qs = qs.filter(name=name)
    return qs.order_by("name", "-status", "-version")


def training_run_get(*, run_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(pk=run_id).first()


def training_run_list(*, statuses: list[str] | None = None, kind: str | None = None) -> QuerySet[TrainingRun]:
    qs = TrainingRun.objects.select_related("created_by").order_by("-created_at", "-id")
    if statuses:
        qs = qs.filter(status__in=statuses)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


@dataclass
class RuntimeVersion:
    """One registry row with what TorchServe reports about it."""

    model_version: ModelVersion
    loaded: bool = False
    is_torchserve_default: bool = False
    workers_ready: int = 0
    workers_total: int = 0
    runtime_error: str = ""


@dataclass
class RegistryView:
    versions: list[RuntimeVersion] = field(default_factory=list)
    # Versions TorchServe has that the database does not know (a stray manual registration).
    unknown_in_torchserve: list[dict[str, Any]] = field(default_factory=list)
    torchserve_reachable: bool = True
    torchserve_error: str = ""


def model_versions_with_runtime(*, name: str | None = None, include_retired: bool = True) -> RegistryView:
    """Registry rows with what TorchServe actually reports: loaded or not, its default, workers
    ready. TorchServe being down is part of the answer (torchserve_reachable=False), not an error."""
    from recadmin.modelops.torchserve import ModelNotRegistered, TorchServeError, TorchServeUnavailable, get_client

    qs = model_version_list(name=name)
    if not include_retired:
        qs = qs.exclude(status__in=[ModelVersionStatus.RETIRED, ModelVersionStatus.FAILED])
    rows = list(qs[:500])
    view = RegistryView(versions=[RuntimeVersion(model_version=row) for row in rows])
    names = sorted({row.name for row in rows} | ({model_name_resolve(name)} if name else set()))
    client = get_client()
    runtime: dict[tuple[str, str], Any] = {}
    try:
        if not name:
            names = sorted(set(names) | {summary.name for summary in client.list_models()})
        for model in names:
            try:
                for info in client.describe(model):
                    runtime[(info.name or model, info.version)] = info
            except ModelNotRegistered:
                continue
    except (TorchServeUnavailable, TorchServeError) as exc:
        view.torchserve_reachable = False
        view.torchserve_error = exc.message
        return view
    known = set()
    for entry in view.versions:
        key = (entry.model_version.name, str(entry.model_version.version))
        known.add(key)
        found = runtime.get(key)
        if found is None:
            continue
        info = found
        if entry.model_version.status not in LIVE_STATUSES:
            # Loaded although the registry does not serve it (a run killed while registering):
            # reported until the sync unloads it.
            view.unknown_in_torchserve.append(
                {
                    "name": key[0],
                    "version": key[1],
                    "registry_status": entry.model_version.status,
                    "is_default": info.is_default,
                    "workers_ready": info.ready_workers,
                    "workers_total": len(info.workers),
                }
            )
        entry.loaded = True
        entry.is_torchserve_default = info.is_default
        entry.workers_ready = info.ready_workers
        entry.workers_total = len(info.workers)
    for key, info in sorted(runtime.items()):
        if key not in known:
            view.unknown_in_torchserve.append(
                {
                    "name": key[0],
                    "version": key[1],
                    "registry_status": None,
                    "is_default": info.is_default,
                    "workers_ready": info.ready_workers,
                    "workers_total": len(info.workers),
                }
            )
    return view


def torchserve_unloaded_recent() -> list[dict[str, Any]]:
    """What the TorchServe sync unloaded lately (newest first): {"version", "reason", "at"}."""
    try:
        return list(cache.get(UNLOADED_CACHE_KEY) or [])
    except Exception:  # noqa: BLE001 - a cache outage: nothing to show
        return []
