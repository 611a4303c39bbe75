"""Trending lists: time-decayed popularity, overall and per category (subtree included).

Computed from the events table in one aggregated query (per item, event type and day), decayed in
Python with a half-life, and cached: one key per category plus one overall. The `refresh_popular`
task rebuilds them on a schedule; a request that finds them missing builds them on the spot. They are
the cold-start list and the fallback when the model cannot answer, so they must always exist: with
no events at all, the newest active items stand in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Max
from django.db.models.functions import TruncDay
from django.utils import timezone

from recadmin.catalog.models import PATH_SEPARATOR, Item
from recadmin.core.caching import cache_get
from recadmin.events.models import Event
from recadmin.modelops.loader import event_type_weights

logger = logging.getLogger(__name__)

WINDOW_DAYS = 30
HALF_LIFE_DAYS = 7.0
OVERALL_LIMIT = 500
CATEGORY_LIMIT = 200
# Refreshed every few minutes by the task; the TTL only bounds staleness if the task stops.
TTL_SECONDS = 3600
_KEY = "serving:popular:{}"
_OVERALL = "*"
_BUILT_KEY = "serving:popular:built"
_LOCK_KEY = "serving:popular:lock"

Ranked = list[tuple[str, float]]

# Each process keeps what it read for a few seconds: the fallback path (TorchServe down) then
# costs no round trip and no unpickling of a 500-item list per request.
LOCAL_SECONDS = 10.0
_local: dict[str, tuple[float, Ranked]] = {}


def popular_key(category: str | None) -> str:
    return _KEY.format(category or _OVERALL)


def popular_compute(*, now: Any = None) -> dict[str, Ranked]:
    """{category slug or "*": [(item shop id, score), ...] best first}. Scores are weighted event
    counts decayed by age (half-life HALF_LIFE_DAYS) within WINDOW_DAYS of the latest event."""
    latest = Event.objects.aggregate(latest=Max("occurred_at"))["latest"]
    weights = event_type_weights()
    scores: dict[int, float] = defaultdict(float)
    if latest is not None:
        # Anchored at the latest event rather than the clock, so an imported history (or a shop
        # that paused) still has a trend; in a live shop the two are the same.
        reference = min(latest, now or timezone.now())
        since = reference - timedelta(days=WINDOW_DAYS)
        rows = (
            Event.objects.filter(occurred_at__gte=since)
            .annotate(day=TruncDay("occurred_at"))
            .values("item_id", "type", "day")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows.iterator(chunk_size=20_000):
            age_days = max((reference - row["day"]).total_seconds() / 86400.0, 0.0)
            decay = math.pow(0.5, age_days / HALF_LIFE_DAYS)
            scores[row["item_id"]] += weights.get(row["type"], 1.0) * row["n"] * decay
    lists: dict[str, Ranked] = defaultdict(list)
    meta = Item.objects.filter(id__in=list(scores), is_active=True).values_list("id", "shop_id", "category__path")
    ranked = sorted(((scores[pk], shop_id, path or "") for pk, shop_id, path in meta), key=lambda t: (-t[0], t[1]))
    for score, shop_id, path in ranked:
        rounded = round(score, 6)
        if len(lists[_OVERALL]) < OVERALL_LIMIT:
            lists[_OVERALL].append((shop_id, rounded))
        # An item counts for its category and every ancestor (subtree semantics).
        for slug in path.strip(PATH_SEPARATOR).split(PATH_SEPARATOR):
            if slug and len(lists[slug]) < CATEGORY_LIMIT:
                lists[slug].append((shop_id, rounded))
    if len(lists[_OVERALL]) < OVERALL_LIMIT:
        # Too few events (a new shop): the newest active items fill the list, scored 0.
        seen = {s for s, _ in lists[_OVERALL]}
        newest = Item.objects.filter(is_active=True).order_by("-id").values_list("shop_id", flat=True)
        for shop_id in newest[: OVERALL_LIMIT * 2]:
            if shop_id not in seen:
                lists[_OVERALL].append((shop_id, 0.0))
                if len(lists[_OVERALL]) >= OVERALL_LIMIT:
                    break
    return dict(lists)


def _store(lists: dict[str, Ranked], *, seconds: float | None) -> None:
    """Cache every list (the overall one under popular_key(None)) and when they were built."""
    payload: dict[str, Any] = {popular_key(None if k == _OVERALL else k): v for k, v in lists.items()}
    payload[_BUILT_KEY] = {"at": timezone.now().isoformat(), "seconds": seconds}
    cache.set_many(payload, TTL_SECONDS)


def popular_refresh() -> dict[str, int]:
    """Recompute every list and cache it. Returns {list: length} (the task's result)."""
    started = time.monotonic()
    lists = popular_compute()
    lists.setdefault(_OVERALL, [])
    _store(lists, seconds=round(time.monotonic() - started, 3))
    logger.info("popular lists refreshed: %d lists in %.2fs", len(lists), time.monotonic() - started)
    return {k: len(v) for k, v in lists.items()}


def popular_get(*, category: str | None = None) -> Ranked:
    """The cached trending list of a category's subtree (or overall), built if missing.
    A category with no trending items gets an empty list (callers fall back to the overall one)."""
    key = popular_key(category)
    hit = _local.get(key)
    if hit is not None and time.monotonic() - hit[0] < LOCAL_SECONDS:
        return hit[1]
    try:
        found = cache.get_many([key, _BUILT_KEY])
    except Exception:  # noqa: BLE001 - no cache: compute (slow but correct)
        found = {}
    if key in found:
        ranked: Ranked = [tuple(x) for x in found[key]]
        _local[key] = (time.monotonic(), ranked)
        return ranked
    if _BUILT_KEY in found:
        _local[key] = (time.monotonic(), [])
        return []
    # Missing: one request rebuilds, concurrent ones wait briefly for it instead of piling on.
    got_lock: bool | None = None  # None: the cache did not answer, so nobody can be building
    with contextlib.suppress(Exception):
        added = cache.add(_LOCK_KEY, 1, 60)
        # None: Redis is down and the cache ignored the failure (IGNORE_EXCEPTIONS), nobody builds.
        got_lock = None if added is None else bool(added)
    if got_lock is False:
        for _ in range(50):
            time.sleep(0.02)
            with contextlib.suppress(Exception):
                value = cache.get(key)
                if value is not None:
                    return [tuple(x) for x in value]
    try:
        lists = popular_compute()
        with contextlib.suppress(Exception):
            _store({_OVERALL: [], **lists}, seconds=None)
    finally:
        if got_lock:
            with contextlib.suppress(Exception):
                cache.delete(_LOCK_KEY)
    return lists.get(category or _OVERALL, [])


def popular_invalidate() -> None:
    _local.clear()
    with contextlib.suppress(Exception):
        cache.delete(_BUILT_KEY)
        cache.delete(popular_key(None))


def popular_status() -> dict[str, Any] | None:
    """When the lists were last built (the admin shows it)."""
    value = cache_get(_BUILT_KEY)
    return value if isinstance(value, dict) else None
