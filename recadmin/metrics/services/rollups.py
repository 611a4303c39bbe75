"""Hourly, position and rule rollups and the daily item sets.

Idempotence: rollup rows are keyed by the hour the list was served and each touched hour is
recomputed whole from `ServedRecommendation` and `Attribution`, in one transaction; attributions and
the daily item sets are insert-if-absent. A late event changes its list's hour, which is recomputed.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from recadmin.metrics.models import (
    Attribution,
    AttributionMethod,
    DailyItem,
    HourlyRollup,
    PositionRollup,
    RuleRollup,
)
from recadmin.metrics.services.common import _PAGE_FIELDS, hour_of
from recadmin.serving.models import ServedRecommendation

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
