"""What a request must know before it can rank, read in one cache round trip.

The version tokens of the lower apps' caches (the rules' `rules:version`, the default model's key and
the ranker's (for a scene with `rank_by`),
the catalog's item generation and change counter) and, with Redis, the customer's recent history
(events.selectors.history_prefetch_key) come back in one pipeline, with the experiments' token. Everything derived
from them is then kept in this process and reused while the tokens stand still: the scene's
settings and compiled rules, the default version. When a token moves (a rule saved, a version
promoted, an item edited) the next request sees it and reloads through the owning app's selectors.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from recadmin.catalog.cache import CHANGES_KEY, GENERATION_KEY
from recadmin.catalog.metadata import category_cache_key
from recadmin.events.selectors import HistoryPrefetch, history_prefetch_key
from recadmin.experiments.selectors import EXPERIMENTS_VERSION_KEY
from recadmin.modelops.selectors import DefaultModel, default_cache_key, default_model_get, model_name_resolve
from recadmin.rules.engine import RuleSet, SceneSettings
from recadmin.rules.selectors import VERSION_KEY, ruleset_for_scene, scene_settings_for_slug

_MISSING = object()


@dataclass(frozen=True)
class SceneBundle:
    settings: SceneSettings
    ruleset: RuleSet
    enabled: bool = True


NO_SCENE = SceneBundle(settings=SceneSettings(slug=""), ruleset=RuleSet(scene=""))


@dataclass(frozen=True)
class HotState:
    rules_version: str | None
    default_raw: Any  # what the default-model key holds (dict, "none") or _MISSING
    items_generation: int
    items_changes: int | None
    # The customer's history as read in the same round trip (events.selectors.customer_history
    # reads it, or the database when the round trip failed or found no complete entry).
    history: HistoryPrefetch | None = None
    # The category slug asked for and what the cache says of it (catalog.metadata.category_exists):
    # True/False as cached, None when the cache has no answer.
    category: str = ""
    category_known: bool | None = None
    # The experiments' cache token (experiments.selectors), read with the rest.
    experiments_version: str | None = None
    # What the ranker's default-model key holds (settings.RANKER_MODEL_NAME; dict, "none") or
    # _MISSING: the rank stage needs no read of its own.
    ranker_raw: Any = _MISSING

    @property
    def items(self) -> tuple[int, int | None]:
        return self.items_generation, self.items_changes


_bundles: dict[tuple[str, str], SceneBundle | None] = {}
_bundles_lock = threading.Lock()


def _uses_redis() -> bool:
    return bool(settings.REDIS_URL) and str(settings.CACHES["default"]["BACKEND"]).startswith("django_redis")


def _read(keys: list[str], customer: str, limit: int) -> tuple[dict[str, Any], HistoryPrefetch | None]:
    """(cache tokens, the customer's history members as read)."""
    if customer and _uses_redis():
        from django_redis import get_redis_connection

        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.mget([cache.make_key(k) for k in keys])
        # One member more than needed: a PARTIAL marker (score 0) must show below the entries.
        pipe.zrevrange(history_prefetch_key(customer), 0, limit)
        values, members = pipe.execute()
        client = cache.client  # type: ignore[attr-defined]
        found = {k: client.decode(v) for k, v in zip(keys, values, strict=True) if v is not None}
        return found, HistoryPrefetch(customer=customer, members=members)
    return cache.get_many(keys), None


def category_key(slug: str) -> str:
    return category_cache_key(slug)


def hot_state(*, customer: str = "", history_limit: int = 50, category: str | None = None) -> HotState:
    ranker_key = default_cache_key(settings.RANKER_MODEL_NAME)
    keys = [
        VERSION_KEY,
        default_cache_key(model_name_resolve()),
        GENERATION_KEY,
        CHANGES_KEY,
        EXPERIMENTS_VERSION_KEY,
        # One more key in the same MGET on every request, so a ranked scene's costs no round trip.
        ranker_key,
    ]
    if category:
        keys.append(category_key(category))
    history: HistoryPrefetch | None = None
    try:
        found, history = _read(keys, customer, history_limit)
    except Exception:  # noqa: BLE001 - a cache outage: every lookup below goes to its selector
        found = {}
        if customer and _uses_redis():
            history = HistoryPrefetch(customer=customer, failed=True)
    changes = found.get(CHANGES_KEY)
    experiments_version = found.get(EXPERIMENTS_VERSION_KEY)
    return HotState(
        rules_version=found.get(VERSION_KEY),
        default_raw=found.get(keys[1], _MISSING),
        items_generation=int(found.get(GENERATION_KEY) or 0),
        # A missing counter is created (with a fresh random value) by catalog.cache.items_state.
        items_changes=int(changes) if changes is not None else None,
        history=history,
        category=category or "",
        category_known=found.get(category_key(category)) if category else None,
        experiments_version=str(experiments_version) if experiments_version is not None else None,
        ranker_raw=found.get(ranker_key, _MISSING),
    )


def _from_raw(raw: Any, name: str | None) -> DefaultModel | None:
    if isinstance(raw, dict):
        return DefaultModel(**raw)
    if raw == "none":
        return None
    return default_model_get(name=name)  # not in the cache (or it failed): the selector reads and fills it


def default_model(state: HotState) -> DefaultModel | None:
    return _from_raw(state.default_raw, None)


def ranker_model(state: HotState) -> DefaultModel | None:
    """The ranker's default version (settings.RANKER_MODEL_NAME) as hot_state read it."""
    return _from_raw(state.ranker_raw, settings.RANKER_MODEL_NAME)


def scene_lookup(slug: str, state: HotState, now: dt.datetime) -> SceneBundle | None:
    """The scene's settings and rules, None for an unknown scene."""
    version = state.rules_version
    if version is not None:
        hit = _bundles.get((version, slug), _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
    found = scene_settings_for_slug(slug)
    bundle = None
    if found is not None:
        scene_settings, enabled = found
        bundle = SceneBundle(settings=scene_settings, ruleset=ruleset_for_scene(slug, now), enabled=enabled)
    if version is not None:
        with _bundles_lock:
            if any(key[0] != version for key in _bundles):
                _bundles.clear()
            _bundles[(version, slug)] = bundle
    return bundle
