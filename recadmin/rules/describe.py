"""A rule said in words, for the rule list and the dashboard:
"Boost brand Kano x1.5 on home, until 31 Dec"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.utils import timezone

from recadmin.rules import engine

_OPS = {"eq": "", "ne": "not ", "lt": "under ", "lte": "at most ", "gt": "over ", "gte": "at least "}
MAX_LISTED = 3


def _values(value: Any) -> str:
    values = value if isinstance(value, list) else [value]
    shown = [str(v) for v in values[:MAX_LISTED]]
    if len(values) > MAX_LISTED:
        shown.append(f"{len(values) - MAX_LISTED} more")
    return " or ".join(shown) if len(shown) <= 2 else ", ".join(shown[:-1]) + " or " + shown[-1]


def _price(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def condition_describe(condition: Mapping[str, Any] | None) -> str:
    """A condition in words: 'brand Kano and price 10-50'. {} is 'every item'."""
    if not condition:
        return "every item"
    if "all" in condition or "any" in condition:
        key = "all" if "all" in condition else "any"
        parts = [condition_describe(sub) for sub in condition[key]]
        joined = (" and " if key == "all" else " or ").join(parts)
        return f"({joined})" if len(parts) > 1 and key == "any" else joined
    if "not" in condition:
        return f"not {condition_describe(condition['not'])}"
    field, op, value = condition.get("field"), condition.get("op"), condition.get("value")
    if field == "category":
        suffix = " (with subcategories)" if op == "in_subtree" else ""
        return f"category {_values(value)}{suffix}"
    if field == "brand":
        negate = "not " if op in ("ne", "not_in") else ""
        return f"brand {negate}{_values(value)}"
    if field == "price":
        if op == "between" and isinstance(value, list) and len(value) == 2:
            return f"price {_price(value[0])}-{_price(value[1])}"
        return f"price {_OPS.get(str(op), '')}{_price(value)}"
    if field == "in_stock":
        return "in stock" if value else "out of stock"
    if field == "active":
        return "active" if value else "inactive"
    if field == "item":
        return f"item {_values(value)}"
    if isinstance(field, str) and field.startswith("attributes."):
        name = field.split(".", 1)[1]
        if op == "exists":
            return f"with {name}" if value else f"without {name}"
        negate = "not " if op in ("ne", "not_in") else ""
        return f"{name} {negate}{_values(value)}"
    return f"{field} {op} {value}"


def _date(value: dt.datetime, now: dt.datetime) -> str:
    local = timezone.localtime(value)
    text = f"{local.day} {local.strftime('%b')}"
    if local.year != timezone.localtime(now).year:
        text += f" {local.year}"
    if (local.hour, local.minute) != (0, 0):
        text += f" {local.strftime('%H:%M')}"
    return text


def rule_describe(
    *,
    kind: str,
    condition: Mapping[str, Any] | None,
    filter_mode: str = engine.FILTER_EXCLUDE,
    weight: float | None = None,
    weight_mode: str = engine.WEIGHT_MULTIPLY,
    position: int | None = None,
    pinned: Sequence[str] = (),
    all_scenes: bool = False,
    scenes: Iterable[str] = (),
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
    enabled: bool = True,
    now: dt.datetime | None = None,
) -> str:
    now = now or timezone.now()
    what = condition_describe(condition)
    if kind == engine.KIND_FILTER:
        text = f"Show only {what}" if filter_mode == engine.FILTER_INCLUDE else f"Hide {what}"
    elif kind in (engine.KIND_BOOST, engine.KIND_BURY):
        verb = "Boost" if kind == engine.KIND_BOOST else "Bury"
        amount = _price(weight) if weight is not None else "?"
        if weight_mode == engine.WEIGHT_ADD:
            change = f"{'+' if kind == engine.KIND_BOOST else '-'}{amount}"
        else:
            change = f"x{amount}" if kind == engine.KIND_BOOST else f"/{amount}"
        text = f"{verb} {what} {change}"
    elif kind == engine.KIND_PIN:
        items = _values(list(pinned)).replace(" or ", ", ") if pinned else "no item"
        text = f"Pin {items} at position {position or '?'}"
    else:
        text = f"{kind} {what}"
    slugs = sorted(scenes)
    text += " on all scenes" if all_scenes else (f" on {', '.join(slugs)}" if slugs else " on no scene")
    if valid_from is not None and valid_from > now:
        text += f", from {_date(valid_from, now)}"
    if valid_until is not None:
        text += f", {'until' if valid_until > now else 'ended'} {_date(valid_until, now)}"
    if not enabled:
        text += " (disabled)"
    return text


def rule_describe_instance(rule: Any, *, now: dt.datetime | None = None) -> str:
    """`rule_describe` of a saved BusinessRule (uses prefetched scenes and pinned items if present)."""
    pinned = sorted(item.shop_id for item in rule.pinned_items.all()) if rule.pk else []
    scenes = [scene.slug for scene in rule.scenes.all()] if rule.pk else []
    return rule_describe(
        kind=rule.kind,
        condition=rule.condition,
        filter_mode=rule.filter_mode,
        weight=rule.weight,
        weight_mode=rule.weight_mode,
        position=rule.position,
        pinned=pinned,
        all_scenes=rule.all_scenes,
        scenes=scenes,
        valid_from=rule.valid_from,
        valid_until=rule.valid_until,
        enabled=rule.enabled,
        now=now,
    )
