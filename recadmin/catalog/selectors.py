"""Reads from the catalog."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal

from django.db import connection
from django.db.models import Q, QuerySet

from recadmin.catalog.metadata import category_exists as category_exists
from recadmin.catalog.metadata import items_metadata as items_metadata
from recadmin.catalog.models import Category, Customer, Item
from recadmin.core.errors import NotFound


def category_subtree_q(category: Category, *, prefix: str = "category__") -> Q:
    """A Q matching rows whose category is `category` or below it: one indexed prefix match."""
    return Q(**{f"{prefix}path__startswith": category.path})


def category_subtree(*, category: Category) -> QuerySet[Category]:
    return Category.objects.filter(path__startswith=category.path)


def category_subtree_ids(*, slug: str) -> list[int]:
    category = Category.objects.filter(slug=slug).only("path").first()
    if category is None:
        return []
    return list(Category.objects.filter(path__startswith=category.path).values_list("id", flat=True))


def category_get(*, slug: str) -> Category:
    category = Category.objects.filter(slug=slug).first()
    if category is None:
        raise NotFound(f"Category {slug!r} not found.")
    return category


def category_list(*, parent: str | None = None) -> QuerySet[Category]:
    """Categories with their parent loaded; `parent` (a slug) keeps its direct children only."""
    qs = Category.objects.select_related("parent")
    if parent:
        qs = qs.filter(parent__slug=parent)  # the join select_related makes anyway: no separate lookup
    return qs


def item_get(*, shop_id: str) -> Item:
    item = Item.objects.select_related("category").filter(shop_id=shop_id).first()
    if item is None:
        raise NotFound(f"Item {shop_id!r} not found.")
    return item


def item_list(
    *,
    category: str | None = None,
    brand: str | None = None,
    in_stock: bool | None = None,
    is_active: bool | None = None,
    updated_since: dt.datetime | None = None,
    shop_ids: Iterable[str] | None = None,
) -> QuerySet[Item]:
    """Items filtered as the API offers; `category` is a slug and includes its whole subtree."""
    qs = Item.objects.select_related("category")
    if category:
        node = Category.objects.filter(slug=category).only("path").first()
        if node is None:
            return qs.none()
        qs = qs.filter(category_subtree_q(node))
    if brand:
        qs = qs.filter(brand=brand)
    if in_stock is not None:
        qs = qs.filter(in_stock=in_stock)
    if is_active is not None:
        qs = qs.filter(is_active=is_active)
    if updated_since is not None:
        qs = qs.filter(updated_at__gte=updated_since)
    if shop_ids is not None:
        qs = qs.filter(shop_id__in=list(shop_ids))
    return qs


# Thousands of ids travel as one JSON string: psycopg's client-side quoting of a text[] parameter
# costs milliseconds per thousand elements in Python, json.dumps a fraction of that in C.
PG_JSON_TEXT_ARRAY = "ARRAY(SELECT jsonb_array_elements_text(%s::jsonb))"


def pg_json_param(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def item_ids_by_shop_id(*, shop_ids: Iterable[str]) -> dict[str, int]:
    """Map shop ids to primary keys (unknown ids are absent). Ingestion calls this per batch."""
    wanted = list(set(shop_ids))
    if connection.vendor == "postgresql":
        # One array parameter instead of an IN list of thousands: far less query-building work.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT shop_id, id FROM {Item._meta.db_table} WHERE shop_id = ANY({PG_JSON_TEXT_ARRAY})",
                [pg_json_param(wanted)],
            )
            return dict(cursor.fetchall())
    return dict(Item.objects.filter(shop_id__in=wanted).values_list("shop_id", "id"))


def item_prices_by_id(*, item_ids: Iterable[int]) -> dict[int, Decimal]:
    """Primary key -> catalog price, for the items that have one (events record it on purchases)."""
    wanted = list(set(item_ids))
    rows = Item.objects.filter(pk__in=wanted, price__isnull=False).values_list("pk", "price")
    return {pk: price for pk, price in rows if price is not None}


def customer_get(*, shop_id: str) -> Customer:
    customer = Customer.objects.filter(shop_id=shop_id).first()
    if customer is None:
        raise NotFound(f"Customer {shop_id!r} not found.")
    return customer


def customer_list(*, updated_since: dt.datetime | None = None) -> QuerySet[Customer]:
    qs = Customer.objects.all()
    if updated_since is not None:
        qs = qs.filter(updated_at__gte=updated_since)
    return qs


CATEGORY_MEDIAN_PRICE_KEY = "catalog:category-median-price:v1"
CATEGORY_MEDIAN_PRICE_TTL = 300
# Each process keeps what it read for a few seconds: a ranked request then costs no round trip for
# them (the shared copy is itself minutes old; prices move slowly).
CATEGORY_MEDIAN_PRICE_LOCAL_SECONDS = 10.0
_median_local: list[tuple[float, dict[str, float]]] = []


def category_median_prices_forget_local() -> None:
    _median_local.clear()


def category_median_prices(*, cached: bool = True) -> dict[str, float]:
    """Median price per category slug over the catalog's priced items: the reference for a
    customer's price sensitivity (training.customer_profile), the same for the ranker's training
    export and for serving. Cached for a few minutes (prices move slowly), and for a few seconds
    in the process. `cached=False` computes them afresh and stores nothing (the export)."""
    import time
    from statistics import median

    from django.core.cache import cache

    if cached:
        hit = _median_local[0] if _median_local else None
        if hit is not None and time.monotonic() - hit[0] < CATEGORY_MEDIAN_PRICE_LOCAL_SECONDS:
            return hit[1]
        try:
            found = cache.get(CATEGORY_MEDIAN_PRICE_KEY)
        except Exception:  # noqa: BLE001 - a cache outage: compute them
            found = None
        if isinstance(found, dict):
            _median_local[:] = [(time.monotonic(), found)]
            return found
    by_category: dict[str, list[float]] = {}
    for slug, price in Item.objects.filter(price__gt=0, category__isnull=False).values_list("category__slug", "price"):
        if price is not None:
            by_category.setdefault(slug, []).append(float(price))
    medians = {slug: median(prices) for slug, prices in by_category.items()}
    if cached:
        with contextlib.suppress(Exception):
            cache.set(CATEGORY_MEDIAN_PRICE_KEY, medians, CATEGORY_MEDIAN_PRICE_TTL)
        _median_local[:] = [(time.monotonic(), medians)]
    return medians
