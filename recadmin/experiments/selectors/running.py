"""The running experiment of each scene, cached (the hot path): see the package docstring."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache

from recadmin.core.caching import cache_get, version_bump, version_token
from recadmin.experiments.assignment import RunningExperiment, VariantSpec
from recadmin.experiments.models import (
    Experiment,
    ExperimentStatus,
    Variant,
)

EXPERIMENTS_VERSION_KEY = "experiments:version"
# Part of the entry's key: bump it when the cached shape changes.
CACHE_SCHEMA = 1
_CACHE_SECONDS = 3600

_local_lock = threading.Lock()
_local: dict[str, Any] = {"version": None, "by_scene": {}, "trusted_until": 0.0}


def experiments_cache_version() -> str:
    return version_token(
        EXPERIMENTS_VERSION_KEY,
        unavailable="experiments cache unavailable; reading running experiments from the database",
    )


def experiments_cache_bump() -> None:
    """Invalidate the cached running experiments now and again at commit (a reader inside the
    transaction may have cached the old state under the new token)."""
    version_bump(EXPERIMENTS_VERSION_KEY, before=experiments_forget_local)


def weights_in_force(experiment: Experiment, variants: list[Variant]) -> list[float]:
    snapshot = experiment.allocations.order_by("-created_at", "-id").first()
    if snapshot is not None:
        return [float(snapshot.weights.get(v.name, 0.0)) for v in variants]
    return [float(v.weight) for v in variants]


def running_experiments_build() -> dict[str, dict[str, Any]]:
    """scene slug -> the running experiment's dict (RunningExperiment.to_dict), from the database."""
    by_scene: dict[str, dict[str, Any]] = {}
    experiments = (
        Experiment.objects.filter(status=ExperimentStatus.RUNNING)
        .prefetch_related("scenes", "variants__model_version")
        .order_by("started_at", "id")
    )
    for experiment in experiments:
        variants = sorted(experiment.variants.all(), key=lambda v: (v.position, v.id))
        weights = weights_in_force(experiment, variants)
        if not variants or sum(weights) <= 0:
            continue
        running = RunningExperiment(
            id=experiment.pk,
            name=experiment.name,
            salt=experiment.salt,
            variants=tuple(_variant_spec(v) for v in variants),
            weights=tuple(weights),
        )
        for scene in experiment.scenes.all():
            by_scene.setdefault(scene.slug, running.to_dict())
    return by_scene


def _variant_spec(variant: Variant) -> VariantSpec:
    version = variant.model_version
    return VariantSpec(
        id=variant.pk,
        name=variant.name,
        model_name=version.name if version is not None else None,
        model_version=version.version if version is not None else None,
        strategy=tuple(variant.strategy) if variant.strategy is not None else None,
        scene_settings=dict(variant.scene_settings) if variant.scene_settings is not None else None,
    )


def _parse(by_scene: Mapping[str, Mapping[str, Any]]) -> dict[str, RunningExperiment]:
    return {slug: RunningExperiment.from_dict(data) for slug, data in by_scene.items()}


def running_experiments(*, version: str | None = None) -> dict[str, RunningExperiment]:
    """scene slug -> its running experiment, for every scene that has one (cached, see the module)."""
    now = time.monotonic()
    if version is None:
        with _local_lock:
            if _local["version"] is not None and now < _local["trusted_until"]:
                return _local["by_scene"]
    token = experiments_cache_version() if version is None else version
    if not token:
        return _parse(running_experiments_build())
    trust = now + float(getattr(settings, "EXPERIMENTS_PROCESS_CACHE_SECONDS", 2.0))
    with _local_lock:
        if _local["version"] == token:
            _local["trusted_until"] = trust
            return _local["by_scene"]
    key = f"experiments:running:s{CACHE_SCHEMA}:{token}"
    raw = cache_get(key)
    if raw is None:
        raw = running_experiments_build()
        with contextlib.suppress(Exception):
            cache.set(key, raw, _CACHE_SECONDS)
    parsed = _parse(raw)
    with _local_lock:
        _local.update(version=token, by_scene=parsed, trusted_until=trust)
    return parsed


def experiment_running_for_scene(slug: str, *, version: str | None = None) -> RunningExperiment | None:
    """The experiment running on scene `slug`, or None. What the hot path calls, then
    `.assign(customer_id)` for the customer's `VariantSpec`. Warm: one cache read, no database query."""
    return running_experiments(version=version).get(slug)


def experiments_forget_local() -> None:
    """Drop this process's parsed copy: after a change made here, and in tests."""
    with _local_lock:
        _local.update(version=None, by_scene={}, trusted_until=0.0)
