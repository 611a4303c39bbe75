"""Validation of an experiment's fields: its scenes, variants (and their overrides) and guardrails."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from recadmin.core.errors import FieldErrors, ValidationError
from recadmin.experiments.models import AllocationKind, Experiment, ExperimentStatus
from recadmin.experiments.params import MAX_VARIANTS, STRATEGY_SOURCES, VARIANT_CHANGES, VARIANT_FIELDS
from recadmin.modelops.models import ModelVersion, ModelVersionStatus
from recadmin.rules.models import Scene
from recadmin.rules.services import SCENE_FIELDS
from recadmin.rules.validation import scene_validate

GUARDRAIL_FIELDS = ("fallback_share_max", "p95_latency_ms_max")
_UNKNOWN_VARIANT_FIELD = f"unknown variant field; accepted: {', '.join(VARIANT_FIELDS)}"
_UNKNOWN_GUARDRAIL = f"unknown guardrail; accepted: {', '.join(GUARDRAIL_FIELDS)}"
# The scene fields a variant may override: its behaviour, not its identity, its on/off switch or its
# strategy (a variant changes the strategy through its own `strategy`).
SCENE_SETTING_FIELDS = tuple(f for f in SCENE_FIELDS if f not in ("name", "description", "enabled", "strategy"))


def _is_number(value: Any) -> TypeGuard[float]:
    return not isinstance(value, bool) and isinstance(value, int | float | Decimal) and math.isfinite(value)


def _is_int(value: Any) -> TypeGuard[int]:
    return not isinstance(value, bool) and isinstance(value, int)


@dataclass
class VariantInput:
    """A variant as validated: what `experiment_create` stores."""

    name: str
    weight: float
    model_version: ModelVersion | None = None
    strategy: list[str] | None = None
    scene_settings: dict[str, Any] | None = None


def _scenes_by_slug(slugs: Any, errors: FieldErrors) -> list[Scene]:
    if not isinstance(slugs, list | tuple) or not slugs or not all(isinstance(s, str) for s in slugs):
        errors.add("scenes", "give at least one scene slug")
        return []
    wanted = list(dict.fromkeys(slugs))
    scenes = list(Scene.objects.filter(slug__in=wanted))
    missing = [slug for slug in wanted if slug not in {scene.slug for scene in scenes}]
    if missing:
        errors.add("scenes", f"unknown scene(s): {', '.join(missing)}")
    return sorted(scenes, key=lambda s: wanted.index(s.slug))


def _scene_field_check(field: models.Field[Any, Any], value: Any) -> str | None:
    """A strict type check of one overridden scene field (JSON gives no coercion: "false" is not false)."""
    if value is None:
        return None if field.null else "may not be null"
    if isinstance(field, models.BooleanField):
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(field, models.IntegerField):
        if not _is_int(value):
            return f"expected a whole number, got {value!r}"
    elif isinstance(field, models.FloatField):
        if not _is_number(value):
            return f"expected a number, got {value!r}"
    elif isinstance(field, models.CharField):
        if not isinstance(value, str):
            return f"expected a string, got {value!r}"
        if field.choices and value not in {choice for choice, _ in field.flatchoices}:
            return f"expected one of {', '.join(str(c) for c, _ in field.flatchoices)}, got {value!r}"
    try:
        field.run_validators(value)
    except DjangoValidationError as exc:
        return "; ".join(str(m) for m in exc.messages)
    return None


def scene_settings_validate(settings_: Any, scenes: Sequence[Scene], *, field: str, errors: FieldErrors) -> None:
    """Each key a scene setting a variant may override, each value valid for it, and every scene of the
    experiment still valid with the override applied (the same checks as editing the scene)."""
    if not isinstance(settings_, dict) or not settings_:
        errors.add(field, 'give an object of scene fields to override, e.g. {"mmr_enabled": false}')
        return
    unknown = sorted(set(settings_) - set(SCENE_SETTING_FIELDS))
    if unknown:
        errors.add(field, f"unknown scene field(s): {', '.join(unknown)}; accepted: {', '.join(SCENE_SETTING_FIELDS)}")
        return
    bad = False
    for name, value in settings_.items():
        problem = _scene_field_check(Scene._meta.get_field(name), value)  # type: ignore[arg-type]
        if problem:
            errors.add(f"{field}.{name}", problem)
            bad = True
    if bad:
        return
    for scene in scenes:
        copy = Scene(**{f.attname: getattr(scene, f.attname) for f in Scene._meta.concrete_fields})
        for name, value in settings_.items():
            setattr(copy, name, value)
        try:
            scene_validate(scene=copy)
        except ValidationError as exc:
            for sub, messages in (exc.extra.get("fields") or {}).items():
                for message in messages:
                    errors.add(f"{field}.{sub}", f"{message} (scene {scene.slug})")


def _model_version_resolve(value: Any, *, field: str, errors: FieldErrors) -> ModelVersion | None:
    if not _is_int(value) or value < 1:
        errors.add(
            field, f"expected a version number of '{settings.RECOMMENDER_MODEL_NAME}' (1, 2, ...), got {value!r}"
        )
        return None
    version = ModelVersion.objects.filter(name=settings.RECOMMENDER_MODEL_NAME, version=value).first()
    if version is None:
        errors.add(field, f"unknown model version {value} of '{settings.RECOMMENDER_MODEL_NAME}'")
        return None
    if version.status in (ModelVersionStatus.FAILED, ModelVersionStatus.RETIRED):
        errors.add(field, f"{version} is {version.get_status_display().lower()} and cannot be served")
        return None
    return version


def _strategy_validate(value: Any, *, field: str, errors: FieldErrors) -> list[str] | None:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        errors.add(field, f"give a list of candidate sources in order, from: {', '.join(STRATEGY_SOURCES)}")
        return None
    unknown = [s for s in value if s not in STRATEGY_SOURCES]
    if unknown:
        errors.add(field, f"unknown source(s): {', '.join(unknown)}; known: {', '.join(STRATEGY_SOURCES)}")
        return None
    if len(set(value)) != len(value):
        errors.add(field, "a source may appear only once")
        return None
    return list(value)


def variants_validate(
    variants: Any, scenes: Sequence[Scene], *, allocation: str, errors: FieldErrors
) -> list[VariantInput]:
    """Validate the variants of an experiment; errors name `variants[i].field`."""
    if not isinstance(variants, list | tuple) or len(variants) < 2:
        errors.add("variants", "give at least two variants: the first is the control")
        return []
    if len(variants) > MAX_VARIANTS:
        errors.add("variants", f"at most {MAX_VARIANTS} variants")
        return []
    cleaned: list[VariantInput] = []
    names: set[str] = set()
    for index, raw in enumerate(variants):
        prefix = f"variants[{index}]"
        if not isinstance(raw, Mapping):
            errors.add(prefix, "expected an object with name, weight and at most one of " + ", ".join(VARIANT_CHANGES))
            continue
        if errors.add_unknown(raw, VARIANT_FIELDS, prefix=f"{prefix}.", reason=_UNKNOWN_VARIANT_FIELD):
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            errors.add(f"{prefix}.name", "a name of 1 to 64 characters is required")
            continue
        name = name.strip()
        if name in names:
            errors.add(f"{prefix}.name", f"the name '{name}' is used twice")
            continue
        names.add(name)
        weight = raw.get("weight")
        if not _is_number(weight) or weight < 0:
            errors.add(f"{prefix}.weight", f"expected a number from 0 up, got {weight!r}")
            continue
        changes = [key for key in VARIANT_CHANGES if raw.get(key) is not None]
        if len(changes) > 1:
            errors.add(prefix, f"a variant changes at most one thing: it names {' and '.join(changes)}")
            continue
        variant = VariantInput(name=name, weight=float(weight))
        if "model_version" in changes:
            variant.model_version = _model_version_resolve(
                raw["model_version"], field=f"{prefix}.model_version", errors=errors
            )
        elif "strategy" in changes:
            variant.strategy = _strategy_validate(raw["strategy"], field=f"{prefix}.strategy", errors=errors)
        elif "scene_settings" in changes:
            scene_settings_validate(raw["scene_settings"], scenes, field=f"{prefix}.scene_settings", errors=errors)
            variant.scene_settings = dict(raw["scene_settings"])
        cleaned.append(variant)
    if len(cleaned) == len(variants):
        total = sum(v.weight for v in cleaned)
        if not total > 0:
            errors.add("variants", "the weights must sum to a positive number")
        elif cleaned[0].weight <= 0:
            errors.add("variants[0].weight", "the first variant is the control: it needs a weight above 0")
        elif sum(1 for v in cleaned if v.weight > 0) < 2 and allocation == AllocationKind.THOMPSON:
            errors.add("variants", "Thompson sampling needs at least two variants with a weight above 0")
    return cleaned


def _guardrails_validate(guardrails: Any, errors: FieldErrors) -> dict[str, Any]:
    if guardrails is None:
        return {}
    if not isinstance(guardrails, Mapping):
        errors.add("guardrails", f"expected an object with {' and/or '.join(GUARDRAIL_FIELDS)}")
        return {}
    if errors.add_unknown(guardrails, GUARDRAIL_FIELDS, prefix="guardrails.", reason=_UNKNOWN_GUARDRAIL):
        return {}
    share = guardrails.get("fallback_share_max")
    if share is not None and (not _is_number(share) or not 0 <= share <= 1):
        errors.add("guardrails.fallback_share_max", f"expected a share from 0 to 1, got {share!r}")
    latency = guardrails.get("p95_latency_ms_max")
    if latency is not None and (not _is_int(latency) or latency < 1):
        errors.add("guardrails.p95_latency_ms_max", f"expected milliseconds (a whole number from 1), got {latency!r}")
    return {key: guardrails.get(key) for key in GUARDRAIL_FIELDS}


def _running_conflicts(scenes: Iterable[Scene], *, exclude_id: int | None = None) -> list[str]:
    """Messages for each scene that already runs another experiment."""
    running = Experiment.objects.filter(status=ExperimentStatus.RUNNING, scenes__in=list(scenes))
    if exclude_id is not None:
        running = running.exclude(pk=exclude_id)
    running = running.prefetch_related("scenes").distinct()
    slugs = {scene.slug for scene in scenes}
    return [
        f"scene '{scene.slug}' already runs experiment '{other.name}' (id {other.pk}): one running experiment "
        "per scene, stop it first"
        for other in running
        for scene in other.scenes.all()
        if scene.slug in slugs
    ]
