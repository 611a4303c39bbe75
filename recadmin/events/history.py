"""Each customer's recent history, kept hot for the serving path.

Per customer one Redis sorted set (score = the event's timestamp, member = "timestamp|type|weight|
device|item shop id"), trimmed to the newest HISTORY_LENGTH entries. The device (the event's
context.device, "" when it names none) rides in the member so that the ranker's device feature costs
the serving path no query (events.selectors.CustomerHistory.last_device). A sorted set rather than
a list because events of one batch, or of two batches, may arrive out of order, and re-recording
the same event (a rebuild) must not add it twice. Writes for a whole batch go in one pipeline; reads
for many customers in one round trip.

Without REDIS_URL the same structure lives in Django's cache (process-local), so a single machine
works with nothing else installed.

The cache is not the record, the database is: an entry can be missing (Redis restarted or flushed,
TTL expired, another process's local memory, an import with --no-history). A read that finds no entry
loads the customer's newest events from the database in one indexed query and writes them back
(`history_load_many`). Two sentinel members make that exact without a second key to read:
EMPTY_MEMBER marks "no events in the database" for a short while, so a cold-start customer's
repeated requests do not query the database each time (recording an event removes it, so a first
click counts at once); PARTIAL_MEMBER is added when an event is recorded into a missing entry (the
older events were never loaded), so the next read loads them instead of trusting a truncated history.
Neither contains "|", so history_decode skips them.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from recadmin.catalog.models import Customer
from recadmin.core.observability.metrics import cache_count
from recadmin.core.redis_breaker import REDIS_UNAVAILABLE
from recadmin.events.models import Event

logger = logging.getLogger(__name__)

EMPTY_MEMBER = "~empty"
PARTIAL_MEMBER = "~partial"
_PARTIAL_BYTES = PARTIAL_MEMBER.encode()
# How long "this customer has no events" is believed without asking the database again: events that
# reach the database without history_record (an import with --no-history) show after this at most.
EMPTY_TTL_SECONDS = 300


# The keys' prefix: "hist2:" since members carry the device (issue 12). Entries under the old "hist:"
# prefix have no device; they are left to expire (HISTORY_TTL_SECONDS), and each customer's first
# read under the new prefix loads their history from the database (the path of any missing entry).
KEY_PREFIX = "hist2:"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    item: str  # the item's shop id
    type: str
    weight: float
    ts: float  # unix seconds
    device: str = ""  # the event's context.device ("" when it names none)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """What history_record needs of an event (the ingestion service builds these)."""

    customer: str
    item: str
    type: str
    ts: float
    device: str = ""


def event_device(context: Any) -> str:
    """The device an event's context names ("" when none, or not a string): what a history entry
    keeps, and the rule of events.selectors.customer_last_device."""
    return _device_value(context.get("device") if isinstance(context, dict) else None)


def _device_value(found: Any) -> str:
    # The value of context.device as the database gives it (a JSON key read): only a string names one.
    return found if isinstance(found, str) else ""


def _device_field(device: str) -> str:
    # The device sits between "|"s: a "|" (and the escape character) inside it is escaped.
    if "|" in device or "%" in device:
        return device.replace("%", "%25").replace("|", "%7C")
    return device


def _unescape(device: str) -> str:
    return device.replace("%7C", "|").replace("%25", "%") if "%" in device else device


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
local complete = ARGV[4] == '1'
local empty_ttl = tonumber(ARGV[5])
for _, row in ipairs(rows) do
  local key = row[1]
  if #row[2] == 0 then
    -- Only ever a marker on a missing entry: an event recorded meanwhile must not be hidden.
    if redis.call('EXISTS', key) == 0 then
      redis.call('ZADD', key, 0, '~empty')
      redis.call('EXPIRE', key, empty_ttl)
    end
  else
    if complete then
      redis.call('ZREM', key, '~empty', '~partial')
    elseif redis.call('ZREM', key, '~empty') == 0 and redis.call('EXISTS', key) == 0 then
      redis.call('ZADD', key, 0, '~partial')
    end
    for _, entry in ipairs(row[2]) do
      redis.call('ZADD', key, entry[1], entry[2])
    end
    redis.call('ZREMRANGEBYRANK', key, 0, -(length + 1))
    redis.call('EXPIRE', key, ttl)
  end
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
    path may fold the read into its own pipeline with ZREVRANGE key 0 limit, one more than it needs so
    that a PARTIAL marker shows, and history_from_members; on None it calls history_load)."""
    return _key_base() + customer_shop_id


def _key_base() -> str:
    # make_key through the cache proxy costs tens of microseconds; a batch needs a thousand keys,
    # so build the prefix once (Django's default key function is a plain join).
    return str(cache.make_key(KEY_PREFIX))


def _member(ts: float, type_: str, weight: float, device: str, item: str) -> str:
    # "ts|type|weight|device|item": the item id goes last so that a "|" inside it survives the split.
    return f"{ts!r}|{type_}|{weight!r}|{_device_field(device)}|{item}"


def _encode(entry: HistoryEntry) -> str:
    return _member(entry.ts, entry.type, entry.weight, entry.device, entry.item)


def history_decode(raw: Iterable[bytes | str]) -> list[HistoryEntry]:
    """Decode members as read from Redis (newest first) into entries."""
    entries = []
    for member in raw:
        text = member.decode() if isinstance(member, bytes) else member
        try:
            ts, type_, weight, device, item = text.split("|", 4)
            entries.append(
                HistoryEntry(item=item, type=type_, weight=float(weight), ts=float(ts), device=_unescape(device))
            )
        except ValueError:
            continue  # a foreign or corrupt member (or a sentinel) must not break serving
    return entries


def history_split(raw: Sequence[bytes | str]) -> tuple[list[HistoryEntry], bool]:
    """Members as read from the cache (newest first) into (entries, complete). Not complete when the
    cache cannot answer alone (no entry, or one recorded without its older events): then the database
    must (history_load, given the entries found so that none recorded meanwhile is lost)."""
    if not raw:
        return [], False
    # Compared as read (Redis gives bytes, the local cache str): no member is decoded twice.
    complete = _PARTIAL_BYTES not in raw and PARTIAL_MEMBER not in raw
    return history_decode(raw), complete


def history_from_members(raw: Sequence[bytes | str]) -> list[HistoryEntry] | None:
    """Like history_split, None when not complete."""
    entries, complete = history_split(raw)
    return entries if complete else None


def _weights() -> dict[str, float]:
    return dict(settings.EVENT_TYPE_WEIGHTS)


def history_record(events: Sequence[HistoryEvent], *, complete: bool = False) -> None:
    """Add events to their customers' histories (one Redis call for the whole batch). `complete`
    says the events are each customer's whole recent history (read from the database)."""
    if not events:
        return
    weights = _weights()
    by_customer: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for event in events:
        ts = event.ts
        device = _device_field(event.device) if event.device else ""
        # The member format of _member, inlined: this loop runs for every ingested event.
        member = f"{ts!r}|{event.type}|{weights.get(event.type, 1.0)!r}|{device}|{event.item}"
        by_customer[event.customer].append((member, ts))
    _write(by_customer, complete=complete)


def _write(by_customer: dict[str, list[tuple[str, float]]], *, complete: bool) -> None:
    """Store members per customer; a customer with none gets the EMPTY marker (if still missing)."""
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
        args = [length, ttl, json.dumps(payload, separators=(",", ":")), "1" if complete else "0", EMPTY_TTL_SECONDS]
        try:
            _record_script()(keys=[], args=args)
        except REDIS_UNAVAILABLE:
            # Redis down or hung: the events are stored in the database; the circuit breaker has
            # logged the outage once, so no line (or traceback) per ingested batch here.
            logger.debug("history: Redis unavailable, %d customers not recorded", len(payload))
        return
    keys = {customer: f"{KEY_PREFIX}{customer}" for customer in by_customer}
    current = cache.get_many(list(keys.values()))
    updates = {}
    for customer, entries in by_customer.items():
        key = keys[customer]
        existing = current.get(key)
        if not entries:
            if existing is None:
                cache.add(key, [(EMPTY_MEMBER, 0.0)], EMPTY_TTL_SECONDS)
            continue
        # Stored as (member, ts) pairs of plain values: cheap to pickle, the same members as in Redis.
        merged = dict(existing or [])
        had_empty = merged.pop(EMPTY_MEMBER, None) is not None
        if complete:
            merged.pop(PARTIAL_MEMBER, None)
        elif existing is None and not had_empty:
            merged[PARTIAL_MEMBER] = 0.0
        merged.update(entries)
        updates[key] = sorted(merged.items(), key=lambda pair: pair[1], reverse=True)[:length]
    if updates:
        cache.set_many(updates, ttl)


def _read_cache(customer_shop_ids: Sequence[str], limit: int) -> dict[str, tuple[list[HistoryEntry], bool]]:
    if _uses_redis():
        base = _key_base()
        pipe = _redis().pipeline(transaction=False)
        for customer in customer_shop_ids:
            # One more than asked: a PARTIAL marker sits below the entries (score 0).
            pipe.zrevrange(base + customer, 0, limit)
        results = pipe.execute()
        return {c: history_split(raw) for c, raw in zip(customer_shop_ids, results, strict=True)}
    found = cache.get_many([f"{KEY_PREFIX}{c}" for c in customer_shop_ids])
    return {c: history_split([m for m, _ in found.get(f"{KEY_PREFIX}{c}", [])]) for c in customer_shop_ids}


def history_load_many(
    customer_shop_ids: Sequence[str],
    limit: int | None = None,
    *,
    known: Mapping[str, Sequence[HistoryEntry]] | None = None,
    write: bool = True,
) -> dict[str, list[HistoryEntry]]:
    """Read customers' newest events from the database (one query on the customer/time index) and
    write them to the cache; customers without events (unknown ones too) get the short EMPTY marker.
    What a read does when the cache has no complete entry; `known` are the entries it did find (an
    event recorded before its transaction is visible here is kept). `write=False`: the cache is known
    to be down (its read just failed), so the load does not wait on it a second time."""
    length = settings.HISTORY_LENGTH
    wanted = list(dict.fromkeys(customer_shop_ids))
    if not wanted:
        return {}
    cache_count("history", "miss", len(wanted))
    columns = ("customer__shop_id", "item__shop_id", "type", "occurred_at", "context__device")
    if len(wanted) == 1:
        rows: Iterable[tuple[str, str, str, Any, Any]] = (
            Event.objects.filter(customer__shop_id=wanted[0])
            .order_by("-occurred_at", "-id")
            .values_list(*columns)[:length]
        )
    else:
        rows = (
            Event.objects.filter(customer__shop_id__in=wanted)
            .annotate(
                rank=Window(
                    RowNumber(), partition_by=[F("customer_id")], order_by=[F("occurred_at").desc(), F("id").desc()]
                )
            )
            .filter(rank__lte=length)
            .values_list(*columns)
        )
    weights = _weights()
    by_customer: dict[str, list[tuple[str, float]]] = {c: [] for c in wanted}
    for customer, item, type_, occurred_at, device in rows:
        ts = occurred_at.timestamp()
        by_customer[customer].append((_member(ts, type_, weights.get(type_, 1.0), _device_value(device), item), ts))
    try:
        if write:
            _write(by_customer, complete=True)
    except Exception:  # the database answered: serve that; the cache is refilled next time
        logger.warning("history: writing %d loaded histories to the cache failed", len(wanted), exc_info=True)
    limit = limit or length
    result = {}
    for customer, pairs in by_customer.items():
        merged = dict(pairs)
        for entry in (known or {}).get(customer, ()):
            merged.setdefault(_encode(entry), entry.ts)
        ranked = sorted(merged.items(), key=lambda pair: pair[1], reverse=True)
        result[customer] = history_decode(member for member, _ in ranked[:limit])
    return result


def history_load(
    customer_shop_id: str, limit: int | None = None, *, known: Sequence[HistoryEntry] = ()
) -> list[HistoryEntry]:
    """One customer's history from the database, written back to the cache (history_load_many)."""
    return history_load_many([customer_shop_id], limit, known={customer_shop_id: known})[customer_shop_id]


def history_get_many(
    customer_shop_ids: Sequence[str], limit: int | None = None, *, load: bool = True
) -> dict[str, list[HistoryEntry]]:
    """Newest-first histories of many customers in one round trip; customers the cache has no entry
    for are loaded from the database (one query for all of them) unless `load` is False."""
    limit = limit or settings.HISTORY_LENGTH
    if not customer_shop_ids:
        return {}
    cached = _read_cache(customer_shop_ids, limit)
    missing = [c for c, (_, complete) in cached.items() if not complete]
    if len(missing) < len(cached):
        cache_count("history", "hit", len(cached) - len(missing))
    if missing and load:
        loaded = history_load_many(missing, limit, known={c: cached[c][0] for c in missing})
        return {c: loaded[c] if c in loaded else cached[c][0][:limit] for c in customer_shop_ids}
    return {c: cached[c][0][:limit] for c in customer_shop_ids}


def history_get(customer_shop_id: str, limit: int | None = None) -> list[HistoryEntry]:
    """A customer's newest `limit` events, newest first; [] for a customer without events. The
    serving hot path: one cache round trip when warm, one database query when not."""
    return history_get_many([customer_shop_id], limit)[customer_shop_id]


def history_clear(customer_shop_ids: Sequence[str]) -> None:
    if _uses_redis():
        if customer_shop_ids:
            _redis().delete(*[history_key(c) for c in customer_shop_ids])
    else:
        cache.delete_many([f"{KEY_PREFIX}{c}" for c in customer_shop_ids])


def history_rebuild(
    customer_ids: Iterable[int] | None = None, *, chunk_size: int = 2000, progress: bool = False
) -> int:
    """Rebuild histories from the database (a cold or lost cache). `customer_ids` are primary keys;
    None rebuilds every customer. Returns the number of customers rebuilt."""
    length = settings.HISTORY_LENGTH
    # Shop ids come with the primary keys: clearing a chunk's entries needs no second query.
    pairs_qs = Customer.objects.order_by("id").values_list("id", "shop_id")
    pairs = list(pairs_qs if customer_ids is None else pairs_qs.filter(id__in=list(customer_ids)))
    ids = [pk for pk, _ in pairs]
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
            .values_list("customer__shop_id", "item__shop_id", "type", "occurred_at", "context__device")
        )
        events = [
            HistoryEvent(customer=c, item=i, type=t, ts=o.timestamp(), device=_device_value(d))
            for c, i, t, o, d in ranked
        ]
        history_clear([shop_id for _, shop_id in pairs[start : start + chunk_size]])
        history_record(events, complete=True)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return len(ids)
