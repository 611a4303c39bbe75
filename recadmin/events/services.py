"""Event ingestion: validate a batch row by row, store the valid rows in bulk, feed the history cache.

The hot loop is plain Python over dicts rather than DRF serializers: at 1,000 events per request a
serializer per row would cost more than the database. The rules here are the API's contract, and
each failure names its field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from recadmin.catalog.models import SHOP_ID_MAX_LENGTH
from recadmin.catalog.selectors import item_ids_by_shop_id, item_prices_by_id
from recadmin.catalog.services import copy_escape_text, customers_ensure
from recadmin.core.observability.metrics import EVENTS_DUPLICATES, EVENTS_INGESTED, EVENTS_REJECTED
from recadmin.events.history import HistoryEvent, event_device, history_record
from recadmin.events.models import (
    EVENT_ID_MAX_LENGTH,
    PRICE_DECIMAL_PLACES,
    PRICE_MAX,
    RECOMMENDATION_ID_MAX_LENGTH,
    SCENE_MAX_LENGTH,
    Event,
)

logger = logging.getLogger(__name__)
# One encoder for every row: json.dumps with options builds a new encoder per call.
_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
FUTURE_TOLERANCE = dt.timedelta(days=1)
KNOWN_FIELDS = frozenset(
    {"customer", "item", "type", "value", "price", "occurred_at", "scene", "context", "recommendation_id", "event_id"}
)
# Event types whose rows get the catalog price when sent without one (revenue is counted on them).
PRICED_TYPES = frozenset({"purchase"})


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates, "errors": self.errors}


@dataclass(slots=True)
class EventRow:
    """A validated event, still addressed by shop ids."""

    index: int
    customer: str
    item: str
    type: str
    value: float | None
    occurred_at: dt.datetime
    scene: str
    context: dict[str, Any]
    recommendation_id: str | None
    event_id: str
    # Per unit; None: the catalog price is recorded for PRICED_TYPES when stored (see events_store).
    price: float | None = None


class RowError(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def event_types() -> dict[str, float]:
    """The accepted event types and their training weights (settings.EVENT_TYPE_WEIGHTS)."""
    return dict(settings.EVENT_TYPE_WEIGHTS)


def _shop_id(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or value == "":
        raise RowError(name, "This field is required.")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(name, "Must be a string (or an integer) id.")
    text = str(value)
    if len(text) > SHOP_ID_MAX_LENGTH:
        raise RowError(name, f"At most {SHOP_ID_MAX_LENGTH} characters.")
    return text


def parse_timestamp(value: Any, *, now: dt.datetime, name: str = "occurred_at") -> dt.datetime:
    """ISO 8601 (naive means UTC) or unix seconds; between 2000-01-01 and one day from now."""
    if isinstance(value, bool):
        raise RowError(name, "Must be an ISO 8601 timestamp or unix seconds.")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise RowError(name, "Must be a finite number of seconds.")
        try:
            parsed = dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise RowError(name, "Timestamp out of range.") from exc
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise RowError(name, "Not an ISO 8601 timestamp (e.g. 2026-05-01T12:30:00Z).") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
    else:
        raise RowError(name, "Must be an ISO 8601 timestamp or unix seconds.")
    if parsed < EARLIEST:
        raise RowError(name, "Timestamps before 2000-01-01 are not accepted.")
    if parsed > now + FUTURE_TOLERANCE:
        raise RowError(name, "Timestamp is more than a day in the future.")
    return parsed


def derive_event_id(customer: str, item: str, type_: str, occurred_at: dt.datetime, scene: str) -> str:
    """For events sent without an id: the same event resent maps to the same id."""
    digest = hashlib.sha1(
        f"{customer}\x1f{item}\x1f{type_}\x1f{occurred_at.isoformat()}\x1f{scene}".encode(), usedforsecurity=False
    )
    return f"auto:{digest.hexdigest()}"


def event_validate(row: Any, *, index: int, now: dt.datetime, types: Mapping[str, float]) -> EventRow:
    """Check one incoming event. Raises RowError(field, message)."""
    if not isinstance(row, dict):
        raise RowError("non_field_errors", "Each event must be a JSON object.")
    customer = _shop_id(row, "customer")
    item = _shop_id(row, "item")
    type_ = row.get("type")
    if not isinstance(type_, str) or not type_:
        raise RowError("type", "This field is required (a string).")
    if type_ not in types:
        raise RowError("type", f"Unknown event type {type_!r}; expected one of: {', '.join(types)}.")
    value = row.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RowError("value", "Must be a number or null.")
        value = float(value)
    price = row.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price):
            raise RowError("price", "Must be a number (the price per unit) or null.")
        if price < 0:
            raise RowError("price", "Must not be negative.")
        if price > PRICE_MAX:
            raise RowError("price", f"At most {PRICE_MAX}.")
        price = round(float(price), PRICE_DECIMAL_PLACES)
    raw_time = row.get("occurred_at")
    occurred_at = now if raw_time is None else parse_timestamp(raw_time, now=now)
    scene = row.get("scene") or ""
    if not isinstance(scene, str):
        raise RowError("scene", "Must be a string (a scene's slug).")
    if len(scene) > SCENE_MAX_LENGTH:
        raise RowError("scene", f"At most {SCENE_MAX_LENGTH} characters.")
    context = row.get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        raise RowError("context", "Must be a JSON object.")
    recommendation_id = row.get("recommendation_id")
    if recommendation_id is not None:
        if not isinstance(recommendation_id, str):
            raise RowError("recommendation_id", "Must be a string.")
        if len(recommendation_id) > RECOMMENDATION_ID_MAX_LENGTH:
            raise RowError("recommendation_id", f"At most {RECOMMENDATION_ID_MAX_LENGTH} characters.")
        recommendation_id = recommendation_id or None
    event_id = row.get("event_id")
    if event_id is None or event_id == "":
        event_id = derive_event_id(customer, item, type_, occurred_at, scene)
    else:
        if isinstance(event_id, bool) or not isinstance(event_id, (str, int)):
            raise RowError("event_id", "Must be a string.")
        event_id = str(event_id)
        if len(event_id) > EVENT_ID_MAX_LENGTH:
            raise RowError("event_id", f"At most {EVENT_ID_MAX_LENGTH} characters.")
    if not KNOWN_FIELDS.issuperset(row):
        name = sorted(row.keys() - KNOWN_FIELDS)[0]
        raise RowError(name, f"Unknown field {name!r}.")
    return EventRow(
        index=index,
        customer=customer,
        item=item,
        type=type_,
        value=value,
        occurred_at=occurred_at,
        scene=scene,
        context=context,
        recommendation_id=recommendation_id,
        event_id=event_id,
        price=price,
    )


# --- storing ---------------------------------------------------------------------------------------

_COLUMNS = (
    "customer_id",
    "item_id",
    "type",
    "value",
    "occurred_at",
    "scene",
    "context",
    "recommendation_id",
    "event_id",
    "created_at",
    "price",
)


# Plain columns, no constraints: rows are checked when they move to the real table.
_TMP_TABLE_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS events_ingest_tmp (customer_id bigint, item_id bigint, type text, "
    "value double precision, occurred_at timestamptz, scene text, context jsonb, recommendation_id text, "
    "event_id text, created_at timestamptz, price numeric(12, 2)) ON COMMIT DELETE ROWS"
)


def _copy_payload(
    rows: Sequence[EventRow],
    customer_ids: Mapping[str, int],
    item_ids: Mapping[str, int],
    now: str,
    prices: Mapping[str, str | None],
) -> str:
    """The rows in COPY text format, one f-string per row: this runs for every ingested event."""
    esc = copy_escape_text
    null = "\\N"
    lines = []
    for r in rows:
        value = null if r.value is None else repr(r.value)
        context = esc(_json_encode(r.context)) if r.context else "{}"
        rec = null if r.recommendation_id is None else esc(r.recommendation_id)
        lines.append(
            f"{customer_ids[r.customer]}\t{item_ids[r.item]}\t{esc(r.type)}\t{value}\t{r.occurred_at.isoformat()}\t"
            f"{esc(r.scene)}\t{context}\t{rec}\t{esc(r.event_id)}\t{now}\t{prices.get(r.event_id) or null}\n"
        )
    return "".join(lines)


def _pg_store(payload: str, event_ids: Sequence[str]) -> set[str]:
    """Store rows (unique event ids) on PostgreSQL; returns the event ids actually stored.

    Usually none of the ids exist yet: then the rows are COPYed straight into the table (in a
    savepoint), the fastest way in. If some do (a resent batch, a concurrent request), the unique
    index refuses the COPY and the rows go through a temp table and INSERT ... ON CONFLICT DO
    NOTHING instead."""
    import psycopg

    table = Event._meta.db_table
    cols = ", ".join(_COLUMNS)
    try:
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy,
        ):
            copy.write(payload)
        return set(event_ids)
    except (IntegrityError, psycopg.IntegrityError):
        pass  # some ids exist already (a resent batch, or a race): the conflict-safe path below
    with connection.cursor() as cursor:
        cursor.execute(_TMP_TABLE_SQL)
        with cursor.cursor.copy(f"COPY events_ingest_tmp ({cols}) FROM STDIN") as copy:
            copy.write(payload)
        cursor.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM events_ingest_tmp "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        )
        stored = {row[0] for row in cursor.fetchall()}
        cursor.execute("DELETE FROM events_ingest_tmp")
    return stored


def _sqlite_datetime(value: dt.datetime) -> str:
    # What Django's SQLite backend stores for an aware datetime (naive UTC, str()), without its
    # per-value overhead: this runs twice per imported event.
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")


def _orm_store(records: Sequence[tuple[Any, ...]]) -> set[str]:
    """SQLite and other backends: skip ids already stored, insert the rest (INSERT OR IGNORE covers
    a concurrent writer). Plain executemany: Django's bulk_create costs more than the database here."""
    stored: set[str] = set()
    table = Event._meta.db_table
    sqlite = connection.vendor == "sqlite"
    to_db = _sqlite_datetime if sqlite else connection.ops.adapt_datetimefield_value
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    verb = "INSERT OR IGNORE" if sqlite else "INSERT"
    sql = f"{verb} INTO {table} ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
    # Chunks keep the IN list under SQLite's bound-parameter limit.
    for start in range(0, len(records), 5000):
        chunk = records[start : start + 5000]
        ids = [r[8] for r in chunk]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT event_id FROM {table} WHERE event_id IN ({', '.join(['%s'] * len(ids))})", ids)
            existing = {row[0] for row in cursor.fetchall()}
            fresh = [r for r in chunk if r[8] not in existing]
            params = [
                (c, i, t, v, to_db(o), s, _json_encode(ctx) if ctx else "{}", rec, e, to_db(cr), p)
                for c, i, t, v, o, s, ctx, rec, e, cr, p in fresh
            ]
            cursor.executemany(sql, params)
        stored.update(r[8] for r in fresh)
    return stored


def _event_prices(rows: Sequence[EventRow], item_ids: Mapping[str, int]) -> dict[str, str | None]:
    """event_id -> the price to store, as decimal text: the one sent, else (purchases) the item's
    catalog price now. One query per batch, only for rows that need the catalog."""
    prices: dict[str, str | None] = {}
    missing: set[int] = set()
    for r in rows:
        if r.price is not None:
            prices[r.event_id] = f"{r.price:.{PRICE_DECIMAL_PLACES}f}"
        elif r.type in PRICED_TYPES:
            missing.add(item_ids[r.item])
    if missing:
        catalog = item_prices_by_id(item_ids=missing)
        for r in rows:
            if r.price is None and r.type in PRICED_TYPES:
                found = catalog.get(item_ids[r.item])
                prices[r.event_id] = None if found is None else str(found)
    return prices


def events_store(*, rows: Sequence[EventRow], customer_ids: Mapping[str, int], item_ids: Mapping[str, int]) -> set[str]:
    """Insert validated rows whose customer and item are resolved; returns the stored event ids."""
    if not rows:
        return set()
    if len({r.event_id for r in rows}) != len(rows):
        rows = list({r.event_id: r for r in reversed(rows)}.values())[::-1]  # keep the first of each id
    prices = _event_prices(rows, item_ids)
    if connection.vendor == "postgresql":
        payload = _copy_payload(rows, customer_ids, item_ids, timezone.now().isoformat(), prices)
        return _pg_store(payload, [r.event_id for r in rows])
    now = timezone.now()
    records = [
        (customer_ids[r.customer], item_ids[r.item], r.type, r.value, r.occurred_at, r.scene, r.context,
         r.recommendation_id, r.event_id, now, prices.get(r.event_id))
        for r in rows
    ]  # fmt: skip
    return _orm_store(records)


def events_ingest(*, payload: Sequence[Any], record_history: bool = True) -> IngestResult:
    """Validate and store a batch of events (already JSON-decoded dicts).

    Unknown customers are created; a row with an unknown item is rejected. Rows repeating an
    event_id already stored (or earlier in the batch) count as duplicates and are skipped.
    Invalid rows come back as {"index", "field", "message"}; valid rows are stored regardless.
    """
    result = IngestResult()
    now = timezone.now()
    types = event_types()
    valid: list[EventRow] = []
    seen: set[str] = set()
    for index, raw in enumerate(payload):
        try:
            row = event_validate(raw, index=index, now=now, types=types)
        except RowError as exc:
            result.errors.append({"index": index, "field": exc.field, "message": exc.message})
            continue
        if row.event_id in seen:
            result.duplicates += 1
            continue
        seen.add(row.event_id)
        valid.append(row)
    if not valid:
        _count(payload, result, [], set(), types)
        return result

    item_ids = item_ids_by_shop_id(shop_ids=(r.item for r in valid))
    known: list[EventRow] = []
    for row in valid:
        if row.item in item_ids:
            known.append(row)
        else:
            result.errors.append({"index": row.index, "field": "item", "message": f"Unknown item {row.item!r}."})
    result.errors.sort(key=lambda e: e["index"])
    if not known:
        _count(payload, result, known, set(), types)
        return result

    with transaction.atomic():
        customer_ids = customers_ensure(shop_ids={r.customer for r in known})
        stored_ids = events_store(rows=known, customer_ids=customer_ids, item_ids=item_ids)
    result.stored = len(stored_ids)
    result.duplicates += len(known) - len(stored_ids)
    _count(payload, result, known, stored_ids, types)

    if record_history and stored_ids:
        stored_rows = [r for r in known if r.event_id in stored_ids]
        try:
            history_record(
                [
                    HistoryEvent(r.customer, r.item, r.type, r.occurred_at.timestamp(), event_device(r.context))
                    for r in stored_rows
                ]
            )
        except Exception:  # the events are stored; a cache outage must not fail the ingest
            logger.exception("Recording %d events in the history cache failed", len(stored_rows))
    return result


def _count(
    payload: Sequence[Any], result: IngestResult, rows: Sequence[EventRow], stored: set[str], types: Mapping[str, float]
) -> None:
    """Prometheus counters: events stored per type, rows refused per type and field, duplicates."""
    stored_types = Counter(row.type for row in rows if row.event_id in stored)
    for type_, count in stored_types.items():
        EVENTS_INGESTED.labels(type_).inc(count)
    for error in result.errors:
        raw = payload[error["index"]] if 0 <= error["index"] < len(payload) else None
        given = raw.get("type") if isinstance(raw, dict) else None
        known = isinstance(given, str) and given in types  # a dict or list type is not hashable
        EVENTS_REJECTED.labels(given if known else "invalid", str(error.get("field") or "")).inc()
    if result.duplicates:
        EVENTS_DUPLICATES.inc(result.duplicates)


def events_iter_history(events: Iterable[Event]) -> list[HistoryEvent]:
    """HistoryEvents for Event rows that have customer and item loaded (select_related)."""
    return [
        HistoryEvent(e.customer.shop_id, e.item.shop_id, e.type, e.occurred_at.timestamp(), event_device(e.context))
        for e in events
    ]
