"""The served-list log, written off the request path.

A request appends one small JSON record: to a Redis list when Redis is configured (one RPUSH, shared
by every gunicorn worker, survives a web restart), otherwise to a process-local buffer. The
`drain_served_log` task moves records into `ServedRecommendation` with one bulk insert per batch; it
runs on a beat schedule and is also kicked by the request that makes the backlog reach a batch, so
the log keeps up even where beat is not running. Without Redis (a single process) the buffer is
flushed inline when it reaches a batch, and by anything that reads the log (admin, tests).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.core.cache import cache
from django.db import DataError, IntegrityError, transaction
from django.db import connection as db
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from recadmin.catalog.models import Customer
from recadmin.serving.models import ServedRecommendation

logger = logging.getLogger(__name__)

_LIST_KEY = "serving:served-log"
DRAIN_BATCH = 500
# A runaway backlog (no worker, no beat for days) is capped rather than allowed to fill Redis.
MAX_BACKLOG = 1_000_000

_local_buffer: deque[bytes | str] = deque(maxlen=MAX_BACKLOG)
_local_lock = threading.Lock()

# Records the drain cannot write, each with the reason: malformed ones, and those the database refused
# for what they hold (a value a column cannot take). Set aside so that one bad record does not hold
# up the log behind it, and kept for a look.
_REJECTED_KEY = "serving:served-log:rejected"
MAX_REJECTED = 10_000
_local_rejected: deque[bytes] = deque(maxlen=MAX_REJECTED)

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _json_default(value: Any) -> Any:
    # orjson writes float subclasses through `default` (json wrote them as numbers); anything else
    # it cannot write becomes its str(), as json's default=str did.
    if isinstance(value, float):
        return float(value)
    return str(value)


def _dumps(value: Any) -> bytes:
    """Compact JSON (one per request, ~10x cheaper than json.dumps); NaN is written as null."""
    return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS)


def _loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # A record an earlier release queued with json.dumps may hold NaN, which orjson refuses.
        return json.loads(raw)


def _redis() -> Any | None:
    if not settings.REDIS_URL:
        return None
    try:
        from django_redis import get_redis_connection

        return get_redis_connection("default")
    except Exception:  # noqa: BLE001 - a cache backend without a raw client: use the local buffer
        return None


def _list_key() -> str:
    # Through the cache's key function, so each test run (own KEY_PREFIX) has its own list.
    return cache.make_key(_LIST_KEY)


def served_log_push(
    *,
    record: dict[str, Any],
    keep_key: str | None = None,
    keep_value: Any = None,
    keep_seconds: int = 0,
    incr_key: str | None = None,
) -> int | None:
    """Queue one served page for the log. Never raises: logging must not fail a recommendation.

    `keep_key`/`keep_value`: a JSON value to store in the cache for `keep_seconds` in the same
    round trip (the full list of a new recommendation_id); read it back with `kept_get`.
    `incr_key`: an integer cache key to increment in the same round trip (a fallback counter);
    returns its new value, None when it was not incremented (no Redis, or Redis failed)."""
    payload = _dumps(record)
    connection = _redis()
    if connection is not None:
        try:
            pipe = connection.pipeline(transaction=False)
            if keep_key is not None:
                pipe.set(cache.make_key(keep_key), _dumps(keep_value), ex=keep_seconds)
            if incr_key is not None:
                pipe.incr(cache.make_key(incr_key))
            pipe.rpush(_list_key(), payload)
            # A counter that cannot be incremented must not send the record to the local buffer too.
            results = pipe.execute(raise_on_error=False)
            counted = results.pop(-2) if incr_key is not None else None
            for result in results:
                if isinstance(result, Exception):
                    raise result
        except Exception:  # noqa: BLE001 - Redis down: keep the record locally rather than lose it
            # No line per request: the Redis circuit breaker logs the outage once.
            logger.debug("served log: Redis unavailable, buffering locally")
            connection = None  # and write the local buffer from here when it fills
        else:
            length = results[-1]
            if _local_buffer:  # what an outage kept here goes to the shared list now Redis is back
                length = _local_to_redis(connection) or length
            if length % DRAIN_BATCH == 0:
                _kick_drain()
            if length > MAX_BACKLOG:
                with contextlib.suppress(Exception):
                    connection.ltrim(_list_key(), -MAX_BACKLOG, -1)
            return counted if isinstance(counted, int) else None
    if keep_key is not None:
        with contextlib.suppress(Exception):
            cache.set(keep_key, keep_value, keep_seconds)
    with _local_lock:
        _local_buffer.append(payload)
        full = len(_local_buffer) >= DRAIN_BATCH
    if full and connection is None:
        served_log_drain()
    return None


def _local_to_redis(connection: Any) -> int | None:
    with _local_lock:
        batch = list(_local_buffer)
        _local_buffer.clear()
    if not batch:
        return None
    try:
        return int(connection.rpush(_list_key(), *batch))
    except Exception:  # noqa: BLE001 - down again: keep them here, in order
        with _local_lock:
            _local_buffer.extendleft(reversed(batch))
        return None


def kept_get(key: str) -> Any:
    """A value stored with served_log_push(keep_key=...), or None."""
    connection = _redis()
    try:
        if connection is not None:
            raw = connection.get(cache.make_key(key))
            return _loads(raw) if raw is not None else None
        return cache.get(key)
    except Exception:  # noqa: BLE001 - an expired or unreadable list: the caller makes a new one
        return None


def _kick_drain() -> None:
    try:
        from recadmin.serving.tasks import drain_served_log

        drain_served_log.delay()
    except Exception:  # the beat schedule drains it anyway
        logger.warning("served log: could not enqueue the drain task", exc_info=True)


def _pop_batch(connection: Any | None, size: int) -> list[bytes | str]:
    batch: list[bytes | str] = []
    with _local_lock:
        while _local_buffer and len(batch) < size:
            batch.append(_local_buffer.popleft())
    if connection is not None and len(batch) < size:
        try:
            pipe = connection.pipeline(transaction=True)
            pipe.lrange(_list_key(), 0, size - len(batch) - 1)
            pipe.ltrim(_list_key(), size - len(batch), -1)
            rows, _ = pipe.execute()
        except Exception:  # noqa: BLE001 - Redis down: drain what is local, retry later
            rows = []
        batch.extend(rows)
    return batch


# The columns the drain writes, in the order `_to_values` returns them.
_COLUMNS = (
    "recommendation_id", "offset", "endpoint", "customer_id", "customer_shop_id", "scene", "model_version_id",
    "model_label", "source", "strategy", "experiment_id", "variant_id", "fallback_reason", "context_item",
    "category", "items", "n_items", "latency_ms", "created_at",
)  # fmt: skip
_ITEMS = _COLUMNS.index("items")  # the JSON column, serialised for COPY


def _decode(raw: bytes | str, aside: list[bytes]) -> dict[str, Any] | None:
    """The record, or None when it is not a JSON object (its entry, with the reason, goes to `aside`)."""
    try:
        record = _loads(raw)
    except ValueError as exc:
        aside.append(_aside_entry(raw, exc))
        return None
    if not isinstance(record, dict):
        aside.append(_aside_entry(raw, ValueError(f"not a JSON object but {type(record).__name__}")))
        return None
    return record


def _to_values(
    raw: bytes | str, record: dict[str, Any], customers: dict[str, int], aside: list[bytes]
) -> tuple[Any, ...] | None:
    """The record's row in `_COLUMNS` order, or None when a field is missing or of the wrong kind
    (its entry, with the reason, goes to `aside`)."""
    try:
        created = parse_datetime(record.get("created_at") or "") or timezone.now()
        if isinstance(created, datetime) and timezone.is_naive(created):
            created = timezone.make_aware(created)
        items = record.get("items") or []
        customer = str(record.get("customer") or "")
        return (
            str(record["recommendation_id"]),
            int(record.get("offset") or 0),
            record.get("endpoint") or "recommendations",
            customers.get(customer),
            customer,
            record.get("scene") or "",
            record.get("model_version_id"),
            record.get("model_label") or "",
            (record.get("source") or "model")[:20],
            (record.get("strategy") or "")[:200],
            record.get("experiment_id"),
            record.get("variant_id"),
            (record.get("fallback_reason") or "")[:200],
            record.get("item") or "",
            record.get("category") or "",
            items,
            len(items),
            float(record.get("latency_ms") or 0.0),
            created,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        aside.append(_aside_entry(raw, exc))
        return None


def _insert(rows: list[tuple[Any, ...]]) -> None:
    """Insert the rows, skipping pages already written (a batch put back after a failure comes again)."""
    if not rows:
        return
    if db.vendor != "postgresql":
        # Items through orjson (NaN becomes null): SQLite's JSON check refuses NaN, and INSERT OR IGNORE
        # (ignore_conflicts) would drop the page without a word.
        pages = [
            ServedRecommendation(
                **dict(zip(_COLUMNS, (*row[:_ITEMS], _loads(_dumps(row[_ITEMS])), *row[_ITEMS + 1 :]), strict=True))
            )
            for row in rows
        ]
        ServedRecommendation.objects.bulk_create(pages, ignore_conflicts=True)
        return
    # COPY into a scratch table, then one INSERT ... ON CONFLICT DO NOTHING: bulk_create's parameters
    # are quoted value by value on the client (the drain's main cost at a few hundred pages a second).
    table = ServedRecommendation._meta.db_table
    columns = ", ".join(f'"{column}"' for column in _COLUMNS)
    with transaction.atomic(), db.cursor() as cursor:
        # The session's scratch table (no constraints: the INSERT below checks them), emptied each time.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS served_log_batch ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY served_log_batch ({columns}) FROM STDIN") as copy:
            for row in rows:
                items = _dumps(row[_ITEMS]).decode()
                copy.write_row((*row[:_ITEMS], items, *row[_ITEMS + 1 :]))
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM served_log_batch ON CONFLICT DO NOTHING")
        # Inside a caller's transaction the commit that empties it may be far off.
        cursor.execute("DELETE FROM served_log_batch")


def _refused_for_its_data(exc: Exception) -> bool:
    # The COPY path raises psycopg's own errors (its cursor is used directly); the ORM path Django's.
    return isinstance(exc, DataError | IntegrityError | psycopg.DataError | psycopg.IntegrityError)


def _insert_isolating(pairs: list[tuple[bytes | str, tuple[Any, ...]]], aside: list[bytes]) -> int:
    """Insert the rows (raw record, row); when the database refuses them for what one holds, halve
    the batch until each refused record is alone and add its entry to `aside`. Any other error (the
    database down, a schema not migrated) propagates: the caller puts the batch back. Returns rows
    written."""
    if not pairs:
        return 0
    try:
        _insert([row for _, row in pairs])
    except Exception as exc:
        if not _refused_for_its_data(exc):
            raise
        if len(pairs) == 1:
            aside.append(_aside_entry(pairs[0][0], exc))
            return 0
        middle = len(pairs) // 2
        return _insert_isolating(pairs[:middle], aside) + _insert_isolating(pairs[middle:], aside)
    return len(pairs)


def _aside_entry(raw: bytes | str, exc: Exception) -> bytes:
    """The kept form of a record the drain cannot write (malformed, or refused by the database)."""
    error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
    logger.error("served log: a record cannot be written (%s); set aside in %s", error, _REJECTED_KEY)
    return _dumps(
        {
            "record": raw.decode(errors="replace") if isinstance(raw, bytes) else raw,
            "error": error,
            "at": timezone.now().isoformat(),
        }
    )


def _set_aside(connection: Any | None, entries: list[bytes]) -> None:
    """Keep a batch's set-aside entries: one round trip to Redis, or this process without it."""
    if not entries:
        return
    if connection is not None:
        try:
            pipe = connection.pipeline(transaction=False)
            pipe.rpush(cache.make_key(_REJECTED_KEY), *entries)
            pipe.ltrim(cache.make_key(_REJECTED_KEY), -MAX_REJECTED, -1)
            pipe.execute()
            return
        except Exception:  # noqa: BLE001 - Redis down: keep them in this process
            logger.debug("served log: Redis unavailable, keeping the set-aside records locally")
    with _local_lock:
        _local_rejected.extend(entries)


def served_log_rejected(*, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """How many records the drain set aside (malformed, or refused by the database), and the latest
    `limit` of them (each {"record", "error", "at"}, newest first)."""
    with _local_lock:
        local: list[bytes] = list(_local_rejected)
    count, remote = len(local), []
    connection = _redis()
    if connection is not None:
        with contextlib.suppress(Exception):
            key = cache.make_key(_REJECTED_KEY)
            if limit > 0:
                pipe = connection.pipeline(transaction=False)
                pipe.llen(key)
                pipe.lrange(key, -limit, -1)
                length, remote = pipe.execute()
            else:  # the count alone (the scrape gauge)
                length = connection.llen(key)
            count += int(length)
    latest = [*remote, *local][-limit:] if limit > 0 else []
    return count, [_loads(entry) for entry in reversed(latest)]


def served_log_retry_rejected() -> int:
    """Put every set-aside record back in the queue once its cause is fixed (a column widened, a
    migration applied); the next drain judges each again, and one still refused is set aside again.
    Returns how many went back. Redis' entries move in one watched transaction, so an entry set
    aside meanwhile is neither lost nor moved twice."""
    with _local_lock:
        records = [_aside_record(entry) for entry in _local_rejected]
        _local_rejected.clear()
    moved: list[bytes] = []
    connection = _redis()
    if connection is not None:
        key = cache.make_key(_REJECTED_KEY)

        def move(pipe: Any) -> list[bytes]:
            entries = [_aside_record(entry) for entry in pipe.lrange(key, 0, -1)]
            pipe.multi()
            if entries:
                pipe.rpush(_list_key(), *entries)
            pipe.delete(key)
            return entries

        try:
            moved = connection.transaction(move, key, value_from_callable=True)
        except Exception:  # noqa: BLE001 - Redis down: its entries stay where they are
            logger.warning("served log: Redis unavailable, set-aside records there were not sent back")
    if records:
        _requeue(connection, records)
    return len(moved) + len(records)


def _aside_record(entry: bytes | str) -> bytes:
    """The record an entry of `_aside_entry` keeps, as queued (an entry not of that form goes as it
    is: the drain sets it aside again as malformed rather than it being lost here)."""
    try:
        record = _loads(entry)["record"]
    except (ValueError, KeyError, TypeError):
        return entry.encode() if isinstance(entry, str) else entry
    return record.encode() if isinstance(record, str) else _dumps(record)


def served_log_drain(*, max_batches: int = 100) -> int:
    """Move queued records into the database; returns how many rows were written."""
    connection = _redis()
    written = 0
    for _ in range(max_batches):
        batch = _pop_batch(connection, DRAIN_BATCH)
        if not batch:
            break
        aside: list[bytes] = []
        records = [(raw, record) for raw in batch if (record := _decode(raw, aside)) is not None]
        shop_ids = {str(record.get("customer") or "") for _, record in records}
        shop_ids.discard("")
        # One query per batch resolves every customer; unknown ones (cold start) stay strings.
        customers = dict(Customer.objects.filter(shop_id__in=shop_ids).values_list("shop_id", "id"))
        pairs = [(raw, row) for raw, record in records if (row := _to_values(raw, record, customers, aside))]
        try:
            written += _insert_isolating(pairs, aside)
        except Exception:
            # The database failed (not a record): put the batch back so nothing served is lost, then
            # stop (pages already written are skipped when it comes again).
            # The set-aside entries go back with it and are judged again.
            _requeue(connection, batch)
            raise
        _set_aside(connection, aside)
        if len(batch) < DRAIN_BATCH:
            break
    return written


def _requeue(connection: Any | None, batch: Sequence[bytes | str]) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.lpush(_list_key(), *reversed(batch))
            return
    with _local_lock:
        _local_buffer.extendleft(reversed(batch))


def served_log_backlog() -> int:
    """Records waiting to be written (shown in the admin)."""
    count = len(_local_buffer)
    connection = _redis()
    if connection is not None:
        with contextlib.suppress(Exception):
            count += int(connection.llen(_list_key()))
    return count


def served_log_oldest_age() -> float | None:
    """Seconds since the oldest record still waiting was served (the drain's lag); None when empty."""
    oldest: bytes | str | None = _local_buffer[0] if _local_buffer else None
    connection = _redis()
    if connection is not None:
        with contextlib.suppress(Exception):
            first = connection.lindex(_list_key(), 0)
            if first is not None:
                oldest = first
    if oldest is None:
        return None
    try:
        created = parse_datetime(_loads(oldest).get("created_at") or "")
    except (ValueError, AttributeError):
        return None
    if created is None:
        return None
    if timezone.is_naive(created):
        created = timezone.make_aware(created)
    return max(0.0, (timezone.now() - created).total_seconds())
