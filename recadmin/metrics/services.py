"""The metrics pipeline: drain the served log, attribute events to served lists, roll up the hours
that changed, refresh the experiments' per-customer sums. One entry point, `metrics_refresh`, run
every minute by the `metrics.tasks.refresh_metrics` periodic task in every mode (beat, or the
in-process scheduler when embedded).

Attribution
  * direct: a click, add-to-cart or purchase carrying a `recommendation_id` counts for that list, at
    the position its item had in it, if it happened within the attribution window after the list was
    served (`ATTRIBUTION_WINDOW_HOURS`);
  * window: an add-to-cart or purchase without one (or naming an unknown list) counts for the list
    whose click on the same item by the same customer came last within the window before it.
  Counted once: a click or add-to-cart per (list, item), a purchase per event (a second purchase is
  revenue too); a resent event_id never reaches here twice (ingestion drops it).

Idempotence: rollup rows are keyed by the hour the list was served and each touched hour is
recomputed whole from `ServedRecommendation` and `Attribution`, in one transaction; attributions and
the daily item sets are insert-if-absent. A late event changes its list's hour, which is recomputed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from recadmin.events.models import Event
from recadmin.metrics.models import (
    Attribution,
    AttributionMethod,
    DailyItem,
    HourlyRollup,
    PositionRollup,
    RollupState,
    RuleRollup,
)
from recadmin.serving.models import ServedRecommendation

logger = logging.getLogger(__name__)

ATTRIBUTED_TYPES = ("click", "add_to_cart", "purchase")
WINDOW_TYPES = ("add_to_cart", "purchase")
# Events are re-read this far behind the bookmark: a row committed late (a slow ingest transaction)
# or one naming a list still in the served-log buffer is picked up by a later run.
EVENTS_LOOKBACK = dt.timedelta(minutes=15)
# Served pages are re-read this many ids behind the bookmark, for the same reason (concurrent drains).
SERVED_ID_LOOKBACK = 2000
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_CHUNK = 2000


def attribution_window() -> dt.timedelta:
    return dt.timedelta(hours=float(getattr(settings, "ATTRIBUTION_WINDOW_HOURS", 24)))


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _chunks(values: Iterable[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- attribution -----------------------------------------------------------------------------------


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


def _page_dims(page: dict[str, Any]) -> dict[str, Any]:
    return {
        "scene": page["scene"],
        "strategy": page["strategy"],
        "model_version_id": page["model_version_id"],
        "model_label": page["model_label"],
        "experiment_id": page["experiment_id"],
        "variant_id": page["variant_id"],
        "source": page["source"],
    }


_PAGE_FIELDS = (
    "id",
    "recommendation_id",
    "offset",
    "customer_shop_id",
    "scene",
    "strategy",
    "model_version_id",
    "model_label",
    "experiment_id",
    "variant_id",
    "source",
    "fallback_reason",
    "items",
    "n_items",
    "created_at",
)


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
    """Attribute the events stored (created_at) from `since` on that are not attributed yet."""
    result = AttributionResult()
    window = attribution_window()
    query = Event.objects.filter(created_at__gte=since, type__in=ATTRIBUTED_TYPES).filter(
        Q(recommendation_id__isnull=False) | Q(type__in=WINDOW_TYPES)
    )
    if until is not None:
        query = query.filter(created_at__lt=until)
    events = _unattributed(list(query.order_by().values(*_EVENT_FIELDS)))
    if not events:
        return result

    # Direct first, clicks included, so that the window step sees this batch's clicks.
    pages = _pages_by_recommendation({e["recommendation_id"] for e in events if e["recommendation_id"]})
    direct: list[Attribution] = []
    by_window: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: (e["occurred_at"], e["pk"])):
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
        pending = {e["pk"] for e in by_window}
        earliest = min(a.occurred_at for a in new_clicks)
        pairs = {(a.customer_shop_id, a.item_id) for a in new_clicks}
        later = Event.objects.filter(
            type__in=WINDOW_TYPES,
            recommendation_id__isnull=True,
            occurred_at__gte=earliest,
            customer__shop_id__in={c for c, _ in pairs},
            item_id__in={i for _, i in pairs},
        ).values(*_EVENT_FIELDS)
        extra = [e for e in later if (e["customer__shop_id"], e["item_id"]) in pairs and e["pk"] not in pending]
        by_window.extend(_unattributed(extra))
    _attribute_by_window(by_window, result)
    return result


# --- rollups ---------------------------------------------------------------------------------------

_DIMS = ("scene", "strategy", "model_version_id", "model_label", "experiment_id", "variant_id", "source")


def _is_fallback(page: dict[str, Any]) -> bool:
    return page["source"] == "fallback" or bool(page["fallback_reason"])


@transaction.atomic
def rollups_recompute(*, hours: Iterable[dt.datetime]) -> int:
    """Recompute the hourly, position and rule rollups of these hours from scratch (and add their
    items to the daily item sets). Returns the hourly rows written."""
    written = 0
    run: list[dt.datetime] = []
    # Runs of consecutive hours (at most a day each): one range scan of the served log per run.
    for hour in sorted({hour_of(h) for h in hours}):
        if run and (hour - run[-1] != dt.timedelta(hours=1) or len(run) >= 24):
            written += _recompute_hours(run)
            run = []
        run.append(hour)
    if run:
        written += _recompute_hours(run)
    return written


# Page-side sums of one group: lists, fallback lists, impressions, distinct customers, distinct items.
PageSums = dict[str, int]
# SQL aggregation of the served log needs PostgreSQL's jsonb functions; elsewhere pages are read.
USE_SQL = True


def _page_sums_python(
    hours: list[dt.datetime],
) -> tuple[dict[tuple[Any, ...], PageSums], dict[tuple[Any, ...], int], dict[tuple[Any, ...], list[int]]]:
    """Read the hours' pages: (group sums, impressions per (hour, scene, position), per (hour, scene,
    rule) [lists, impressions, other impressions]); adds their items to the daily sets."""
    hour_set = set(hours)
    sets: dict[tuple[Any, ...], dict[str, Any]] = {}
    positions: dict[tuple[Any, ...], int] = defaultdict(int)
    rules: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    daily: set[tuple[Any, ...]] = set()
    start, end = min(hours), max(hours) + dt.timedelta(hours=1)
    pages = ServedRecommendation.objects.filter(created_at__gte=start, created_at__lt=end).values(*_PAGE_FIELDS)
    for page in pages.iterator(chunk_size=5000):
        hour = hour_of(page["created_at"])
        if hour not in hour_set:
            continue
        key = (hour, *(page[d] for d in _DIMS))
        g = sets.get(key)
        if g is None:
            g = sets[key] = {"lists": set(), "fallback": set(), "impressions": 0, "customers": set(), "items": set()}
        rec = page["recommendation_id"]
        g["lists"].add(rec)
        if _is_fallback(page):
            g["fallback"].add(rec)
        g["impressions"] += page["n_items"]
        if page["customer_shop_id"]:
            g["customers"].add(page["customer_shop_id"])
        day = hour.date()
        page_rules: dict[int, int] = defaultdict(int)
        for entry in page["items"] or []:
            if not isinstance(entry, dict):
                continue
            item = str(entry.get("item"))
            g["items"].add(item)
            daily.add(
                (day, page["scene"], page["strategy"], page["model_version_id"] or 0, page["variant_id"] or 0, item)
            )
            positions[(hour, page["scene"], int(entry.get("position") or 0))] += 1
            for rule in entry.get("rules") or ():
                page_rules[int(rule)] += 1
        for rule, boosted in page_rules.items():
            counts = rules[(hour, page["scene"], rule)]
            counts[0] += 1
            counts[1] += boosted
            counts[2] += page["n_items"] - boosted
    _daily_items_add(daily)
    groups = {
        key: {"lists": len(g["lists"]), "fallback": len(g["fallback"]), "impressions": g["impressions"],
              "customers": len(g["customers"]), "items": len(g["items"])}
        for key, g in sets.items()
    }  # fmt: skip
    return groups, positions, rules


def _page_sums_sql(
    hours: list[dt.datetime],
) -> tuple[dict[tuple[Any, ...], PageSums], dict[tuple[Any, ...], int], dict[tuple[Any, ...], list[int]]]:
    """The same as `_page_sums_python`, aggregated by PostgreSQL (an hour of a busy shop is tens of
    thousands of pages: only the sums cross the wire)."""
    table = ServedRecommendation._meta.db_table
    hour = "date_trunc('hour', s.created_at)"
    dims = "s.scene, s.strategy, s.model_version_id, s.model_label, s.experiment_id, s.variant_id, s.source"
    where = "s.created_at >= %s AND s.created_at < %s AND date_trunc('hour', s.created_at) = ANY(%s)"
    start, end = min(hours), max(hours) + dt.timedelta(hours=1)
    params: list[Any] = [start, end, list(hours)]
    groups: dict[tuple[Any, ...], PageSums] = {}
    positions: dict[tuple[Any, ...], int] = {}
    rules: dict[tuple[Any, ...], list[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {hour}, {dims}, COUNT(DISTINCT s.recommendation_id), COUNT(DISTINCT s.recommendation_id) "
            "FILTER (WHERE s.source = 'fallback' OR s.fallback_reason <> ''), SUM(s.n_items), "
            f"COUNT(DISTINCT NULLIF(s.customer_shop_id, '')) FROM {table} s WHERE {where} GROUP BY {hour}, {dims}",
            params,
        )
        for row in cursor.fetchall():
            groups[tuple(row[:8])] = {"lists": row[8], "fallback": row[9], "impressions": int(row[10] or 0),
                                      "customers": row[11], "items": 0}  # fmt: skip
        # The pages' items expanded once into a scratch table that the four sums below read: each
        # jsonb_array_elements pass over an hour of pages costs about as much as the sum it feeds.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS metrics_page_items (h timestamptz, scene text, strategy text, "
            "model_version_id bigint, model_label text, experiment_id bigint, variant_id bigint, source text, "
            "page_id bigint, n_items integer, day date, item text, position text, rules jsonb) ON COMMIT DELETE ROWS"
        )
        cursor.execute("DELETE FROM metrics_page_items")  # a run of hours before this one, same transaction
        cursor.execute(
            f"INSERT INTO metrics_page_items SELECT {hour}, {dims}, s.id, s.n_items, "
            "(date_trunc('day', s.created_at))::date, e->>'item', e->>'position', e->'rules' "
            f"FROM {table} s CROSS JOIN LATERAL jsonb_array_elements(s.items) e WHERE {where}",
            params,
        )
        item_dims = "strategy, model_version_id, model_label, experiment_id, variant_id, source"
        cursor.execute(
            f"SELECT h, scene, {item_dims}, COUNT(DISTINCT item) FROM metrics_page_items GROUP BY h, scene, {item_dims}"
        )
        for row in cursor.fetchall():
            if tuple(row[:8]) in groups:
                groups[tuple(row[:8])]["items"] = row[8]
        cursor.execute("SELECT h, scene, COALESCE(position::int, 0), COUNT(*) FROM metrics_page_items GROUP BY 1, 2, 3")
        for h, scene, position, count in cursor.fetchall():
            positions[(h, scene, position)] = count
        cursor.execute(
            "SELECT h, scene, rule, COUNT(*), SUM(boosted), SUM(n_items - boosted) FROM ("
            " SELECT h, scene, page_id, n_items, r::bigint AS rule, COUNT(*) AS boosted FROM metrics_page_items i"
            " CROSS JOIN LATERAL jsonb_array_elements_text(CASE WHEN jsonb_typeof(i.rules) = 'array'"
            " THEN i.rules ELSE '[]'::jsonb END) r"
            " WHERE r ~ '^[0-9]+$' GROUP BY 1, 2, 3, 4, 5) per_page GROUP BY h, scene, rule"
        )
        for h, scene, rule, lists, boosted, other in cursor.fetchall():
            rules[(h, scene, rule)] = [lists, int(boosted), int(other)]
        cursor.execute(
            f"INSERT INTO {DailyItem._meta.db_table} (day, scene, strategy, model_version_id, variant_id, item) "
            "SELECT DISTINCT day, scene, strategy, COALESCE(model_version_id, 0), COALESCE(variant_id, 0), item "
            "FROM metrics_page_items WHERE item IS NOT NULL ON CONFLICT DO NOTHING"
        )
    return groups, positions, rules


def _recompute_hours(hours: list[dt.datetime]) -> int:
    if USE_SQL and connection.vendor == "postgresql":
        page_groups, page_positions, page_rules = _page_sums_sql(hours)
    else:
        page_groups, page_positions, page_rules = _page_sums_python(hours)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    positions: dict[tuple[dt.datetime, str, int], list[int]] = defaultdict(lambda: [0, 0])
    rules: dict[tuple[dt.datetime, str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])

    def group(key: tuple[Any, ...]) -> dict[str, Any]:
        found = groups.get(key)
        if found is None:
            found = groups[key] = {
                "lists": 0, "fallback": 0, "impressions": 0, "customers": 0, "items": 0, "clicks": 0,
                "add_to_carts": 0, "purchases": 0, "revenue": Decimal(0), "direct": 0, "window": 0,
            }  # fmt: skip
        return found

    for key, sums in page_groups.items():
        group(key).update(sums)
    for (h, scene, position), count in page_positions.items():
        positions[(h, scene, position)][0] = count
    for key, (lists, boosted, other) in page_rules.items():
        rules[key][0], rules[key][1], rules[key][3] = lists, boosted, other

    clicked: list[tuple[dt.datetime, str, list[Any], list[Any]]] = []
    attributions = Attribution.objects.filter(served_hour__in=hours).values(
        "type", "method", "served_id", "served_hour", "position", "rules", "page_rules", "revenue", *_DIMS
    )
    for a in attributions:
        g = group((a["served_hour"], *(a[d] for d in _DIMS)))
        if a["type"] == "click":
            g["clicks"] += 1
            clicked.append((a["served_hour"], a["scene"], a["page_rules"] or [], a["rules"] or []))
            positions[(a["served_hour"], a["scene"], a["position"])][1] += 1
        elif a["type"] == "add_to_cart":
            g["add_to_carts"] += 1
        else:
            g["purchases"] += 1
            g["revenue"] += a["revenue"]
        g["direct" if a["method"] == AttributionMethod.DIRECT else "window"] += 1
    # A click counts for each rule present on its page: for it when the clicked item carried it.
    for h, scene, on_page, clicked_rules in clicked:
        for rule in on_page:
            rules[(h, scene, rule)][2 if rule in clicked_rules else 4] += 1

    HourlyRollup.objects.filter(hour__in=hours).delete()
    PositionRollup.objects.filter(hour__in=hours).delete()
    RuleRollup.objects.filter(hour__in=hours).delete()
    rows = []
    for key, g in groups.items():
        dims = dict(zip(_DIMS, key[1:], strict=True))
        rows.append(
            HourlyRollup(
                hour=key[0],
                lists=g["lists"],
                fallback_lists=g["fallback"],
                impressions=g["impressions"],
                clicks=g["clicks"],
                add_to_carts=g["add_to_carts"],
                purchases=g["purchases"],
                revenue=g["revenue"],
                direct_attributions=g["direct"],
                window_attributions=g["window"],
                customers=g["customers"],
                items=g["items"],
                **dims,
            )
        )
    HourlyRollup.objects.bulk_create(rows, batch_size=2000)
    PositionRollup.objects.bulk_create(
        [
            PositionRollup(hour=h, scene=s, position=p, impressions=c[0], clicks=c[1])
            for (h, s, p), c in positions.items()
        ],
        batch_size=2000,
    )
    RuleRollup.objects.bulk_create(
        [
            RuleRollup(
                hour=h,
                scene=s,
                rule_id=r,
                lists=c[0],
                impressions=c[1],
                clicks=c[2],
                other_impressions=c[3],
                other_clicks=c[4],
            )
            for (h, s, r), c in rules.items()
        ],
        batch_size=2000,
    )
    return len(rows)


def _daily_items_add(rows: set[tuple[Any, ...]]) -> None:
    """Add (day, scene, strategy, model version, variant, item) rows to the set (existing ones stay)."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        # One statement over arrays: an hour can serve tens of thousands of distinct items, and
        # building a model instance for each costs more than the database.
        columns = list(zip(*rows, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {DailyItem._meta.db_table} (day, scene, strategy, model_version_id, variant_id, item) "
                "SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[]) "
                "ON CONFLICT DO NOTHING",
                [list(column) for column in columns],
            )
        return
    DailyItem.objects.bulk_create(
        [
            DailyItem(day=d, scene=s, strategy=st, model_version_id=m, variant_id=v, item=i)
            for d, s, st, m, v, i in rows
        ],
        batch_size=5000,
        ignore_conflicts=True,
    )


# --- experiments' per-customer sums ----------------------------------------------------------------


def experiment_customers_refresh(*, pairs: Iterable[tuple[int, str]]) -> int:
    """Recompute the totals of these (experiment, customer) pairs from the served log and the
    attributions, and write them through experiments' upsert (absolute values: idempotent)."""
    from recadmin.experiments.models import Experiment
    from recadmin.experiments.services import CustomerSums, experiment_customers_upsert

    by_experiment: dict[int, set[str]] = defaultdict(set)
    for experiment_id, customer in pairs:
        if customer:
            by_experiment[experiment_id].add(customer)
    written = 0
    for experiment in Experiment.objects.filter(pk__in=list(by_experiment)):
        variant_ids = set(experiment.variants.values_list("pk", flat=True))
        for chunk in _chunks(sorted(by_experiment[experiment.pk])):
            served_sums: dict[tuple[int, str], dict[str, Any]] = {}
            served = (
                ServedRecommendation.objects.filter(
                    experiment_id=experiment.pk, customer_shop_id__in=chunk, variant_id__in=variant_ids
                )
                .values("variant_id", "customer_shop_id")
                .annotate(
                    exposures=Count("recommendation_id", distinct=True),
                    lists=Count("recommendation_id", distinct=True, filter=Q(n_items__gt=0)),
                    fallback_lists=Count(
                        "recommendation_id", distinct=True, filter=Q(source="fallback") | ~Q(fallback_reason="")
                    ),
                    impressions=Sum("n_items"),
                    first_seen_at=Min("created_at"),
                    last_seen_at=Max("created_at"),
                )
                .order_by()
            )
            for page_row in served:
                values: dict[str, Any] = dict(page_row)
                values["impressions"] = values["impressions"] or 0
                served_sums[(values["variant_id"], values["customer_shop_id"])] = values
            attributed = (
                Attribution.objects.filter(
                    experiment_id=experiment.pk, customer_shop_id__in=chunk, variant_id__in=variant_ids
                )
                .values("variant_id", "customer_shop_id")
                .annotate(
                    clicks=Count("pk", filter=Q(type="click")),
                    add_to_carts=Count("pk", filter=Q(type="add_to_cart")),
                    purchases=Count("pk", filter=Q(type="purchase")),
                    revenue=Sum("revenue"),
                )
                .order_by()
            )
            for event_row in attributed:
                row: dict[str, Any] = dict(event_row)
                # No pages (deleted from the log): keep what the events say.
                found = served_sums.setdefault(
                    (row["variant_id"], row["customer_shop_id"]),
                    {"variant_id": row["variant_id"], "customer_shop_id": row["customer_shop_id"]},
                )
                found.update(
                    clicks=row["clicks"],
                    add_to_carts=row["add_to_carts"],
                    purchases=row["purchases"],
                    revenue=row["revenue"] or Decimal(0),
                )
            sums = [CustomerSums(**values) for values in served_sums.values()]
            written += experiment_customers_upsert(experiment=experiment, rows=sums)
    return written


# --- the pipeline ----------------------------------------------------------------------------------


@dataclass
class RefreshResult:
    drained: int = 0
    direct: int = 0
    window: int = 0
    hours: int = 0
    rows: int = 0
    experiment_customers: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def metrics_refresh(*, drain: bool = True) -> RefreshResult:
    """Drain the served log, then attribute new events and roll up every hour they or newly written
    pages touched, then refresh the experiments' per-customer table. Safe to run concurrently (the
    bookmark row is locked) and to re-run (see the module)."""
    began = time.perf_counter()
    result = RefreshResult()
    start = timezone.now()
    if drain:
        from recadmin.serving.served_log import served_log_drain

        try:
            result.drained = served_log_drain()
        except Exception:  # the database refused a batch; it went back to the buffer
            logger.exception("metrics: draining the served log failed; rolling up what is written")
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(key="default")
        since = (state.events_read_until or EPOCH) - EVENTS_LOOKBACK
        attributed = attribution_run(since=since)
        result.direct, result.window = attributed.direct, attributed.window

        hours = set(attributed.hours)
        pairs = set(attributed.experiment_customers)
        pages = ServedRecommendation.objects.all()
        # Pages below the bookmark that were committed after the last run (a concurrent drain's
        # transaction): the count of the last run's checked id range has changed.
        low, high = state.served_check_low, state.served_read_id
        late = high > 0 and pages.filter(id__gt=low, id__lte=high).count() != state.served_check_count
        newest_id = state.served_read_id
        fields = ("id", "created_at", "experiment_id", "customer_shop_id")
        for page_id, created, experiment_id, customer in (
            pages.filter(id__gt=low if late else high).values_list(*fields).iterator(chunk_size=10000)
        ):
            hours.add(hour_of(created))
            newest_id = max(newest_id, page_id)
            if experiment_id is not None and customer:
                pairs.add((experiment_id, customer))
        state.served_check_low = max(0, newest_id - SERVED_ID_LOOKBACK)
        state.served_check_count = pages.filter(id__gt=state.served_check_low, id__lte=newest_id).count()
        result.hours = len(hours)
        result.rows = rollups_recompute(hours=hours) if hours else 0
        result.experiment_customers = experiment_customers_refresh(pairs=pairs) if pairs else 0

        state.events_read_until = start
        state.served_read_id = newest_id
        state.complete_until = start
        result.seconds = time.perf_counter() - began
        state.last_run_seconds = result.seconds
        state.save()
    return result


def metrics_rebuild(*, since: dt.datetime | None = None) -> RefreshResult:
    """Recompute everything from `since` (default: all history): attributions are kept, rollups of
    every hour with served pages are rebuilt. For a changed attribution window or a repaired log."""
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(key="default")
        state.events_read_until = since
        state.served_read_id = 0
        state.served_check_low = state.served_check_count = 0
        state.save()
    return metrics_refresh()
