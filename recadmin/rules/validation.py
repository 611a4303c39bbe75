"""The one validator of business rules and scenes.

The model's `clean()`, the admin form, the services and the API all call `rule_validate`, so a rule
refused in one place is refused everywhere with the same message. Errors are raised as
`recadmin.core.errors.ValidationError` with `extra["fields"]` mapping each offending field to its
messages, and a top-level message naming the first one ("condition: all[1].value: price min 50 is
above max 10").
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recadmin.core.errors import FieldErrors
from recadmin.rules import engine
from recadmin.rules.conditions import ConditionError, category_slugs, validate_condition

if TYPE_CHECKING:
    from recadmin.rules.models import BusinessRule, Scene

_UNSET: Any = object()


@dataclass
class RuleSpec:
    """A rule's fields as plain values. `pinned_items` and `scenes` are None when unknown (the
    model's clean() before the many-to-many fields exist); the check of those is then skipped."""

    name: str
    kind: str
    condition: Any
    filter_mode: str = engine.FILTER_EXCLUDE
    weight: float | None = None
    weight_mode: str = engine.WEIGHT_MULTIPLY
    position: int | None = None
    pinned_items: Sequence[Any] | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    priority: int = 0
    all_scenes: bool = False
    scenes: Sequence[Any] | None = None

    @classmethod
    def from_instance(
        cls, rule: BusinessRule, *, pinned_items: Sequence[Any] | None = None, scenes: Sequence[Any] | None = None
    ) -> RuleSpec:
        return cls(
            name=rule.name,
            kind=rule.kind,
            condition=rule.condition,
            filter_mode=rule.filter_mode,
            weight=rule.weight,
            weight_mode=rule.weight_mode,
            position=rule.position,
            pinned_items=pinned_items,
            valid_from=rule.valid_from,
            valid_until=rule.valid_until,
            priority=rule.priority,
            all_scenes=rule.all_scenes,
            scenes=scenes,
        )


def _unknown_categories(slugs: set[str]) -> list[str]:
    from recadmin.catalog.models import Category

    known = set(Category.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    return sorted(slugs - known)


def condition_validate(condition: Any, *, required: bool, errors: FieldErrors | None = None) -> None:
    """Check a condition alone (structure, operators, value types, known category slugs)."""
    own = errors or FieldErrors()
    if condition in (None, {}):
        if required:
            own.add("condition", "a condition is required for filter, boost and bury rules")
    else:
        try:
            validate_condition(condition)
        except ConditionError as exc:
            own.add("condition", str(exc))
        else:
            unknown = _unknown_categories(category_slugs(condition))
            if unknown:
                own.add("condition", f"unknown category slug(s): {', '.join(unknown)}")
    if errors is None:
        own.raise_if_any()


def rule_validate(spec: RuleSpec) -> None:
    """Raise ValidationError naming every field of `spec` that is wrong or makes the rule inert."""
    errors = FieldErrors()
    if not (spec.name or "").strip():
        errors.add("name", "a name is required: it is shown in the reasons of the items the rule touches")
    if spec.kind not in engine.KINDS:
        errors.add("kind", f"unknown kind {spec.kind!r}; expected one of {', '.join(engine.KINDS)}")
        errors.raise_if_any()

    if spec.kind == engine.KIND_PIN:
        if spec.condition not in (None, {}):
            errors.add("condition", "a pin places chosen items and takes no condition: leave it empty ({})")
        if spec.position is None:
            errors.add("position", "a pin needs a position (1 is the top of the list)")
        elif isinstance(spec.position, bool) or not isinstance(spec.position, int) or spec.position < 1:
            errors.add("position", f"expected a whole number from 1, got {spec.position!r}")
        if spec.pinned_items is not None and not spec.pinned_items:
            errors.add("pinned_items", "a pin needs at least one item")
    else:
        condition_validate(spec.condition, required=True, errors=errors)
        if spec.position is not None:
            errors.add("position", "only pins have a position")
        if spec.pinned_items:
            errors.add("pinned_items", "only pins have pinned items")

    if spec.kind == engine.KIND_FILTER and spec.filter_mode not in (engine.FILTER_INCLUDE, engine.FILTER_EXCLUDE):
        errors.add("filter_mode", f"expected 'include' or 'exclude', got {spec.filter_mode!r}")

    if spec.kind in (engine.KIND_BOOST, engine.KIND_BURY):
        if spec.weight_mode not in (engine.WEIGHT_MULTIPLY, engine.WEIGHT_ADD):
            errors.add("weight_mode", f"expected 'multiply' or 'add', got {spec.weight_mode!r}")
        weight = spec.weight
        if weight is None:
            errors.add("weight", f"a {spec.kind} needs a weight")
        elif isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            errors.add("weight", f"expected a number, got {weight!r}")
        elif spec.weight_mode == engine.WEIGHT_MULTIPLY and weight <= 1:
            errors.add("weight", f"a multiplying {spec.kind} needs a weight above 1 (1 changes nothing), got {weight}")
        elif spec.weight_mode == engine.WEIGHT_ADD and weight <= 0:
            errors.add("weight", f"an adding {spec.kind} needs a weight above 0, got {weight}")
    elif spec.weight is not None:
        errors.add("weight", "only boosts and buries have a weight")

    if spec.valid_from is not None and spec.valid_until is not None and spec.valid_from >= spec.valid_until:
        errors.add("valid_until", "must be after valid_from, or the rule is never valid")

    if spec.scenes is not None and not spec.all_scenes and not spec.scenes:
        errors.add("scenes", "choose at least one scene, or tick 'all scenes'")

    if isinstance(spec.priority, bool) or not isinstance(spec.priority, int):
        errors.add("priority", f"expected a whole number, got {spec.priority!r}")
    errors.raise_if_any()


def scene_validate(
    *,
    default_n: Any = _UNSET,
    candidate_multiplier: Any = _UNSET,
    max_per_category: Any = _UNSET,
    mmr_lambda: Any = _UNSET,
    fallback: Any = _UNSET,
    exclude_purchased_days: Any = _UNSET,
    scene: Scene | None = None,
) -> None:
    """Cross-field checks of a scene the model's field validators cannot make alone."""
    from recadmin.rules.models import MAX_LIST_LENGTH, FallbackKind

    errors = FieldErrors()

    def pick(name: str, given: Any) -> Any:
        return getattr(scene, name, None) if given is _UNSET else given

    values: Mapping[str, Any] = {
        "default_n": pick("default_n", default_n),
        "candidate_multiplier": pick("candidate_multiplier", candidate_multiplier),
        "max_per_category": pick("max_per_category", max_per_category),
        "mmr_lambda": pick("mmr_lambda", mmr_lambda),
        "fallback": pick("fallback", fallback),
        "exclude_purchased_days": pick("exclude_purchased_days", exclude_purchased_days),
    }
    n = values["default_n"]
    if n is not None and not 1 <= n <= MAX_LIST_LENGTH:
        errors.add("default_n", f"must be from 1 to {MAX_LIST_LENGTH}, got {n}")
    multiplier = values["candidate_multiplier"]
    if multiplier is not None and not 1 <= multiplier <= 50:
        errors.add("candidate_multiplier", f"must be from 1 to 50, got {multiplier}")
    cap = values["max_per_category"]
    if cap is not None and cap < 1:
        errors.add("max_per_category", "must be at least 1, or empty for no cap")
    lam = values["mmr_lambda"]
    if lam is not None and not (isinstance(lam, int | float) and math.isfinite(lam) and 0.0 <= lam <= 1.0):
        errors.add("mmr_lambda", f"must be from 0 to 1, got {lam}")
    fb = values["fallback"]
    if fb is not None and fb not in FallbackKind.values:
        errors.add("fallback", f"expected one of {', '.join(FallbackKind.values)}, got {fb!r}")
    days = values["exclude_purchased_days"]
    if days is not None and days < 1:
        errors.add("exclude_purchased_days", "must be at least 1 day, or empty to keep bought items")
    errors.raise_if_any()
