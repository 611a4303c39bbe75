"""Events from the database into `training/`'s dataset, fast.

A million events must export in seconds. The ORM is not used on the rows: on PostgreSQL the events
stream out with a binary `COPY ... TO STDOUT` whose rows are four bigints each, a fixed 50 bytes,
so numpy reads the whole buffer as one structured array with no per-row Python at all. On SQLite
(single machine, small shops) a raw cursor with `fetchmany` does the same job with integer columns.
Event types become small integer codes inside SQL and weights are applied in numpy.

Nothing here imports torch; `training` is imported only by the caller (the Celery task).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection

from recadmin.catalog.models import Item

logger = logging.getLogger(__name__)

# Used when the events app's EVENT_TYPE_WEIGHTS setting is absent: stronger intent weighs more.
DEFAULT_EVENT_TYPE_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "add_to_cart": 2.0,
    "wishlist": 2.0,
    "purchase": 4.0,
    "rating": 2.0,
}

_FETCH_CHUNK = 50_000
# A binary COPY row of four non-null bigints: int16 field count, then (int32 length, int64 value) x 4.
_COPY_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l0", ">i4"), ("customer", ">i8"),
        ("l1", ">i4"), ("item", ">i8"),
        ("l2", ">i4"), ("type", ">i8"),
        ("l3", ">i4"), ("ts", ">i8"),
    ]
)  # fmt: skip
_COPY_HEADER = 19  # "PGCOPY\n\377\r\n\0" + int32 flags + int32 header-extension length (0)
_COPY_TRAILER = 2  # int16 -1


def event_type_weights() -> dict[str, float]:
    configured = getattr(settings, "EVENT_TYPE_WEIGHTS", None)
    return dict(configured) if configured else dict(DEFAULT_EVENT_TYPE_WEIGHTS)


@dataclass
class EventArrays:
    """Events as parallel numpy arrays, sorted by (customer, time, id).

    `customer` and `item` are database primary keys; `customer_shop_ids` / `item_shop_ids` map them
    to the shop's own ids. `types` are codes into `type_names`; `weights` come from the settings.
    """

    customer: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray  # unix seconds
    types: np.ndarray
    weights: np.ndarray
    type_names: list[str]
    customer_shop_ids: dict[int, str] = field(default_factory=dict)
    item_shop_ids: dict[int, str] = field(default_factory=dict)
    item_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.customer.shape[0])

    @property
    def num_customers(self) -> int:
        return int(np.unique(self.customer).shape[0]) if len(self) else 0

    @property
    def num_items(self) -> int:
        return int(np.unique(self.item).shape[0]) if len(self) else 0


def _type_case_sql(type_names: list[str]) -> tuple[str, list[Any]]:
    # Unknown types get -1 and are dropped: a type without a weight carries no training signal
    # the shop has agreed to.
    if not type_names:
        return "-1", []
    whens = " ".join("WHEN %s THEN " + str(code) for code in range(len(type_names)))
    return f"CASE type {whens} ELSE -1 END", list(type_names)


def _read_postgres(sql: str, params: list[Any]) -> np.ndarray:
    connection.ensure_connection()
    raw = connection.connection  # the psycopg 3 connection
    chunks: list[bytes] = []
    with raw.cursor() as cursor:
        # COPY does not take server-side parameters: bind them client-side first.
        query = cursor.mogrify(sql, params) if params else sql
        with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
            for block in copy:
                chunks.append(bytes(block))
    data = b"".join(chunks)
    if len(data) <= _COPY_HEADER + _COPY_TRAILER:
        return np.zeros(0, dtype=_COPY_ROW)
    body = memoryview(data)[_COPY_HEADER : len(data) - _COPY_TRAILER]
    rows = np.frombuffer(body, dtype=_COPY_ROW)
    if rows.shape[0] and (rows["n"][0] != 4 or rows["l0"][0] != 8):
        raise RuntimeError("Unexpected COPY row layout from PostgreSQL")
    return rows


def _read_generic(sql: str, params: list[Any]) -> dict[str, np.ndarray]:
    parts: list[np.ndarray] = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(_FETCH_CHUNK)
            if not rows:
                break
            parts.append(np.asarray(rows, dtype=np.int64).reshape(-1, 4))
    stacked = np.concatenate(parts) if parts else np.zeros((0, 4), dtype=np.int64)
    return {"customer": stacked[:, 0], "item": stacked[:, 1], "type": stacked[:, 2], "ts": stacked[:, 3]}


def events_export(*, since: Any = None, until: Any = None, with_attributes: bool = True) -> EventArrays:
    """Every weighted event (optionally within [since, until)) as numpy arrays, plus id maps and
    item attributes (category path and brand) for the model's attribute embeddings."""
    started = time.perf_counter()
    weights_by_type = event_type_weights()
    type_names = [name for name, weight in weights_by_type.items() if weight > 0]
    case_sql, params = _type_case_sql(type_names)
    table = "events_event"
    where = []
    if since is not None:
        where.append("occurred_at >= %s")
        params.append(since)
    if until is not None:
        where.append("occurred_at < %s")
        params.append(until)
    where_sql = f" WHERE {' AND '.join(where)}" if where else ""

    if connection.vendor == "postgresql":
        sql = (
            f"SELECT customer_id::bigint, item_id::bigint, ({case_sql})::bigint, "
            f"floor(extract(epoch FROM occurred_at))::bigint FROM {table}{where_sql}"
        )
        rows = _read_postgres(sql, params)
        columns = {
            "customer": rows["customer"].astype(np.int64),
            "item": rows["item"].astype(np.int64),
            "type": rows["type"].astype(np.int64),
            "ts": rows["ts"].astype(np.int64),
        }
    else:
        if connection.vendor == "sqlite":
            ts_sql = "CAST(strftime('%%s', occurred_at) AS INTEGER)"
        else:  # pragma: no cover - MySQL and others are not supported deployments
            ts_sql = "UNIX_TIMESTAMP(occurred_at)"
        sql = f"SELECT customer_id, item_id, {case_sql}, {ts_sql} FROM {table}{where_sql}"
        columns = _read_generic(sql, params)
    read_seconds = time.perf_counter() - started

    keep = columns["type"] >= 0
    customer = columns["customer"][keep]
    item = columns["item"][keep]
    types = columns["type"][keep].astype(np.int16)
    ts = columns["ts"][keep]
    # Sequences are per customer in time order; the sort happens here in numpy, not in the
    # database, because a sorted COPY would make PostgreSQL spill a million rows to disk first.
    order = np.lexsort((ts, customer))
    customer, item, types, ts = customer[order], item[order], types[order], ts[order]
    type_weights = np.asarray([weights_by_type[name] for name in type_names] or [0.0], dtype=np.float32)
    weights = type_weights[types] if len(types) else np.zeros(0, dtype=np.float32)
    sort_seconds = time.perf_counter() - started - read_seconds

    result = EventArrays(
        customer=customer, item=item, timestamp=ts, types=types, weights=weights, type_names=type_names
    )
    ids_started = time.perf_counter()
    result.customer_shop_ids = _shop_ids("catalog_customer", np.unique(customer))
    result.item_shop_ids, result.item_attributes = _items(np.unique(item), with_attributes=with_attributes)
    result.seconds = {
        "read": round(read_seconds, 3),
        "sort": round(sort_seconds, 3),
        "ids": round(time.perf_counter() - ids_started, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    logger.info("Exported %d events in %.2fs (%s)", len(result), result.seconds["total"], result.seconds)
    return result


def _shop_ids(table: str, pks: np.ndarray) -> dict[int, str]:
    # The whole table is read when most of it is needed anyway: one sequential scan beats an
    # IN list of a hundred thousand ids.
    wanted = set(pks.tolist())
    out: dict[int, str] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, shop_id FROM {table}")  # fixed table names, never user input
        while True:
            rows = cursor.fetchmany(_FETCH_CHUNK)
            if not rows:
                break
            for pk, shop_id in rows:
                if pk in wanted:
                    out[pk] = shop_id
    return out


def _items(pks: np.ndarray, *, with_attributes: bool) -> tuple[dict[int, str], dict[str, dict[str, Any]]]:
    wanted = set(pks.tolist())
    shop_ids: dict[int, str] = {}
    attributes: dict[str, dict[str, Any]] = {}
    # Every item, not only those with events: an item nobody touched yet still gets an index and
    # attribute embeddings, so the model can score it from its category and brand.
    rows = Item.objects.values_list("id", "shop_id", "category__path", "brand", "is_active").iterator(
        chunk_size=_FETCH_CHUNK
    )
    for pk, shop_id, category_path, brand, is_active in rows:
        if pk not in wanted and not is_active:
            continue
        shop_ids[pk] = shop_id
        if with_attributes:
            attrs: dict[str, Any] = {}
            if category_path:
                attrs["category"] = category_path
            if brand:
                attrs["brand"] = brand
            attributes[shop_id] = attrs
    return shop_ids, attributes
