"""An experiment's life: create, start, stop, and the promotion of the winner."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from recadmin.core.errors import Conflict, FieldErrors, ValidationError
from recadmin.experiments.models import (
    AllocationKind,
    AllocationSnapshot,
    Experiment,
    ExperimentStatus,
    PrimaryMetric,
    Variant,
)
from recadmin.experiments.params import DEFAULT_THOMPSON_FLOOR
from recadmin.experiments.selectors import experiments_cache_bump
from recadmin.experiments.services.validation import (
    _guardrails_validate,
    _is_int,
    _is_number,
    _running_conflicts,
    _scenes_by_slug,
    variants_validate,
)
from recadmin.modelops.models import LIVE_STATUSES, ModelVersion
from recadmin.rules.models import Scene

# --- create, start, stop ---------------------------------------------------------------------------


@transaction.atomic
def experiment_create(
    *,
    name: str,
    scenes: Sequence[str],
    variants: Sequence[Mapping[str, Any]],
    primary_metric: str = PrimaryMetric.CTR,
    allocation: str = AllocationKind.FIXED,
    hypothesis: str = "",
    guardrails: Mapping[str, Any] | None = None,
    minimum_sample: int | None = None,
    thompson_floor: float = DEFAULT_THOMPSON_FLOOR,
    status: str = ExperimentStatus.DRAFT,
) -> Experiment:
    """Create an experiment from the API's shape (see `apis.EXPERIMENT_EXAMPLE`). `status="running"`
    starts it at once. Raises ValidationError naming every bad field."""
    errors = FieldErrors()
    if not isinstance(name, str) or not name.strip():
        errors.add("name", "a name is required")
    elif len(name) > 200:
        errors.add("name", "at most 200 characters")
    if primary_metric not in PrimaryMetric.values:
        errors.add("primary_metric", f"expected one of {', '.join(PrimaryMetric.values)}, got {primary_metric!r}")
    if allocation not in AllocationKind.values:
        errors.add("allocation", f"expected one of {', '.join(AllocationKind.values)}, got {allocation!r}")
    if status not in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING):
        errors.add("status", f"a new experiment is 'draft' or 'running', got {status!r}")
    if minimum_sample is not None and (not _is_int(minimum_sample) or minimum_sample < 1):
        errors.add("minimum_sample", f"expected customers per variant (a whole number from 1), got {minimum_sample!r}")
    if not _is_number(thompson_floor) or not 0 <= thompson_floor <= 0.5:
        errors.add("thompson_floor", f"expected a share from 0 to 0.5, got {thompson_floor!r}")
    scene_objects = _scenes_by_slug(list(scenes) if isinstance(scenes, list | tuple) else scenes, errors)
    cleaned = variants_validate(variants, scene_objects, allocation=allocation, errors=errors)
    guard = _guardrails_validate(guardrails, errors)
    if allocation == AllocationKind.THOMPSON and _is_number(thompson_floor) and cleaned:
        arms = sum(1 for v in cleaned if v.weight > 0)
        if thompson_floor * arms > 1:
            errors.add("thompson_floor", f"a floor of {thompson_floor} per arm is impossible with {arms} arms")
    errors.raise_if_any()

    experiment = Experiment.objects.create(
        name=name.strip(),
        hypothesis=hypothesis or "",
        primary_metric=primary_metric,
        allocation=allocation,
        minimum_sample=minimum_sample,
        thompson_floor=float(thompson_floor),
        fallback_share_max=guard.get("fallback_share_max"),
        p95_latency_ms_max=guard.get("p95_latency_ms_max"),
    )
    experiment.scenes.set(scene_objects)
    Variant.objects.bulk_create(
        Variant(
            experiment=experiment,
            position=position,
            name=v.name,
            weight=v.weight,
            model_version=v.model_version,
            strategy=v.strategy,
            scene_settings=v.scene_settings,
        )
        for position, v in enumerate(cleaned)
    )
    if status == ExperimentStatus.RUNNING:
        experiment = experiment_start(experiment=experiment)
    return experiment


def _normalised(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: (w / total if total > 0 else 0.0) for name, w in weights.items()}


@transaction.atomic
def experiment_start(*, experiment: Experiment, now: dt.datetime | None = None) -> Experiment:
    """Start a draft. Refused (400 naming `scenes`) when one of its scenes already runs an experiment,
    and when a variant's model version is not loaded in TorchServe."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != ExperimentStatus.DRAFT:
        raise Conflict(
            f"Experiment '{experiment.name}' is {experiment.status}; only a draft can be started "
            "(a stopped experiment's data would mix with new traffic: create a new one).",
            extra={"status": experiment.status},
        )
    # Lock the scenes, so two experiments started at once on one scene cannot both pass the check.
    scenes = list(Scene.objects.select_for_update().filter(experiments=experiment).order_by("pk"))
    errors = FieldErrors()
    if not scenes:
        errors.add("scenes", "the experiment has no scene")
    for message in _running_conflicts(scenes, exclude_id=experiment.pk):
        errors.add("scenes", message)
    variants = list(experiment.variants.select_related("model_version").order_by("position", "id"))
    for index, variant in enumerate(variants):
        version = variant.model_version
        if version is not None and version.status not in LIVE_STATUSES:
            errors.add(
                f"variants[{index}].model_version",
                f"{version} is {version.get_status_display().lower()}: only a version loaded in TorchServe "
                "(registered or default) can be served",
            )
    if len(variants) < 2 or sum(v.weight for v in variants) <= 0:
        errors.add("variants", "at least two variants with weights summing to a positive number are needed")
    errors.raise_if_any()

    now = now or timezone.now()
    experiment.status = ExperimentStatus.RUNNING
    experiment.started_at = now
    experiment.note = f"Started at {now:%Y-%m-%d %H:%M} UTC."
    experiment.save(update_fields=["status", "started_at", "note"])
    AllocationSnapshot.objects.create(
        experiment=experiment,
        created_at=now,
        weights=_normalised({v.name: float(v.weight) for v in variants}),
        reason="start",
    )
    experiments_cache_bump()
    return experiment


@transaction.atomic
def experiment_stop(*, experiment: Experiment, now: dt.datetime | None = None, note: str = "") -> Experiment:
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != ExperimentStatus.RUNNING:
        raise Conflict(
            f"Experiment '{experiment.name}' is {experiment.status}; only a running experiment can be stopped.",
            extra={"status": experiment.status},
        )
    now = now or timezone.now()
    experiment.status = ExperimentStatus.STOPPED
    experiment.stopped_at = now
    experiment.note = note or f"Stopped at {now:%Y-%m-%d %H:%M} UTC."
    experiment.save(update_fields=["status", "stopped_at", "note"])
    experiments_cache_bump()
    return experiment


# --- promotion of the winner -----------------------------------------------------------------------


def experiment_promote_winner(*, experiment: Experiment, variant: Variant) -> str:
    """Make `variant`'s change the default everywhere and stop the experiment: a model version through
    modelops' promote service (TorchServe's default, then the registry), scene settings (or a strategy)
    into each of the experiment's scenes through the rules services. Returns what was done."""
    experiment.refresh_from_db()
    if variant.experiment_id != experiment.pk:
        raise ValidationError(f"Variant '{variant.name}' is not part of '{experiment.name}'.", field="variant")
    if experiment.status == ExperimentStatus.DRAFT:
        raise Conflict(f"Experiment '{experiment.name}' has not run yet: there is no winner to promote.")
    if experiment.promoted_variant_id is not None:
        raise Conflict(f"Experiment '{experiment.name}' already promoted '{experiment.promoted_variant}'.")
    from recadmin.rules import services as rules_services

    scenes = list(experiment.scenes.order_by("slug"))
    if variant.model_version_id is not None:
        from recadmin.modelops.services import model_version_promote

        version = ModelVersion.objects.get(pk=variant.model_version_id)
        model_version_promote(version=version, note=f"Won experiment '{experiment.name}' as '{variant.name}'.")
        done = f"{version} is now the default model"
    elif variant.scene_settings is not None:
        with transaction.atomic():
            for scene in scenes:
                rules_services.scene_update(scene=scene, data=dict(variant.scene_settings))
        settings_text = ", ".join(f"{k}={v}" for k, v in variant.scene_settings.items())
        done = f"scene(s) {', '.join(s.slug for s in scenes)} now use {settings_text}"
    elif variant.strategy is not None:
        with transaction.atomic():
            for scene in scenes:
                rules_services.scene_update(scene=scene, data={"strategy": list(variant.strategy)})
        done = f"scene(s) {', '.join(s.slug for s in scenes)} now use the strategy {' -> '.join(variant.strategy)}"
    else:
        raise ValidationError(
            f"Variant '{variant.name}' changes nothing (it is the scene as it is): there is nothing to promote.",
            field="variant",
        )
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        now = timezone.now()
        if locked.status == ExperimentStatus.RUNNING:
            locked.status = ExperimentStatus.STOPPED
            locked.stopped_at = now
        locked.promoted_variant = variant
        locked.promoted_at = now
        locked.note = f"Promoted '{variant.name}' at {now:%Y-%m-%d %H:%M} UTC: {done}."
        locked.save(update_fields=["status", "stopped_at", "promoted_variant", "promoted_at", "note"])
        experiments_cache_bump()
    return done
