"""Attribution
* direct: a click, add-to-cart or purchase carrying a `recommendation_id` counts for that list, at
  the position its item had in it, if it happened within the attribution window after the list was
  served (`ATTRIBUTION_WINDOW_HOURS`);
* window: an add-to-cart or purchase without one (or naming an unknown list) counts for the list
  whose click on the same item by the same customer came last within the window before it.
Counted once: a click or add-to-cart per (list, item), a purchase per event (a second purchase is
revenue too); a resent event_id never reaches here twice (ingestion drops it).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from recadmin.events.models import Event
from recadmin.metrics.models import Attribution, AttributionEvent, AttributionMethod, RollupState
from recadmin.metrics.services.common import (
    _PAGE_FIELDS,
    ATTRIBUTED_TYPES,
    EVENT_ID_LOOKBACK,
    EVENTS_LOOKBACK,
    WINDOW_TYPES,
    _chunks,
    _page_dims,
    attribution_window,
    hour_of,
    ledger_advance,
)
from recadmin.serving.models import ServedRecommendation


@dataclass
class AttributionResult:
    direct: int = 0
    window: int = 0
    hours: set[dt.datetime] = field(default_factory=set)
    experiment_customers: set[tuple[int, str]] = field(default_factory=set)


_EVENT_FIELDS = (
    "pk",
    "type",
    "customer_id",
    "customer__shop_id",
    "item_id",
    "item__shop_id",
    "recommendation_id",
    "occurred_at",
    "price",
    "value",
)


def _revenue(event: dict[str, Any]) -> tuple[float, Decimal]:
    if event["type"] != "purchase":
        return 1.0, Decimal("0")
    value = event["value"]
    quantity = float(value) if value is not None and value > 0 else 1.0
    price = event["price"]
    revenue = (Decimal(price) * Decimal(str(quantity))).quantize(Decimal("0.01")) if price is not None else Decimal(0)
    return quantity, revenue


def _dedup_key(type_: str, recommendation_id: str, item_id: int, event_pk: int) -> str:
    if type_ == "purchase":
        return f"purchase:{event_pk}"
    return f"{type_}:{recommendation_id}:{item_id}"


def _pages_by_recommendation(
    recommendation_ids: set[str],
) -> dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]]:
    """recommendation_id -> item shop id -> (page, the item's entry in it)."""
    found: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {}
    for chunk in _chunks(recommendation_ids):
        for page in ServedRecommendation.objects.filter(recommendation_id__in=chunk).values(*_PAGE_FIELDS):
            entries = found.setdefault(page["recommendation_id"], {})
            page["page_rules"] = sorted(
                {r for e in page["items"] or [] if isinstance(e, dict) for r in e.get("rules") or ()}
            )
            for entry in page["items"] or []:
                if isinstance(entry, dict) and entry.get("item") is not None:
                    entries.setdefault(str(entry["item"]), (page, entry))
    return found


def _attribution(event: dict[str, Any], page: dict[str, Any], entry: dict[str, Any], method: str) -> Attribution:
    quantity, revenue = _revenue(event)
    return Attribution(
        event_id=event["pk"],
        dedup_key=_dedup_key(event["type"], page["recommendation_id"], event["item_id"], event["pk"]),
        type=event["type"],
        method=method,
        served_id=page["id"],
        recommendation_id=page["recommendation_id"],
        served_hour=hour_of(page["created_at"]),
        position=int(entry.get("position") or 0),
        item_id=event["item_id"],
        item_source=str(entry.get("source") or "")[:20],
        rules=list(entry.get("rules") or []),
        page_rules=list(page.get("page_rules") or []),
        customer_shop_id=page["customer_shop_id"] or event["customer__shop_id"],
        occurred_at=event["occurred_at"],
        quantity=quantity,
        revenue=revenue,
        **_page_dims(page),
    )


def _unattributed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done: set[int] = set()
    for chunk in _chunks([e["pk"] for e in events]):
        done.update(Attribution.objects.filter(event_id__in=chunk).values_list("event_id", flat=True))
    return [e for e in events if e["pk"] not in done]


def _store(rows: list[Attribution], result: AttributionResult) -> None:
    """Insert the rows that count (first of each dedup key, none already stored); only those touch
    an hour, so an event that keeps matching an attributed one does not recompute anything."""
    if not rows:
        return
    fresh: dict[str, Attribution] = {}
    for row in rows:
        fresh.setdefault(row.dedup_key, row)
    for chunk in _chunks(list(fresh)):
        for key in Attribution.objects.filter(dedup_key__in=chunk).values_list("dedup_key", flat=True):
            fresh.pop(key, None)
    rows = list(fresh.values())
    # ignore_conflicts still: a concurrent writer outside the bookmark lock must not fail the run.
    Attribution.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    for row in rows:
        result.hours.add(row.served_hour)
        if row.experiment_id is not None and row.customer_shop_id:
            result.experiment_customers.add((row.experiment_id, row.customer_shop_id))
        if row.method == AttributionMethod.DIRECT:
            result.direct += 1
        else:
            result.window += 1


def _attribute_by_window(events: list[dict[str, Any]], result: AttributionResult) -> None:
    """Each add-to-cart / purchase goes to the list of the customer's last click on the item within
    the window before it (attributed clicks are the record of which list a click came from)."""
    if not events:
        return
    window = attribution_window()
    clicks: dict[tuple[str, int], list[Attribution]] = defaultdict(list)
    earliest = min(e["occurred_at"] for e in events) - window
    customers = {e["customer__shop_id"] for e in events}
    items = {e["item_id"] for e in events}
    for chunk in _chunks(customers):
        query = Attribution.objects.filter(
            type="click", customer_shop_id__in=chunk, item_id__in=items, occurred_at__gte=earliest
        )
        for click in query:
            clicks[(click.customer_shop_id, click.item_id)].append(click)
    rows = []
    for event in events:
        candidates = [
            c
            for c in clicks.get((event["customer__shop_id"], event["item_id"]), ())
            if event["occurred_at"] - window <= c.occurred_at <= event["occurred_at"]
        ]
        if not candidates:
            continue
        click = max(candidates, key=lambda c: (c.occurred_at, c.event_id))
        page = {
            "id": click.served_id,
            "recommendation_id": click.recommendation_id,
            "customer_shop_id": click.customer_shop_id,
            "created_at": click.served_hour,
            "scene": click.scene,
            "strategy": click.strategy,
            "model_version_id": click.model_version_id,
            "model_label": click.model_label,
            "experiment_id": click.experiment_id,
            "variant_id": click.variant_id,
            "source": click.source,
            "page_rules": click.page_rules,
        }
        entry = {"position": click.position, "source": click.item_source, "rules": click.rules}
        rows.append(_attribution(event, page, entry, AttributionMethod.WINDOW))
    _store(rows, result)


def attribution_run(*, since: dt.datetime, until: dt.datetime | None = None) -> AttributionResult:
    """Attribute the events stored (created_at) from `since` on that are not attributed yet: what
    `metrics_rebuild` does over the history (the periodic refresh reads only new events:
    `attribution_run_new`)."""
    query = _attributable().filter(created_at__gte=since)
    if until is not None:
        query = query.filter(created_at__lt=until)
    result, _ = _attribute(list(query.values(*_EVENT_FIELDS)))
    return result


def _attributable() -> QuerySet[Event]:
    """The events attribution reads, less those attributed already (an anti-join on the unique
    event_id, done by the database)."""
    return (
        Event.objects.filter(type__in=ATTRIBUTED_TYPES)
        .filter(Q(recommendation_id__isnull=False) | Q(type__in=WINDOW_TYPES))
        .filter(~Exists(Attribution.objects.filter(event_id=OuterRef("pk"))))
        .order_by()
    )


def attribution_run_new(*, state: RollupState) -> AttributionResult:
    """Attribute the events not read yet: an id above `state.events_check_low` and not in the
    `AttributionEvent` ledger (an event committed late, below the highest id read, is still found),
    then move the bookmarks on `state` (the caller holds its lock, saves it and commits). Each run
    reads only what is new, not a lookback of minutes; an event naming a list not found yet (still
    in the served-log buffer) stays out of the ledger and is read again by the next runs."""
    if state.events_read_id == 0 and state.events_read_until is not None:
        # The first run after the time bookmark: read its lookback once more, then take ids from here.
        result = attribution_run(since=state.events_read_until - EVENTS_LOOKBACK)
        events_bookmark_reset(state=state)
        return result
    low = state.events_check_low
    seen = AttributionEvent.objects.values("event_id")
    events = list(_attributable().filter(id__gt=low).exclude(id__in=seen).values(*_EVENT_FIELDS))
    result, pending = _attribute(events)
    read = [e["pk"] for e in events if e["pk"] not in pending]
    AttributionEvent.objects.bulk_create(
        [AttributionEvent(event_id=pk) for pk in read], batch_size=5000, ignore_conflicts=True
    )
    newest = max([state.events_read_id, *(e["pk"] for e in events)])
    state.events_read_id = newest
    state.events_check_low = ledger_advance(
        AttributionEvent, "event_id", low=low, newest=newest, lookback=EVENT_ID_LOOKBACK
    )
    return result


def events_bookmark_reset(*, state: RollupState) -> None:
    """After a read by time (`attribution_run`): the id bookmark at the newest event, its lookback to
    be read again (what was attributed is left out by the anti-join; the rest is read once more and
    goes into the ledger), the ledger emptied."""
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    state.events_read_id = newest
    state.events_check_low = max(0, newest - EVENT_ID_LOOKBACK)
    AttributionEvent.objects.all().delete()


def _attribute(events: list[dict[str, Any]]) -> tuple[AttributionResult, set[int]]:
    """Attribute these events (none attributed yet); returns the result and the events that name a
    list not found (yet)."""
    result = AttributionResult()
    pending: set[int] = set()
    if not events:
        return result, pending
    window = attribution_window()

    # Direct first, clicks included, so that the window step sees this batch's clicks.
    pages = _pages_by_recommendation({e["recommendation_id"] for e in events if e["recommendation_id"]})
    direct: list[Attribution] = []
    by_window: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: (e["occurred_at"], e["pk"])):
        if event["recommendation_id"] and event["recommendation_id"] not in pages:
            pending.add(event["pk"])
        found = pages.get(event["recommendation_id"] or "", {}).get(event["item__shop_id"])
        if found is not None:
            page, entry = found
            if event["occurred_at"] <= page["created_at"] + window:
                direct.append(_attribution(event, page, entry, AttributionMethod.DIRECT))
            continue  # outside the window: not counted
        if event["type"] in WINDOW_TYPES:
            by_window.append(event)
    _store(direct, result)

    # A click that arrives after the purchase it led to: look again at that customer's purchases of
    # the item (without a recommendation_id) that happened after it.
    new_clicks = [a for a in direct if a.type == "click"]
    if new_clicks:
        waiting = {e["pk"] for e in by_window}
        earliest = min(a.occurred_at for a in new_clicks)
        pairs = {(a.customer_shop_id, a.item_id) for a in new_clicks}
        later = Event.objects.filter(
            type__in=WINDOW_TYPES,
            recommendation_id__isnull=True,
            occurred_at__gte=earliest,
            customer__shop_id__in={c for c, _ in pairs},
            item_id__in={i for _, i in pairs},
        ).values(*_EVENT_FIELDS)
        extra = [e for e in later if (e["customer__shop_id"], e["item_id"]) in pairs and e["pk"] not in waiting]
        by_window.extend(_unattributed(extra))
    _attribute_by_window(by_window, result)
    return result, pending
