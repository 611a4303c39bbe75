"""Each customer's recent history, kept hot for the serving path.

Per customer one Redis sorted set (score = the event's timestamp, member = "timestamp|type|weight|item
shop id"), trimmed to the newest HISTORY_LENGTH entries. A sorted
set rather than a list because events of one batch, or of two batches, may arrive out of order, and
re-recording the same event (a rebuild) must not add it twice. Writes for a whole batch go in one
pipeline; reads for many customers in one round trip.

Without REDIS_URL the same structure lives in Django's cache (process-local), so a single machine
works with nothing else installed.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    item: str  # the item's shop id
    type: str
    weight: float
    ts: float  # unix seconds


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """What history_record needs of an event (the ingestion service builds these)."""

    customer: str
    item: str
    type: str
    ts: float


def _uses_redis() -> bool:
    return bool(settings.REDIS_URL) and settings.CACHES["default"]["BACKEND"].startswith("django_redis")


def _redis() -> Any:
    from django_redis import get_redis_connection

    return get_redis_connection("default")


# The whole batch travels as one JSON argument [[key, [[score, member], ...]], ...]: building and
# sending one string costs far less than thousands of ZADD/ZREMRANGEBYRANK/EXPIRE commands.
# (Keys inside the argument rather than KEYS: fine on a single Redis, not on Redis Cluster.)
_RECORD_LUA = """
local length = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local rows = cjson.decode(ARGV[3])
for _, row in ipairs(rows) do
  local key = row[1]
  for _, entry in ipairs(row[2]) do
    redis.call('ZADD', key, entry[1], entry[2])
  end
  redis.call('ZREMRANGEBYRANK', key, 0, -(length + 1))
  redis.call('EXPIRE', key, ttl)
end
return #rows
"""
_script: Any = None


def _record_script() -> Any:
    global _script
    if _script is None:
        _script = _redis().register_script(_RECORD_LUA)
    return _script


def history_key(customer_shop_id: str) -> str:
    """The key under which a customer's history lives: in Redis the sorted set itself (so the serving
    path may fold the read into its own pipeline with ZREVRANGE key 0 limit-1 and history_decode)."""
    return _key_base() + customer_shop_id


def _key_base() -> str:
    # make_key through the cache proxy costs tens of microseconds; a batch needs a thousand keys,
    # so build the prefix once (Django's default key function is a plain join).
    return str(cache.make_key("hist:"))


def _encode(entry: HistoryEntry) -> str:
    # "ts|type|weight|item": the item id goes last so that a "|" inside it survives the split.
    return f"{entry.ts!r}|{entry.type}|{entry.weight!r}|{entry.item}"


def history_decode(raw: Iterable[bytes | str]) -> list[HistoryEntry]:
    """Decode members as read from Redis (newest first) into entries."""
    entries = []
    for member in raw:
        text = member.decode() if isinstance(member, bytes) else member
        try:
            ts, type_, weight, item = text.split("|", 3)
            entries.append(HistoryEntry(item=item, type=type_, weight=float(weight), ts=float(ts)))
        except ValueError:
            continue  # a foreign or corrupt member must not break serving
    return entries


def _weights() -> dict[str, float]:
    return dict(settings.EVENT_TYPE_WEIGHTS)


def history_record(events: Sequence[HistoryEvent]) -> None:
    """Add events to their customers' histories (one Redis call for the whole batch)."""
    if not events:
        return
    weights = _weights()
    by_customer: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for event in events:
        ts = event.ts
        # The member format of _encode, inlined: this loop runs for every ingested event.
        member = f"{ts!r}|{event.type}|{weights.get(event.type, 1.0)!r}|{event.item}"
        by_customer[event.customer].append((member, ts))
    length = settings.HISTORY_LENGTH
    ttl = settings.HISTORY_TTL_SECONDS
    if _uses_redis():
        # One EVALSHA for the whole batch: a thousand customers cost one command to build and send,
        # where a pipeline of ZADD/ZREMRANGEBYRANK/EXPIRE per customer costs three thousand.
        base = _key_base()
        payload = [
            [base + customer, [[repr(ts), member] for member, ts in entries]]
            for customer, entries in by_customer.items()
        ]
        _record_script()(keys=[], args=[length, ttl, json.dumps(payload, separators=(",", ":"))])
        return
    keys = {customer: f"hist:{customer}" for customer in by_customer}
    current = cache.get_many(list(keys.values()))
    updates = {}
    for customer, entries in by_customer.items():
        # Stored as (member, ts) pairs of plain values: cheap to pickle, the same members as in Redis.
        merged = dict(current.get(keys[customer], []))
        merged.update(entries)
        updates[keys[customer]] = sorted(merged.items(), key=lambda pair: pair[1], reverse=True)[:length]
    cache.set_many(updates, ttl)


def history_get_many(customer_shop_ids: Sequence[str], limit: int | None = None) -> dict[str, list[HistoryEntry]]:
    """Newest-first histories of many customers in one round trip."""
    limit = limit or settings.HISTORY_LENGTH
    if not customer_shop_ids:
        return {}
    if _uses_redis():
        base = _key_base()
        pipe = _redis().pipeline(transaction=False)
        for customer in customer_shop_ids:
            pipe.zrevrange(base + customer, 0, limit - 1)
        results = pipe.execute()
        return {c: history_decode(raw) for c, raw in zip(customer_shop_ids, results, strict=True)}
    found = cache.get_many([f"hist:{c}" for c in customer_shop_ids])
    return {c: history_decode(m for m, _ in found.get(f"hist:{c}", [])[:limit]) for c in customer_shop_ids}


def history_get(customer_shop_id: str, limit: int | None = None) -> list[HistoryEntry]:
    """A customer's newest `limit` events, newest first; [] for an unknown customer. The serving hot path."""
    return history_get_many([customer_shop_id], limit)[customer_shop_id]


def history_clear(customer_shop_ids: Sequence[str]) -> None:
    if _uses_redis():
        if customer_shop_ids:
            _redis().delete(*[history_key(c) for c in customer_shop_ids])
    else:
        cache.delete_many([f"hist:{c}" for c in customer_shop_ids])


def history_rebuild(
    customer_ids: Iterable[int] | None = None, *, chunk_size: int = 2000, progress: bool = False
) -> int:
    """Rebuild histories from the database (a cold or lost cache). `customer_ids` are primary keys;
    None rebuilds every customer. Returns the number of customers rebuilt."""
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    from recadmin.catalog.models import Customer
    from recadmin.events.models import Event

    length = settings.HISTORY_LENGTH
    ids_qs = Customer.objects.order_by("id").values_list("id", flat=True)
    ids = list(ids_qs if customer_ids is None else ids_qs.filter(id__in=list(customer_ids)))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="customer", desc="history")
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        ranked = (
            Event.objects.filter(customer_id__in=chunk)
            .annotate(rank=Window(RowNumber(), partition_by=[F("customer_id")], order_by=[F("occurred_at").desc()]))
            .filter(rank__lte=length)
            .values_list("customer__shop_id", "item__shop_id", "type", "occurred_at")
        )
        events = [HistoryEvent(customer=c, item=i, type=t, ts=o.timestamp()) for c, i, t, o in ranked]
        shop_ids = list(Customer.objects.filter(id__in=chunk).values_list("shop_id", flat=True))
        history_clear(shop_ids)
        history_record(events)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return len(ids)
