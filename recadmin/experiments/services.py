"""Writes of experiments: create, start, stop, Thompson reallocation, promotion of the winner, and the
idempotent upsert of the per-customer sums. Every change to what runs bumps the app's cache version."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from recadmin.core.errors import Conflict, FieldErrors, ValidationError
from recadmin.core.iterables import chunked
from recadmin.experiments import bandit
from recadmin.experiments.models import (
    TOTAL_COUNTERS,
    TOTAL_PRODUCTS,
    AllocationKind,
    AllocationSnapshot,
    Experiment,
    ExperimentCustomer,
    ExperimentFirstExposure,
    ExperimentStatus,
    ExposureCount,
    PrimaryMetric,
    Variant,
    VariantTotals,
)
from recadmin.experiments.params import (
    DEFAULT_THOMPSON_FLOOR,
    MAX_VARIANTS,
    STRATEGY_SOURCES,
    VARIANT_CHANGES,
    VARIANT_FIELDS,
)
from recadmin.experiments.selectors import (
    TOTAL_FIELDS,
    ExposurePeriods,
    allocation_history,
    customers_first_rows,
    experiments_cache_bump,
    first_exposure_settle,
    variant_sums,
    variant_sums_exact,
)
from recadmin.modelops.models import LIVE_STATUSES, ModelVersion, ModelVersionStatus
from recadmin.rules.models import Scene
from recadmin.rules.services import SCENE_FIELDS
from recadmin.rules.validation import scene_validate

GUARDRAIL_FIELDS = ("fallback_share_max", "p95_latency_ms_max")
# The scene fields a variant may override: its behaviour, not its identity, its on/off switch or its
# strategy (a variant changes the strategy through its own `strategy`).
SCENE_SETTING_FIELDS = tuple(f for f in SCENE_FIELDS if f not in ("name", "description", "enabled", "strategy"))
# A Thompson update that moves no weight by more than this writes no new snapshot.
ALLOCATION_MIN_CHANGE = 0.001


def _is_number(value: Any) -> TypeGuard[float]:
    return not isinstance(value, bool) and isinstance(value, int | float | Decimal) and math.isfinite(value)


def _is_int(value: Any) -> TypeGuard[int]:
    return not isinstance(value, bool) and isinstance(value, int)


# --- validation ------------------------------------------------------------------------------------


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
        unknown = sorted(set(raw) - set(VARIANT_FIELDS))
        if unknown:
            errors.add(f"{prefix}.{unknown[0]}", f"unknown variant field; accepted: {', '.join(VARIANT_FIELDS)}")
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
    unknown = sorted(set(guardrails) - set(GUARDRAIL_FIELDS))
    if unknown:
        errors.add(f"guardrails.{unknown[0]}", f"unknown guardrail; accepted: {', '.join(GUARDRAIL_FIELDS)}")
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


# --- Thompson sampling -----------------------------------------------------------------------------


def thompson_arms(
    experiment: Experiment, variants: Sequence[Variant]
) -> list[bandit.BetaArm] | list[bandit.GaussianArm]:
    """The bandit's view of each variant from the per-customer sums, for the primary metric."""
    sums = variant_sums(experiment)
    if experiment.primary_metric == PrimaryMetric.REVENUE_PER_CUSTOMER:
        return [
            bandit.GaussianArm(
                n=int(sums.get(v.pk, {}).get("customers", 0)),
                sum_y=sums.get(v.pk, {}).get("revenue", 0.0),
                sum_yy=sums.get(v.pk, {}).get("revenue_sq", 0.0),
            )
            for v in variants
        ]
    success, trial = (
        ("clicks", "impressions") if experiment.primary_metric == PrimaryMetric.CTR else ("purchases", "lists")
    )
    return [
        bandit.BetaArm(successes=sums.get(v.pk, {}).get(success, 0.0), trials=sums.get(v.pk, {}).get(trial, 0.0))
        for v in variants
    ]


def _seed(experiment: Experiment, step: int) -> int:
    digest = hashlib.blake2b(f"{experiment.salt}:allocation:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@transaction.atomic
def experiment_allocation_update(
    *, experiment: Experiment, now: dt.datetime | None = None, draws: int = bandit.DEFAULT_DRAWS
) -> AllocationSnapshot | None:
    """Recompute a running Thompson experiment's weights from the per-customer sums. Variants configured
    with weight 0 stay out of it. Writes a snapshot (and bumps the cache) only when a weight moves by
    more than ALLOCATION_MIN_CHANGE; returns it, or None when nothing changed."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != ExperimentStatus.RUNNING or experiment.allocation != AllocationKind.THOMPSON:
        raise Conflict(
            f"Experiment '{experiment.name}' is not a running Thompson-sampling experiment.",
            extra={"status": experiment.status, "allocation": experiment.allocation},
        )
    variants = [v for v in experiment.variants.order_by("position", "id") if v.weight > 0]
    arms = thompson_arms(experiment, variants)
    step = experiment.allocations.count()
    result = bandit.thompson_allocation(
        arms, floor=experiment.thompson_floor, draws=draws, seed=_seed(experiment, step)
    )
    weights = {v.name: w for v, w in zip(variants, result.weights, strict=True)}
    last = experiment.allocations.order_by("-created_at", "-id").first()
    if last is not None and all(
        abs(float(last.weights.get(name, 0.0)) - w) <= ALLOCATION_MIN_CHANGE for name, w in weights.items()
    ):
        return None
    snapshot = AllocationSnapshot.objects.create(
        experiment=experiment,
        created_at=now or timezone.now(),
        weights=weights,
        probability_best={v.name: p for v, p in zip(variants, result.probability_best, strict=True)},
        reason="thompson",
    )
    experiments_cache_bump()
    return snapshot


def experiment_allocations_update_running(*, now: dt.datetime | None = None) -> int:
    """Reallocate every running Thompson experiment; returns how many got new weights."""
    changed = 0
    ids = Experiment.objects.filter(status=ExperimentStatus.RUNNING, allocation=AllocationKind.THOMPSON).values_list(
        "pk", flat=True
    )
    for experiment in Experiment.objects.filter(pk__in=list(ids)):
        if experiment_allocation_update(experiment=experiment, now=now) is not None:
            changed += 1
    return changed


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


# --- the per-customer table ------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSums:
    """One customer's totals in one variant (absolute values, not increments)."""

    variant_id: int
    customer_shop_id: str
    exposures: int = 0
    lists: int = 0
    fallback_lists: int = 0
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    purchases: int = 0
    revenue: Decimal = Decimal("0")
    first_seen_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None


# What one customer's row sums (TOTAL_COUNTERS and revenue), then the span of their exposures.
_ROW_FIELDS = (*TOTAL_COUNTERS, "revenue")
_SUM_FIELDS = (*_ROW_FIELDS, "first_seen_at", "last_seen_at")


@transaction.atomic
def experiment_customers_upsert(*, experiment: Experiment, rows: Iterable[CustomerSums], batch_size: int = 2000) -> int:
    """Write customers' totals (insert or overwrite): idempotent, so recomputing a period from the
    attributed events and writing it again gives the same table; then what is kept over the rows in
    step with them: the variants' totals (`VariantTotals`), the customers' first exposures and their
    counts (`ExperimentFirstExposure`, `ExposureCount`). Returns the rows written."""
    _experiment_lock(experiment)
    variant_ids = set(experiment.variants.values_list("pk", flat=True))
    now = timezone.now()
    objects = []
    for row in rows:
        if row.variant_id not in variant_ids:
            raise ValidationError(f"Variant {row.variant_id} is not part of '{experiment.name}'.", field="variant_id")
        objects.append(
            ExperimentCustomer(
                experiment=experiment,
                variant_id=row.variant_id,
                customer_shop_id=row.customer_shop_id,
                exposures=row.exposures,
                lists=row.lists,
                fallback_lists=row.fallback_lists,
                impressions=row.impressions,
                clicks=row.clicks,
                add_to_carts=row.add_to_carts,
                purchases=row.purchases,
                revenue=Decimal(row.revenue),
                first_seen_at=row.first_seen_at or now,
                last_seen_at=row.last_seen_at or now,
            )
        )
    before = _rows_before(experiment, objects)
    ExperimentCustomer.objects.bulk_create(
        objects,
        batch_size=batch_size,
        update_conflicts=True,
        unique_fields=["experiment", "variant", "customer_shop_id"],
        update_fields=list(_SUM_FIELDS),
    )
    _variant_totals_move(experiment, before, objects)
    _first_exposures_refresh(
        experiment, {row.customer_shop_id for row in objects}, firsts=_firsts_after(before, objects)
    )
    return len(objects)


# --- the variants' totals (what the report and Thompson sampling read) ------------------------------
# Kept by difference: each written row adds its new contribution and takes back its old one.

_Contribution = list[Any]  # one value per selectors.TOTAL_FIELDS


def _contribution(row: Mapping[str, Any]) -> _Contribution:
    revenue = Decimal(row["revenue"])
    return [
        1,
        *(int(row[name]) for name in TOTAL_COUNTERS),
        revenue,
        *(int(row[a]) * int(row[b]) for _, a, b in TOTAL_PRODUCTS),
        revenue * revenue,
    ]


def _rows_before(
    experiment: Experiment, objects: Sequence[ExperimentCustomer]
) -> dict[tuple[int, str], dict[str, Any]]:
    """(variant id, customer) -> the row as it is, for every row (any variant) of the customers about
    to be written: the old contributions to the totals, and with the written rows over them, each
    customer's rows after the write (their first exposure), from one read."""
    before: dict[tuple[int, str], dict[str, Any]] = {}
    for chunk in chunked(sorted({row.customer_shop_id for row in objects}), _CHUNK):
        rows = ExperimentCustomer.objects.filter(experiment=experiment, customer_shop_id__in=chunk).values(
            "variant_id", "customer_shop_id", "first_seen_at", *_ROW_FIELDS
        )
        for row in rows:
            before[(row["variant_id"], row["customer_shop_id"])] = row
    return before


def _firsts_after(
    before: Mapping[tuple[int, str], Mapping[str, Any]], objects: Sequence[ExperimentCustomer]
) -> dict[str, tuple[int, dt.datetime]]:
    """customer -> (variant id, time) of their first exposure once `objects` are written over `before`
    (the rule of `selectors.customers_first_rows`)."""
    seen = {key: row["first_seen_at"] for key, row in before.items()}
    seen.update({(row.variant_id, row.customer_shop_id): row.first_seen_at for row in objects})
    firsts: dict[str, tuple[dt.datetime, int]] = {}
    for (variant_id, customer), moment in seen.items():
        known = firsts.get(customer)
        if known is None or (moment, variant_id) < known:
            firsts[customer] = (moment, variant_id)
    return {customer: (variant_id, moment) for customer, (moment, variant_id) in firsts.items()}


def _variant_totals_move(
    experiment: Experiment, before: Mapping[tuple[int, str], Mapping[str, Any]], objects: Sequence[ExperimentCustomer]
) -> None:
    deltas: dict[int, _Contribution] = {}
    for row in objects:
        new = _contribution({name: getattr(row, name) for name in _ROW_FIELDS})
        found = before.get((row.variant_id, row.customer_shop_id))
        old = _contribution(found) if found is not None else None
        delta = deltas.setdefault(row.variant_id, [0] * len(TOTAL_FIELDS))
        for i, value in enumerate(new):
            delta[i] += value - (old[i] if old is not None else 0)
    if not deltas:
        return
    existing = {
        totals.variant_id: totals
        for totals in VariantTotals.objects.filter(experiment=experiment, variant_id__in=deltas)
    }
    rows = []
    for variant_id, delta in deltas.items():
        totals = existing.get(variant_id) or VariantTotals(experiment=experiment, variant_id=variant_id)
        for name, value in zip(TOTAL_FIELDS, delta, strict=True):
            setattr(totals, name, getattr(totals, name) + value)
        rows.append(totals)
    VariantTotals.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["experiment", "variant"], update_fields=list(TOTAL_FIELDS)
    )


@transaction.atomic
def experiment_aggregates_rebuild(*, experiment: Experiment) -> None:
    """Everything kept over the experiment's customer rows, from scratch: the variants' totals, the
    first exposures and their counts. For `metrics_rebuild`, and rows written around the upsert."""
    experiment_variant_totals_rebuild(experiment=experiment)
    experiment_first_exposures_rebuild(experiment=experiment)


@transaction.atomic
def experiment_variant_totals_rebuild(*, experiment: Experiment) -> None:
    """The variants' totals from scratch, from every customer row (`selectors.variant_sums_direct`
    with exact sums): what the upkeep gives (a test compares them)."""
    _experiment_lock(experiment)
    VariantTotals.objects.filter(experiment=experiment).delete()
    VariantTotals.objects.bulk_create(
        VariantTotals(experiment=experiment, variant_id=variant_id, **sums)
        for variant_id, sums in variant_sums_exact(experiment).items()
    )


# --- first exposures (the sample-ratio test under Thompson sampling) -------------------------------
# Each customer's first exposure is kept as their rows are written, with the allocation period in
# force then, and counted per (variant, period, settled): the report reads the counts. A change moves
# the counts by the difference between the customer's old and new first exposure, so the writers of
# one experiment take its row lock first (the upsert, a new snapshot, a rebuild): two of them at once
# would otherwise both add the same customer.

_CHUNK = 2000


def _experiment_lock(experiment: Experiment) -> None:
    list(Experiment.objects.select_for_update().filter(pk=experiment.pk).values_list("pk", flat=True))


def _settle_ms(settle: dt.timedelta) -> int:
    return round(settle.total_seconds() * 1000)


@dataclass(frozen=True)
class _Classifier:
    """A first exposure's allocation period (the snapshot in force, the first one before it) and
    whether it was settled, by the buckets `selectors.first_exposures` counts in."""

    snapshot_ids: list[int]
    periods: ExposurePeriods

    @classmethod
    def of(cls, experiment: Experiment, settle: dt.timedelta) -> _Classifier:
        history = list(allocation_history(experiment).values_list("pk", "created_at"))
        return cls([pk for pk, _ in history], ExposurePeriods.of([at for _, at in history], settle))

    def classify(self, seen: dt.datetime) -> tuple[int | None, bool]:
        if not self.snapshot_ids:
            return None, True  # not started: no period yet (the first snapshot will place it)
        bucket = self.periods.bucket(seen)
        return self.snapshot_ids[self.periods.period[bucket]], self.periods.settled[bucket]


_FirstKey = tuple[int, dt.datetime, int | None, bool]  # variant, first seen, snapshot, settled


def _first_exposures_refresh(
    experiment: Experiment, customers: Iterable[str], *, firsts: Mapping[str, tuple[int, dt.datetime]] | None = None
) -> None:
    """Recompute these customers' first exposures from their `ExperimentCustomer` rows (or `firsts`,
    when the caller knows them: customer -> variant id, time) and move the counts by the difference.
    The caller holds the experiment's row lock."""
    settle = first_exposure_settle()
    settle_ms = _settle_ms(settle)
    if ExposureCount.objects.filter(experiment=experiment).exclude(settle_ms=settle_ms).exists():
        # Classified with another settling window: every customer moves, not only these.
        experiment_first_exposures_rebuild(experiment=experiment)
        return
    classifier = _Classifier.of(experiment, settle)
    deltas: dict[tuple[int, int, bool], int] = defaultdict(int)
    for chunk in chunked(sorted(set(customers)), _CHUNK):
        new = (
            firsts
            if firsts is not None
            else customers_first_rows(
                ExperimentCustomer.objects.filter(experiment=experiment, customer_shop_id__in=chunk)
            )
        )
        old: dict[str, _FirstKey] = {
            customer: (variant_id, seen, allocation_id, settled)
            for customer, variant_id, seen, allocation_id, settled in ExperimentFirstExposure.objects.filter(
                experiment=experiment, customer_shop_id__in=chunk
            ).values_list("customer_shop_id", "variant_id", "first_seen_at", "allocation_id", "settled")
        }
        write: list[ExperimentFirstExposure] = []
        gone: list[str] = []
        for customer in chunk:
            before = old.get(customer)
            after: _FirstKey | None = None
            if customer in new:
                variant_id, seen = new[customer]
                after = (variant_id, seen, *classifier.classify(seen))
            if before == after:
                continue
            if before is not None and before[2] is not None:
                deltas[(before[0], before[2], before[3])] -= 1
            if after is None:
                gone.append(customer)
                continue
            if after[2] is not None:
                deltas[(after[0], after[2], after[3])] += 1
            write.append(
                ExperimentFirstExposure(
                    experiment=experiment,
                    customer_shop_id=customer,
                    variant_id=after[0],
                    first_seen_at=after[1],
                    allocation_id=after[2],
                    settled=after[3],
                )
            )
        ExperimentFirstExposure.objects.bulk_create(
            write,
            update_conflicts=True,
            unique_fields=["experiment", "customer_shop_id"],
            update_fields=["variant", "first_seen_at", "allocation", "settled"],
        )
        if gone:
            ExperimentFirstExposure.objects.filter(experiment=experiment, customer_shop_id__in=gone).delete()
    _exposure_counts_move(experiment, deltas, settle_ms)


def _exposure_counts_move(experiment: Experiment, deltas: Mapping[tuple[int, int, bool], int], settle_ms: int) -> None:
    changed = {key: delta for key, delta in deltas.items() if delta}
    if not changed:
        return
    existing = {
        (variant_id, allocation_id, settled): n
        for variant_id, allocation_id, settled, n in ExposureCount.objects.filter(
            experiment=experiment,
            variant_id__in={key[0] for key in changed},
            allocation_id__in={key[1] for key in changed},
        ).values_list("variant_id", "allocation_id", "settled", "customers")
    }
    rows = []
    for (variant_id, allocation_id, settled), delta in changed.items():
        customers = existing.get((variant_id, allocation_id, settled), 0) + delta
        if customers < 0:  # a count out of step with the customers' rows: a bug, never a silent fix
            raise RuntimeError(f"experiment {experiment.pk}: first-exposure count below zero for variant {variant_id}")
        rows.append(
            ExposureCount(
                experiment=experiment,
                variant_id=variant_id,
                allocation_id=allocation_id,
                settled=settled,
                settle_ms=settle_ms,
                customers=customers,
            )
        )
    ExposureCount.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["experiment", "variant", "allocation", "settled"],
        update_fields=["customers", "settle_ms"],
    )


@transaction.atomic
def experiment_first_exposures_reclassify(*, snapshot: AllocationSnapshot) -> None:
    """A new allocation snapshot: the customers first exposed from its time on (or not placed yet)
    now fall in its period or its settling window. Usually none (a snapshot is written at the time it
    takes effect); a back-dated one, or one racing a refresh that wrote customers just before it,
    moves some. The first snapshot of an experiment places every customer."""
    experiment = snapshot.experiment
    _experiment_lock(experiment)
    rows = ExperimentFirstExposure.objects.filter(experiment=experiment)
    first = allocation_history(experiment).values_list("pk", flat=True).first()
    if first != snapshot.pk:
        rows = rows.filter(Q(first_seen_at__gte=snapshot.created_at) | Q(allocation__isnull=True))
    customers = list(rows.values_list("customer_shop_id", flat=True))
    if customers:
        _first_exposures_refresh(experiment, customers)


@transaction.atomic
def experiment_first_exposures_rebuild(*, experiment: Experiment) -> int:
    """Recompute the experiment's first exposures and their counts from scratch from its customers'
    rows (what the incremental upkeep gives; a test compares them). For `metrics_rebuild`, a changed
    settling window, or rows written around the upsert (a bulk load). Returns the customers placed."""
    _experiment_lock(experiment)
    ExposureCount.objects.filter(experiment=experiment).delete()
    ExperimentFirstExposure.objects.filter(experiment=experiment).delete()
    settle = first_exposure_settle()
    classifier = _Classifier.of(experiment, settle)
    if connection.vendor != "postgresql" or not classifier.snapshot_ids:
        customers = ExperimentCustomer.objects.filter(experiment=experiment).values_list("customer_shop_id", flat=True)
        _first_exposures_refresh(experiment, customers.distinct().order_by())
        return ExperimentFirstExposure.objects.filter(experiment=experiment).count()
    # PostgreSQL: the customers never leave the database (bucket b's period and settledness by index).
    periods = classifier.periods
    bucket_snapshot = [classifier.snapshot_ids[t] for t in periods.period]
    first_table = ExperimentFirstExposure._meta.db_table
    bucket = "width_bucket(f.first_seen_at, %s::timestamptz[]) + 1"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {first_table} (experiment_id, customer_shop_id, variant_id, first_seen_at, allocation_id, "
            f"settled) SELECT %s, f.customer_shop_id, f.variant_id, f.first_seen_at, (%s::bigint[])[{bucket}], "
            f"(%s::boolean[])[{bucket}] FROM (SELECT DISTINCT ON (customer_shop_id) customer_shop_id, variant_id, "
            f"first_seen_at FROM {ExperimentCustomer._meta.db_table} WHERE experiment_id = %s "
            "ORDER BY customer_shop_id, first_seen_at, variant_id) AS f",
            [experiment.pk, bucket_snapshot, periods.edges, periods.settled, periods.edges, experiment.pk],
        )
        placed = int(cursor.rowcount)
        cursor.execute(
            f"INSERT INTO {ExposureCount._meta.db_table} (experiment_id, variant_id, allocation_id, settled, "
            f"settle_ms, customers) SELECT experiment_id, variant_id, allocation_id, settled, %s, COUNT(*) "
            f"FROM {first_table} WHERE experiment_id = %s GROUP BY 1, 2, 3, 4",
            [_settle_ms(settle), experiment.pk],
        )
        # Planner statistics for the rows just written: the upkeep's reads by customer need the index.
        cursor.execute(f"ANALYZE {first_table}")
    return placed
