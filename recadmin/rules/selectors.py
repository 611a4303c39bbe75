"""Reads of scenes and rules, and the cached compiled rule sets serving runs on.

Caching: every compiled rule set and scene setting is stored under a key that embeds one version
token (`rules:version`). Any change to a scene, a rule or a rule's scenes / pinned items replaces the
token (see `rules_cache_bump`, called by the services and by signals for admin and shell edits), so
every cached entry is invalidated at once without knowing which scenes a rule touched ("all scenes"
rules touch every one). A missing token (evicted, Redis flushed) becomes a fresh one, never an old
one, so a stale rule set cannot come back. A cache outage falls back to the database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from django.core.cache import cache
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from recadmin.core.caching import version_bump, version_token
from recadmin.core.errors import NotFound
from recadmin.core.observability.metrics import cache_count
from recadmin.rules.engine import CompiledRule, RuleSet, SceneSettings
from recadmin.rules.models import BusinessRule, Scene

VERSION_KEY = "rules:version"
# Part of every entry's key: bump it when the cached shapes change, so a release never reads
# entries written by another one.
CACHE_SCHEMA = 1
# Entries are keyed by version, so they never serve stale data; the timeout only bounds memory.
_CACHE_SECONDS = 3600


def rules_cache_version() -> str:
    return version_token(VERSION_KEY, unavailable="rules cache unavailable; reading rules from the database")


def rules_cache_bump() -> None:
    """Invalidate every cached rule set and scene: now, and again when the transaction commits
    (a reader inside the transaction window may have cached the old state under the new token)."""
    version_bump(VERSION_KEY)


def _cached(kind: str, slug: str, build: Any) -> Any:
    version = rules_cache_version()
    if not version:
        return build()
    key = f"rules:{kind}:s{CACHE_SCHEMA}:{version}:{slug}"
    try:
        hit = cache.get(key)
    except Exception:  # noqa: BLE001
        cache_count("rules", "error")
        hit = None
    if hit is not None:
        cache_count("rules", "hit")
        return hit
    cache_count("rules", "miss")
    value = build()
    with contextlib.suppress(Exception):
        cache.set(key, value, _CACHE_SECONDS)
    return value


def scene_list(*, enabled: bool | None = None) -> QuerySet[Scene]:
    scenes = Scene.objects.all().order_by("slug")
    if enabled is not None:
        scenes = scenes.filter(enabled=enabled)
    return scenes


def scene_get(slug: str) -> Scene:
    scene = Scene.objects.filter(slug=slug).first()
    if scene is None:
        raise NotFound(f"Unknown scene '{slug}'.", extra={"fields": {"scene": [f"unknown scene '{slug}'"]}})
    return scene


def scene_settings_for_slug(slug: str) -> tuple[SceneSettings, bool] | None:
    """The engine's view of a scene and whether it is enabled, cached; None for an unknown scene.
    Disabled scenes are returned too: serving decides what a disabled scene shows."""

    def build() -> dict[str, Any]:
        scene = Scene.objects.filter(slug=slug).first()
        # An unknown scene is cached as {} so unknown-scene requests do not hit the database.
        return {} if scene is None else {**scene.to_settings().to_dict(), "_enabled": scene.enabled}

    data = dict(_cached("scene", slug, build))
    if not data:
        return None
    enabled = bool(data.pop("_enabled", True))
    return SceneSettings.from_dict(data), enabled


def scene_settings_get(slug: str) -> SceneSettings | None:
    """The engine's view of a scene (cached), None for an unknown one."""
    found = scene_settings_for_slug(slug)
    return found[0] if found else None


def rule_list(
    *, kind: str | None = None, scene: str | None = None, enabled: bool | None = None
) -> QuerySet[BusinessRule]:
    rules = BusinessRule.objects.all().prefetch_related(
        Prefetch("scenes", queryset=Scene.objects.only("id", "slug")),
        "pinned_items",
    )
    if kind:
        rules = rules.filter(kind=kind)
    if enabled is not None:
        rules = rules.filter(enabled=enabled)
    if scene:
        rules = rules.filter(Q(all_scenes=True) | Q(scenes__slug=scene)).distinct()
    return rules.order_by("-priority", "id")


def rule_get(rule_id: int) -> BusinessRule:
    rule = rule_list().filter(pk=rule_id).first()
    if rule is None:
        raise NotFound(f"Unknown rule {rule_id}.")
    return rule


def _timestamp(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def compile_rule(rule: BusinessRule, pinned_shop_ids: list[str]) -> CompiledRule:
    return CompiledRule(
        id=rule.pk,
        name=rule.name,
        kind=rule.kind,
        condition=rule.condition or None,
        filter_mode=rule.filter_mode,
        weight=float(rule.weight) if rule.weight is not None else 1.0,
        weight_mode=rule.weight_mode,
        position=rule.position,
        pinned_items=tuple(sorted(pinned_shop_ids)),
        valid_from=_timestamp(rule.valid_from),
        valid_until=_timestamp(rule.valid_until),
        priority=rule.priority,
        enabled=rule.enabled,
    )


def ruleset_compile(slug: str, now: dt.datetime | None = None) -> RuleSet:
    """Build the rule set of a scene from the database: its enabled rules (its own and the
    all-scenes ones) that have not already expired. Rules not yet valid are kept: the engine checks
    the window on every call, so the cached set stays right as time passes."""
    moment = now or timezone.now()
    rules = list(
        BusinessRule.objects.filter(Q(all_scenes=True) | Q(scenes__slug=slug), enabled=True)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=moment))
        .distinct()
        .order_by("-priority", "id")
    )
    pins: dict[int, list[str]] = {}
    pin_ids = [rule.pk for rule in rules if rule.kind == "pin"]
    if pin_ids:
        through = BusinessRule.pinned_items.through
        for rule_id, shop_id in through.objects.filter(businessrule_id__in=pin_ids).values_list(
            "businessrule_id", "item__shop_id"
        ):
            pins.setdefault(rule_id, []).append(shop_id)
    compiled = tuple(compile_rule(rule, pins.get(rule.pk, [])) for rule in rules)
    return RuleSet(scene=slug, rules=compiled, version=moment.isoformat())


def ruleset_for_scene(slug: str, now: dt.datetime | None = None) -> RuleSet:
    """The compiled rule set of a scene, from the cache (one or two cache reads when warm)."""
    data = _cached("ruleset", slug, lambda: ruleset_compile(slug, now).to_dict())
    return RuleSet.from_dict(data)
