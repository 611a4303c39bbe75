"""The ranker's training data: every item served is one impression, labelled from the attributions.

    table = impressions_export(since=..., until=..., scenes=["home"])

Reads the served log (`serving.ServedRecommendation`, one row per page, every item with its
position, retrieval score and source), this app's `Attribution` rows (clicks, and purchases
attributed to a served list), the catalog and the raw events, and returns the ranker's
`ImpressionTable` (training.ranker.features).

It lives in metrics because it reads the served log and the attributions, which sit above
modelops; the modelops pipeline reaches it through `recadmin.modelops.registry` (this app registers
it in `MetricsConfig.ready`), so modelops never imports a higher app. The module imports torch
(through training.ranker.features): only the training task imports it, never the web process.

Labels: `clicked` when a click is attributed to (page, item); `purchased` only when the item was
also clicked from that list (purchase after click, as ESMM defines it; a purchase attributed by
the window without a click on the list counts as no purchase of this impression).

No leakage from the future: a customer's profile is computed from their events before the page
was served (customers are keyed per customer and page, "c1@1234"), with the function and the
event limit the rank stage uses when serving (training.customer_profile: the newest HISTORY_LENGTH
events, category median prices from recadmin.catalog.selectors.category_median_prices); an item's
popularity from the events before the export's first page; the device is the one of the
customer's newest event before the page that names one, by serving's rule
(recadmin.events.selectors.customer_last_device; never the click the label comes from).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from django.conf import settings

from recadmin.catalog.models import Item
from recadmin.catalog.selectors import category_median_prices
from recadmin.events.history import event_device
from recadmin.events.models import Event
from recadmin.metrics.models import Attribution
from recadmin.serving.models import ServedRecommendation
from training.customer_profile import PROFILE_EVENTS, PROFILE_WINDOW_DAYS, customer_profile
from training.ranker.features import CustomerFeatures, ImpressionTable, ItemFeatures
from training.ranker.profiles import item_popularity

DEVICE_SCAN = 20  # recadmin.events.selectors.customer_last_device's default
POPULARITY_WINDOW_DAYS = 30.0
_DAY = 86400.0
_BATCH = 2000


def impressions_export(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    scenes: Iterable[str] | None = None,
    include_fallback: bool = True,
) -> ImpressionTable:
    pages = ServedRecommendation.objects.order_by("created_at", "id")
    if since is not None:
        pages = pages.filter(created_at__gte=since)
    if until is not None:
        pages = pages.filter(created_at__lt=until)
    if scenes is not None:
        pages = pages.filter(scene__in=list(scenes))
    if not include_fallback:
        pages = pages.exclude(source="fallback")
    rows = list(pages.values("id", "customer_shop_id", "scene", "items", "created_at"))

    # (served page, item pk) -> clicked / purchased
    clicks: set[tuple[int, int]] = set()
    purchases: set[tuple[int, int]] = set()
    served_ids = [r["id"] for r in rows]
    for start in range(0, len(served_ids), _BATCH):
        chunk = served_ids[start : start + _BATCH]
        for served_id, item_id, kind in Attribution.objects.filter(
            served_id__in=chunk, type__in=("click", "purchase")
        ).values_list("served_id", "item_id", "type"):
            (clicks if kind == "click" else purchases).add((served_id, item_id))

    shown = {str(e.get("item") or "") for r in rows for e in (r["items"] or [])}
    shown.discard("")
    catalog = {
        it["shop_id"]: it
        for it in Item.objects.filter(shop_id__in=shown).values(
            "id", "shop_id", "category__slug", "brand", "price", "stock_quantity", "in_stock", "created_at"
        )
    }

    customer_ids: list[str] = []
    item_ids: list[str] = []
    scene: list[str] = []
    position: list[int] = []
    score: list[float] = []
    source: list[str] = []
    timestamp: list[float] = []
    clicked: list[bool] = []
    purchased: list[bool] = []
    device: list[str] = []
    page_customers: list[tuple[str, float, int]] = []  # per impression: (customer, page time, page id)
    for r in rows:
        at = r["created_at"].timestamp()
        for entry in r["items"] or []:
            shop_id = str(entry.get("item") or "")
            if not shop_id:
                continue
            pk = catalog[shop_id]["id"] if shop_id in catalog else None
            is_click = pk is not None and (r["id"], pk) in clicks
            item_ids.append(shop_id)
            scene.append(r["scene"] or "")
            position.append(max(int(entry.get("position") or 1), 1))
            # A page ordered by the rank stage logs the retrieval score beside the ranker's.
            raw_score = entry.get("retrieval_score", entry.get("score"))
            score.append(float(raw_score) if isinstance(raw_score, int | float) else 0.0)
            source.append(str(entry.get("source") or ""))
            timestamp.append(at)
            clicked.append(is_click)
            purchased.append(is_click and (r["id"], pk) in purchases)
            page_customers.append((r["customer_shop_id"] or "", at, r["id"]))

    first = min(timestamp) if timestamp else 0.0
    events = _customer_events({c for c, _, _ in page_customers if c}, first - PROFILE_WINDOW_DAYS * _DAY)
    items = _item_features(catalog, first=first)

    # Each page's customer profile from their events before the page, as the rank stage computes
    # it when serving (training.customer_profile, on the newest HISTORY_LENGTH events).
    event_items = {e_item for history in events.values() for _, e_item, _ in history}
    lookup = {**_item_features_of(event_items - set(items)), **items}
    attributes = {shop_id: (it.category, it.brand, it.price) for shop_id, it in lookup.items()}
    medians = category_median_prices(cached=False)
    limit = int(getattr(settings, "HISTORY_LENGTH", PROFILE_EVENTS))
    customers: dict[str, CustomerFeatures] = {}
    page_profile: dict[int, tuple[str, str]] = {}
    for customer, at, page_id in page_customers:
        if page_id not in page_profile:
            history = events.get(customer) or []
            key = f"{customer}@{page_id}"
            profile = customer_profile(
                ((t, e_item) for t, e_item, _ in history),
                items=attributes,
                category_median_price=medians,
                now=at,
                window_days=PROFILE_WINDOW_DAYS,
                limit=limit,
            )
            if profile is not None:
                customers[key] = CustomerFeatures.from_dict(profile)
            page_profile[page_id] = (key, _device_before(history, at))
        key, found = page_profile[page_id]
        customer_ids.append(key)
        device.append(found)

    return ImpressionTable(
        customer=customer_ids,
        item=item_ids,
        scene=scene,
        position=np.asarray(position, dtype=np.int64),
        retrieval_score=np.asarray(score, dtype=np.float32),
        source=source,
        timestamp=np.asarray(timestamp, dtype=np.float64),
        clicked=np.asarray(clicked, dtype=bool),
        purchased=np.asarray(purchased, dtype=bool),
        customers=customers,
        items=items,
        device=device,
    )


def _customer_events(customers: set[str], since: float) -> dict[str, list[tuple[float, str, str]]]:
    """Per customer, their events from `since` on, oldest first: (time, item shop id, device)."""
    out: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    names = sorted(customers)
    start = dt.datetime.fromtimestamp(since, tz=dt.UTC)
    for i in range(0, len(names), _BATCH):
        query = (
            Event.objects.filter(customer__shop_id__in=names[i : i + _BATCH], occurred_at__gte=start)
            .order_by("occurred_at", "id")
            .values_list("customer__shop_id", "item__shop_id", "occurred_at", "context")
        )
        for customer, item, occurred, context in query.iterator(chunk_size=5000):
            # Serving's rule for what names a device (a number does not: str(7) would be "7" here only).
            out[customer].append((occurred.timestamp(), item, event_device(context)))
    return out


def _device_before(history: list[tuple[float, str, str]] | None, at: float) -> str:
    """The device of the customer's newest event before `at` that names one, among the newest
    DEVICE_SCAN: the rule of recadmin.events.selectors.customer_last_device, which serving calls."""
    if not history:
        return ""
    end = bisect.bisect_left([h[0] for h in history], at)
    for _, _, found in reversed(history[max(end - DEVICE_SCAN, 0) : end]):
        if found:
            return found
    return ""


def _item_features(catalog: Mapping[str, Mapping[str, Any]], *, first: float) -> dict[str, ItemFeatures]:
    since = dt.datetime.fromtimestamp(first - POPULARITY_WINDOW_DAYS * _DAY, tz=dt.UTC)
    before = dt.datetime.fromtimestamp(first, tz=dt.UTC)
    pairs = list(
        Event.objects.filter(item__shop_id__in=list(catalog), occurred_at__gte=since, occurred_at__lt=before)
        .values_list("item__shop_id", "occurred_at")
        .iterator(chunk_size=5000)
    )
    popularity = item_popularity(
        [p[0] for p in pairs], [p[1].timestamp() for p in pairs], now=first, window_days=POPULARITY_WINDOW_DAYS
    )
    return {
        shop_id: ItemFeatures(
            category=row["category__slug"] or "",
            brand=row["brand"] or "",
            price=float(row["price"] or 0.0),
            popularity=popularity.get(shop_id, 0.0),
            age_days=max(0.0, (first - row["created_at"].timestamp()) / _DAY),
            # Stock as the catalog holds it now: the served log does not record it.
            stock=float(row["stock_quantity"] if row["stock_quantity"] is not None else (1 if row["in_stock"] else 0)),
        )
        for shop_id, row in catalog.items()
    }


def _item_features_of(shop_ids: set[str]) -> dict[str, ItemFeatures]:
    """Category, brand and price of items the customers interacted with but that were not shown."""
    return {
        row["shop_id"]: ItemFeatures(
            category=row["category__slug"] or "", brand=row["brand"] or "", price=float(row["price"] or 0.0)
        )
        for row in Item.objects.filter(shop_id__in=list(shop_ids)).values("shop_id", "category__slug", "brand", "price")
    }
