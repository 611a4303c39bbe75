"""Writes of scenes and business rules. Every write is validated by `recadmin.rules.validation`
(the same checks as the admin) and invalidates the cached rule sets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import IntegrityError, transaction

from recadmin.catalog.models import Item
from recadmin.core.errors import Conflict, ValidationError
from recadmin.rules.models import BusinessRule, Scene
from recadmin.rules.selectors import rules_cache_bump
from recadmin.rules.validation import RuleSpec, rule_validate, scene_validate

SCENE_FIELDS = (
    "name",
    "description",
    "default_n",
    "candidate_multiplier",
    "max_per_category",
    "mmr_enabled",
    "mmr_lambda",
    "fallback",
    "exclude_purchased_days",
    "exclude_current_item",
    "enabled",
    "strategy",
    "rank_by",
)
RULE_FIELDS = (
    "name",
    "all_scenes",
    "kind",
    "condition",
    "filter_mode",
    "weight",
    "weight_mode",
    "position",
    "valid_from",
    "valid_until",
    "priority",
    "enabled",
)

# The standard placements `seed_scenes` creates; `scene_seed_defaults` never overwrites edits.
STANDARD_SCENES: tuple[dict[str, Any], ...] = (
    {
        "slug": "home",
        "name": "Home page",
        "description": "Personalised picks on the home page: varied across categories.",
        "default_n": 12,
        "candidate_multiplier": 5,
        "max_per_category": 3,
        "mmr_enabled": True,
        "mmr_lambda": 0.7,
        "fallback": "overall",
        "exclude_purchased_days": 30,
        "exclude_current_item": True,
    },
    {
        "slug": "product_detail",
        "name": "Product page",
        "description": "'You may also like' next to the item being viewed; the current item is left out.",
        "default_n": 8,
        "candidate_multiplier": 5,
        "max_per_category": None,
        "mmr_enabled": True,
        "mmr_lambda": 0.8,
        "fallback": "category",
        "exclude_purchased_days": 30,
        "exclude_current_item": True,
    },
    {
        "slug": "cart",
        "name": "Cart",
        "description": "Complements to what is in the cart: other categories preferred.",
        "default_n": 6,
        "candidate_multiplier": 6,
        "max_per_category": 2,
        "mmr_enabled": True,
        "mmr_lambda": 0.6,
        "fallback": "category",
        "exclude_purchased_days": 7,
        "exclude_current_item": True,
    },
    {
        "slug": "email",
        "name": "Email campaign",
        "description": "Items for newsletters: nothing bought in the last 90 days, at most 2 per category.",
        "default_n": 6,
        "candidate_multiplier": 8,
        "max_per_category": 2,
        "mmr_enabled": True,
        "mmr_lambda": 0.7,
        "fallback": "overall",
        "exclude_purchased_days": 90,
        "exclude_current_item": False,
    },
)


def _full_clean(instance: Scene | BusinessRule, exclude: Iterable[str] = ()) -> None:
    from django.core.exceptions import ValidationError as DjangoValidationError

    try:
        instance.full_clean(exclude=list(exclude), validate_unique=True)
    except DjangoValidationError as exc:
        fields = {key: [str(m) for m in messages] for key, messages in exc.message_dict.items()}
        field, messages = next(iter(fields.items()))
        raise ValidationError(f"{field}: {messages[0]}", extra={"fields": fields}) from exc


# --- scenes -------------------------------------------------------------------------------------


@transaction.atomic
def scene_create(*, slug: str, name: str, **fields: Any) -> Scene:
    unknown = set(fields) - set(SCENE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown scene field(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    if Scene.objects.filter(slug=slug).exists():
        raise Conflict(f"A scene '{slug}' already exists.", extra={"fields": {"slug": ["already exists"]}})
    scene = Scene(slug=slug, name=name, **fields)
    scene_validate(scene=scene)
    _full_clean(scene)
    try:
        # A savepoint, so a concurrent create of the same slug leaves the outer transaction usable.
        with transaction.atomic():
            scene.save()
    except IntegrityError as exc:
        raise Conflict(f"A scene '{slug}' already exists.", extra={"fields": {"slug": ["already exists"]}}) from exc
    rules_cache_bump()
    return scene


@transaction.atomic
def scene_update(*, scene: Scene, data: dict[str, Any]) -> Scene:
    unknown = set(data) - set(SCENE_FIELDS)
    if unknown:
        raise ValidationError(
            f"Unknown or read-only scene field(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0]
        )
    for name, value in data.items():
        setattr(scene, name, value)
    scene_validate(scene=scene)
    _full_clean(scene)
    scene.save()
    rules_cache_bump()
    return scene


@transaction.atomic
def scene_delete(*, scene: Scene) -> None:
    scene.delete()
    rules_cache_bump()


def scene_seed_defaults() -> list[tuple[Scene, bool]]:
    """Create the standard scenes that are missing; existing ones are left as merchandisers set
    them. Returns (scene, created) pairs."""
    results: list[tuple[Scene, bool]] = []
    with transaction.atomic():
        for spec in STANDARD_SCENES:
            defaults = {key: value for key, value in spec.items() if key != "slug"}
            scene, created = Scene.objects.get_or_create(slug=spec["slug"], defaults=defaults)
            results.append((scene, created))
        rules_cache_bump()
    return results


# --- rules --------------------------------------------------------------------------------------


def _items_by_shop_id(shop_ids: Sequence[str]) -> list[Item]:
    wanted = list(dict.fromkeys(shop_ids))
    items = list(Item.objects.filter(shop_id__in=wanted))
    found = {item.shop_id for item in items}
    missing = [shop_id for shop_id in wanted if shop_id not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ValidationError(f"pinned_items: unknown item(s): {shown}", field="pinned_items")
    return items


def _scenes_by_slug(slugs: Sequence[str]) -> list[Scene]:
    wanted = list(dict.fromkeys(slugs))
    scenes = list(Scene.objects.filter(slug__in=wanted))
    found = {scene.slug for scene in scenes}
    missing = [slug for slug in wanted if slug not in found]
    if missing:
        raise ValidationError(f"scenes: unknown scene(s): {', '.join(missing)}", field="scenes")
    return scenes


@transaction.atomic
def rule_create(
    *,
    name: str,
    kind: str,
    condition: dict[str, Any] | None = None,
    scenes: Sequence[str] = (),
    all_scenes: bool = False,
    filter_mode: str = "exclude",
    weight: float | None = None,
    weight_mode: str = "multiply",
    position: int | None = None,
    pinned_items: Sequence[str] = (),
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
    priority: int = 0,
    enabled: bool = True,
) -> BusinessRule:
    """Create a rule. `scenes` are scene slugs, `pinned_items` item shop ids."""
    scene_objects = _scenes_by_slug(scenes)
    items = _items_by_shop_id(pinned_items)
    rule = BusinessRule(
        name=name,
        kind=kind,
        condition=condition if condition is not None else {},
        all_scenes=all_scenes,
        filter_mode=filter_mode,
        weight=weight,
        weight_mode=weight_mode,
        position=position,
        valid_from=valid_from,
        valid_until=valid_until,
        priority=priority,
        enabled=enabled,
    )
    rule_validate(RuleSpec.from_instance(rule, pinned_items=items, scenes=scene_objects))
    _full_clean(rule)
    rule.save()
    rule.scenes.set(scene_objects)
    rule.pinned_items.set(items)
    rules_cache_bump()
    return rule


@transaction.atomic
def rule_update(*, rule: BusinessRule, data: dict[str, Any]) -> BusinessRule:
    """Partial update. `data` may hold any of RULE_FIELDS plus `scenes` (slugs) and
    `pinned_items` (shop ids); what it leaves out keeps its value."""
    unknown = set(data) - set(RULE_FIELDS) - {"scenes", "pinned_items"}
    if unknown:
        raise ValidationError(
            f"Unknown or read-only rule field(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0]
        )
    scene_objects = _scenes_by_slug(data["scenes"]) if "scenes" in data else list(rule.scenes.all())
    items = _items_by_shop_id(data["pinned_items"]) if "pinned_items" in data else list(rule.pinned_items.all())
    for name in RULE_FIELDS:
        if name in data:
            value = data[name]
            if name == "condition" and value is None:
                value = {}
            setattr(rule, name, value)
    rule_validate(RuleSpec.from_instance(rule, pinned_items=items, scenes=scene_objects))
    _full_clean(rule)
    rule.save()
    if "scenes" in data:
        rule.scenes.set(scene_objects)
    if "pinned_items" in data:
        rule.pinned_items.set(items)
    rules_cache_bump()
    return rule


@transaction.atomic
def rule_delete(*, rule: BusinessRule) -> None:
    rule.delete()
    rules_cache_bump()


@transaction.atomic
def rule_set_enabled(*, rules: Iterable[BusinessRule], enabled: bool) -> int:
    """Enable or disable several rules (the admin's bulk actions)."""
    ids = [rule.pk for rule in rules]
    changed = list(BusinessRule.objects.select_for_update().filter(pk__in=ids).exclude(enabled=enabled))
    # One save per rule, not a bulk update: each change is recorded in the rule's history.
    for rule in changed:
        rule.enabled = enabled
        rule.save(update_fields=["enabled", "updated_at"])
    rules_cache_bump()
    return len(changed)
