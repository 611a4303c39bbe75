"""Item metadata for the hot path (a catalog selector), cached per item and fetched in bulk.

A list needs title, category, brand, price, stock and attributes of a few hundred candidates. Three
layers: a process-local dict (no round trip, no unpickling), the shared cache per item (one
`get_many`, a single MGET on Redis), the database (one query for whatever is still missing, written
back with `set_many`). Keys and the change counter come from `recadmin.catalog.cache`, whose
`items_changed` hook the catalog services call: every request reads the counter (one small round
trip) and drops the process-local copy when it moved, so an edited item is re-read at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.cache import cache

from recadmin.catalog.cache import CHANGES_KEY, GENERATION_KEY, item_cache_key, items_state
from recadmin.catalog.models import Category, Item
from recadmin.core.caching import cache_get

ITEM_TTL_SECONDS = 6 * 3600
# Ids the model knows but the catalog does not (yet): remembered briefly so they cost no query.
_MISSING: dict[str, Any] = {"missing": True}
_MISSING_TTL_SECONDS = 60

# Process-local copy: bounded, and only trusted while the catalog's change counter stands still.
LOCAL_MAX_ITEMS = 200_000
_local: dict[str, dict[str, Any]] = {}
_local_state: list[int | None] = [None]
_local_lock = threading.Lock()

_FIELDS = (
    "id",
    "shop_id",
    "title",
    "brand",
    "price",
    "currency",
    "stock_quantity",
    "in_stock",
    "is_active",
    "attributes",
    "category__slug",
    "category__path",
)


def _to_meta(row: dict[str, Any]) -> dict[str, Any]:
    price = row["price"]
    return {
        "pk": row["id"],
        "item": row["shop_id"],
        "title": row["title"],
        "brand": row["brand"],
        "price": float(price) if isinstance(price, Decimal) else price,
        "currency": row["currency"],
        "stock_quantity": row["stock_quantity"],
        "in_stock": row["in_stock"],
        "is_active": row["is_active"],
        "attributes": row["attributes"] or {},
        "category": row["category__slug"] or "",
        "category_path": row["category__path"] or "",
        "path": tuple(p for p in (row["category__path"] or "").strip("/").split("/") if p),
    }


def items_metadata(
    shop_ids: Iterable[str], *, state: tuple[int, int | None] | None = None
) -> dict[str, dict[str, Any]]:
    """{shop_id: metadata} for the ids the catalog knows; unknown ids are left out. `state`:
    (generation, change counter) when the caller already read them (items_state_keys, in its own round trip)."""
    wanted = list(dict.fromkeys(map(str, shop_ids)))  # str() of a str is itself: no copy
    if not wanted:
        return {}
    generation, changes = state if state is not None and state[1] is not None else items_state()
    found: dict[str, dict[str, Any]] = {}
    remote: list[str] = []
    with _local_lock:
        if changes is None or changes != _local_state[0] or len(_local) > LOCAL_MAX_ITEMS:
            _local.clear()
            _local_state[0] = changes
        local_get = _local.get
        for shop_id in wanted:
            meta = local_get(shop_id)
            if meta is None:
                remote.append(shop_id)
            else:
                found[shop_id] = meta
    if not remote:
        return found  # the hot path with a warm process: the local copy never holds unknown ids
    keys = {item_cache_key(s, generation): s for s in remote}
    try:
        cached = cache.get_many(list(keys))
    except Exception:  # noqa: BLE001 - a cache outage: read everything from the database
        cached = {}
    for key, value in cached.items():
        if value is not None:
            found[keys[key]] = value
    missing = [s for s in wanted if s not in found]
    if missing:
        rows = {r["shop_id"]: _to_meta(r) for r in Item.objects.filter(shop_id__in=missing).values(*_FIELDS)}
        to_set = {}
        unknown = {}
        for shop_id in missing:
            meta = rows.get(shop_id)
            if meta is None:
                unknown[item_cache_key(shop_id, generation)] = _MISSING
            else:
                to_set[item_cache_key(shop_id, generation)] = meta
            found[shop_id] = meta or _MISSING
        with contextlib.suppress(Exception):
            if to_set:
                cache.set_many(to_set, ITEM_TTL_SECONDS)
            if unknown:
                cache.set_many(unknown, _MISSING_TTL_SECONDS)
    if changes is not None:
        with _local_lock:
            if _local_state[0] == changes:
                # Unknown ids stay out of the local copy: they may be created any moment.
                _local.update({s: found[s] for s in remote if not found[s].get("missing")})
    return {s: found[s] for s in wanted if not found[s].get("missing")}


# --- categories --------------------------------------------------------------------------------

CATEGORY_KNOWN_TTL = 300
CATEGORY_UNKNOWN_TTL = 30


def category_cache_key(slug: str) -> str:
    return f"catalog:category:{slug}"


def category_exists(slug: str, *, cached: bool | None = None) -> bool:
    """Whether the catalog knows the category slug (cached). `cached`: what the cache said when the
    caller read category_cache_key(slug) in its own round trip (None: no answer, ask)."""
    known = cached
    if known is None:
        known = cache_get(category_cache_key(slug))
    if known is None:
        known = Category.objects.filter(slug=slug).exists()
        with contextlib.suppress(Exception):
            cache.set(category_cache_key(slug), known, CATEGORY_KNOWN_TTL if known else CATEGORY_UNKNOWN_TTL)
    return bool(known)


def items_state_keys() -> tuple[str, str]:
    """The keys of items_state (generation, change counter), for a caller that reads them with its own batch."""
    return GENERATION_KEY, CHANGES_KEY


_CATEGORY_ITEMS_TTL = 300
_category_items_local: dict[str, tuple[float, list[str]]] = {}


def category_items(slug: str, *, limit: int = 200) -> list[str]:
    """Active items of a category's subtree, newest first (cached): what stands in for a trend in a
    category that has no events yet."""
    import time

    hit = _category_items_local.get(slug)
    if hit is not None and time.monotonic() - hit[0] < 60:
        return hit[1][:limit]
    key = f"catalog:category-items:{slug}"
    ids = cache_get(key)
    if ids is None:
        path = Category.objects.filter(slug=slug).values_list("path", flat=True).first()
        ids = []
        if path is not None:
            ids = list(
                Item.objects.filter(is_active=True, category__path__startswith=path)
                .order_by("-id")
                .values_list("shop_id", flat=True)[:500]
            )
        with contextlib.suppress(Exception):
            cache.set(key, ids, _CATEGORY_ITEMS_TTL)
    _category_items_local[slug] = (time.monotonic(), ids)
    return list(ids[:limit])
