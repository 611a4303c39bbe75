"""Complementary items: bought together with, or bought after, an item (from purchase sequences).

Computed from the events table by a periodic task (`refresh_complements`), never per request: per
customer, the items bought (or added to a cart) in time order over COMPLEMENT_WINDOW_DAYS; an item b
is a complement of a when the same customer bought b within TOGETHER_SECONDS of a (together, both
ways) or within AFTER_DAYS after it (after, one way). Scores count distinct customers, divided by the
square root of b's buyers so that best-sellers do not complement everything. Cached one key per item
(the events app owns the keys) and kept per process for LOCAL_SECONDS.
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
from django.db.models import Max
from django.utils import timezone

from recadmin.events.models import Event

logger = logging.getLogger(__name__)

COMPLEMENT_TYPES = ("purchase", "add_to_cart")
COMPLEMENT_WINDOW_DAYS = 90
TOGETHER_SECONDS = 3600.0
AFTER_DAYS = 30.0
PER_ITEM = 50
MAX_ROWS = 1_000_000
# A customer's sequence is cut to its newest items: the pairs are quadratic in its length.
MAX_SEQUENCE = 100
TTL_SECONDS = 24 * 3600
LOCAL_SECONDS = 60.0
_KEY = "events:complements:{}"
_BUILT_KEY = "events:complements:built"

Ranked = list[tuple[str, float]]
_local: dict[str, tuple[float, Ranked]] = {}


def complement_key(item: str) -> str:
    return _KEY.format(item)


def complements_compute(*, now: Any = None) -> dict[str, Ranked]:
    """{item: [(complement, score), ...] best first} from purchase and add-to-cart sequences."""
    events = Event.objects.filter(type__in=COMPLEMENT_TYPES)
    latest = events.aggregate(latest=Max("occurred_at"))["latest"]
    if latest is None:
        return {}
    since = min(latest, now or timezone.now()) - timedelta(days=COMPLEMENT_WINDOW_DAYS)
    rows = (
        events.filter(occurred_at__gte=since)
        .order_by("customer_id", "occurred_at")
        .values_list("customer_id", "item__shop_id", "occurred_at")[:MAX_ROWS]
    )
    pairs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    buyers: dict[str, int] = defaultdict(int)

    def flush(sequence: list[tuple[str, float]]) -> None:
        sequence = sequence[-MAX_SEQUENCE:]
        seen: set[tuple[str, str]] = set()
        for item in {item for item, _ in sequence}:
            buyers[item] += 1
        for i, (a, ta) in enumerate(sequence):
            for b, tb in sequence[i + 1 :]:
                if a == b:
                    continue
                gap = tb - ta
                if gap > AFTER_DAYS * 86400:
                    break
                seen.add((a, b))  # b bought after (or with) a
                if gap <= TOGETHER_SECONDS:
                    seen.add((b, a))  # together: both ways
        for a, b in seen:  # one count per customer and pair
            pairs[a][b] += 1.0

    current: Any = None
    sequence: list[tuple[str, float]] = []
    for customer, item, occurred_at in rows.iterator(chunk_size=20_000):
        if customer != current:
            if sequence:
                flush(sequence)
            current, sequence = customer, []
        sequence.append((item, occurred_at.timestamp()))
    if sequence:
        flush(sequence)
    out: dict[str, Ranked] = {}
    for a, counts in pairs.items():
        scored = [(b, round(c / math.sqrt(buyers[b] or 1), 6)) for b, c in counts.items()]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        out[a] = scored[:PER_ITEM]
    return out


def complements_refresh() -> dict[str, int]:
    """Recompute and cache every item's complements (the periodic task). Returns counts."""
    started = time.monotonic()
    lists = complements_compute()
    payload: dict[str, Any] = {complement_key(item): ranked for item, ranked in lists.items()}
    payload[_BUILT_KEY] = {"at": timezone.now().isoformat(), "items": len(lists)}
    cache.set_many(payload, TTL_SECONDS)
    _local.clear()
    logger.info("complements refreshed: %d items in %.2fs", len(lists), time.monotonic() - started)
    return {"items": len(lists), "pairs": sum(len(v) for v in lists.values())}


def complements_get(items: list[str], *, limit: int = PER_ITEM) -> Ranked:
    """The complements of `items` (the cart, or the current item) merged best first, the items
    themselves left out; [] before the first refresh. One cache round trip at most."""
    now = time.monotonic()
    found: dict[str, Ranked] = {}
    remote: list[str] = []
    for item in items:
        hit = _local.get(item)
        if hit is not None and now - hit[0] < LOCAL_SECONDS:
            found[item] = hit[1]
        else:
            remote.append(item)
    if remote:
        try:
            cached = cache.get_many([complement_key(i) for i in remote])
        except Exception:  # noqa: BLE001 - no cache: no complements (the chain goes on)
            cached = {}
        for item in remote:
            ranked: Ranked = [(str(x[0]), float(x[1])) for x in cached.get(complement_key(item)) or ()]
            found[item] = ranked
            with contextlib.suppress(Exception):
                _local[item] = (now, ranked)
    merged: dict[str, float] = defaultdict(float)
    for item in items:
        for other, score in found.get(item, ()):
            merged[other] += float(score)
    for item in items:
        merged.pop(item, None)
    return sorted(merged.items(), key=lambda pair: (-pair[1], pair[0]))[:limit]
