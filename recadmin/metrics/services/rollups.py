"""Hourly, position and rule rollups, the distinct sets behind them and the daily item sets.

What is counted is what the bookmarks say (`RollupState`): the served pages with an id up to
`served_check_low` or in the `RollupPage` ledger, and the attributions with an id up to
`attributions_read_id`. Two ways lead to the same rows (a test compares them on the same data):

  * incremental (`rollups_update`, every minute): only what is not counted yet. Additive counters
    (lists' impressions, clicks, add-to-carts, purchases, revenue, attributions by method, position and
    rule counts) are upserted (`x = x + EXCLUDED.x`, one statement on PostgreSQL and SQLite alike);
    distinct counts (customers, items, lists, fallback lists) stay exact through the recent hours'
    sets in `HourlyDistinct`: the new pages' members are inserted if absent, and those actually
    inserted (RETURNING, on PostgreSQL) are the increments; SQLite counts the touched rows' sets. An
    hour without sets (older than `DISTINCT_SETS_HOURS`, or after a full recompute) is read back
    from the served log the first time a page touches it again, and its touched rows counted. On
    PostgreSQL the new pages' items are expanded by the database, with the full recompute's
    expressions;
  * full (`recompute.rollups_recompute` of given hours, `rollups_rebuild` of all): the hours from
    scratch.

Both run under the `RollupState` row's lock and in the caller's transaction: a run is all or nothing,
so a re-run never counts twice. A late event adds to its list's hour, whatever the hour.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from recadmin.metrics.models import (
    LATENCY_EDGES_MS,
    Attribution,
    AttributionMethod,
    DailyItem,
    DistinctKind,
    HourlyDistinct,
    HourlyRollup,
    LatencyRollup,
    PositionRollup,
    RollupOpenHour,
    RollupPage,
    RollupState,
    RuleRollup,
)
from recadmin.metrics.services.common import _PAGE_FIELDS, SERVED_ID_LOOKBACK, _chunks, hour_of, ledger_advance
from recadmin.serving.models import ServedRecommendation

_DIMS = ("scene", "strategy", "model_version_id", "model_label", "experiment_id", "variant_id", "source")
# Hours (the current one included) whose distinct sets are kept: pages reach the database within a
# minute or two of being served, so older hours rarely get one (and are then read back once).
DISTINCT_SETS_HOURS = 3
# Served pages read per step of a catch-up (the first run, or after a long stop).
_PAGE_BATCH = 5000
# SQL aggregation of the served log needs PostgreSQL's jsonb functions; elsewhere pages are read.
USE_SQL = True
# Additive columns of an hourly row (the distinct counts grow by the members new to their sets).
_ADDITIVE = (
    "impressions",
    "clicks",
    "add_to_carts",
    "purchases",
    "revenue",
    "direct_attributions",
    "window_attributions",
)
_DISTINCT = {
    DistinctKind.LIST: "lists",
    DistinctKind.FALLBACK: "fallback_lists",
    DistinctKind.CUSTOMER: "customers",
    DistinctKind.ITEM: "items",
}
_ATTRIBUTION_FIELDS = (
    "id",
    "type",
    "method",
    "served_hour",
    "position",
    "rules",
    "page_rules",
    "revenue",
    "customer_shop_id",
    *_DIMS,
)


def group_key(hour: dt.datetime, dims: Sequence[Any]) -> str:
    """The hourly row's key: a digest of its hour and dimensions (stable across processes and
    databases; migration 0002 keeps a copy)."""
    payload = json.dumps([hour_of(hour).strftime("%Y-%m-%dT%H"), *dims], separators=(",", ":"))
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Counted:
    """Which pages and attributions the rollups hold (read from `RollupState`)."""

    pages_up_to: int
    attributions_up_to: int

    def pages(self) -> Q:
        return Q(id__lte=self.pages_up_to) | Q(id__in=RollupPage.objects.values("page_id"))

    @classmethod
    def of(cls, state: RollupState) -> Counted:
        return cls(pages_up_to=state.served_check_low, attributions_up_to=state.attributions_read_id)


def _locked_state() -> RollupState:
    state, _ = RollupState.objects.select_for_update().get_or_create(key="default")
    return state


def _is_fallback(page: dict[str, Any]) -> bool:
    return page["source"] == "fallback" or bool(page["fallback_reason"])


class _Sums:
    """Sums of pages and attributions per hourly row, position and rule, and the members of the
    rows' distinct sets: the increment of a run, or (full recompute) whole hours."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.positions: dict[tuple[dt.datetime, str, int], list[int]] = defaultdict(lambda: [0, 0])
        self.rules: dict[tuple[dt.datetime, str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self.members: dict[dt.datetime, set[tuple[str, str, str]]] = defaultdict(set)
        self.daily: dict[dt.datetime, set[tuple[Any, ...]]] = defaultdict(set)  # the day item rows, per hour
        self.paged: set[str] = set()  # rows whose distinct sets changed
        self.latency: dict[tuple[dt.datetime, int, int, int], int] = defaultdict(int)

    def group(self, hour: dt.datetime, dims: Sequence[Any]) -> dict[str, Any]:
        key = group_key(hour, dims)
        found = self.groups.get(key)
        if found is None:
            found = self.groups[key] = {
                "group_key": key, "hour": hour, **dict(zip(_DIMS, dims, strict=True)),
                "lists": 0, "fallback_lists": 0, "customers": 0, "items": 0, "impressions": 0, "clicks": 0,
                "add_to_carts": 0, "purchases": 0, "revenue": Decimal(0), "direct_attributions": 0,
                "window_attributions": 0,
            }  # fmt: skip
        return found

    def add_page(self, page: dict[str, Any], *, items: bool = True) -> str:
        """Add a page (without `items`: all but what its items give, which the database sums);
        returns its row's key."""
        hour = hour_of(page["created_at"])
        g = self.group(hour, [page[d] for d in _DIMS])
        key = g["group_key"]
        self.paged.add(key)
        members = self.members[hour]
        rec = page["recommendation_id"]
        members.add((key, DistinctKind.LIST, rec))
        if _is_fallback(page):
            members.add((key, DistinctKind.FALLBACK, rec))
        if page["customer_shop_id"]:
            members.add((key, DistinctKind.CUSTOMER, page["customer_shop_id"]))
        g["impressions"] += page["n_items"]
        if page["experiment_id"] is not None and page["variant_id"] is not None:
            bucket = bisect_right(LATENCY_EDGES_MS, page["latency_ms"])
            self.latency[(hour, page["experiment_id"], page["variant_id"], bucket)] += 1
        if not items:
            return key
        day = hour.date()
        page_rules: dict[int, int] = defaultdict(int)
        for entry in page["items"] or []:
            if not isinstance(entry, dict):
                continue
            item = str(entry.get("item"))
            members.add((key, DistinctKind.ITEM, item))
            self.daily[hour].add(
                (day, page["scene"], page["strategy"], page["model_version_id"] or 0, page["variant_id"] or 0, item)
            )
            self.positions[(hour, page["scene"], int(entry.get("position") or 0))][0] += 1
            for rule in entry.get("rules") or ():
                page_rules[int(rule)] += 1
        for rule, boosted in page_rules.items():
            counts = self.rules[(hour, page["scene"], rule)]
            counts[0] += 1
            counts[1] += boosted
            counts[3] += page["n_items"] - boosted
        return key

    def add_attribution(self, a: dict[str, Any]) -> None:
        hour = hour_of(a["served_hour"])
        g = self.group(hour, [a[d] for d in _DIMS])
        if a["type"] == "click":
            g["clicks"] += 1
            self.positions[(hour, a["scene"], a["position"])][1] += 1
            # A click counts for each rule present on its page: for it when the clicked item carried it.
            clicked_rules = a["rules"] or []
            for rule in a["page_rules"] or []:
                self.rules[(hour, a["scene"], rule)][2 if rule in clicked_rules else 4] += 1
        elif a["type"] == "add_to_cart":
            g["add_to_carts"] += 1
        else:
            g["purchases"] += 1
            g["revenue"] += a["revenue"]
        g["direct_attributions" if a["method"] == AttributionMethod.DIRECT else "window_attributions"] += 1

    def count_members(self) -> None:
        """Distinct counts from the members gathered (full recompute: they are whole hours)."""
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for members in self.members.values():
            for key, kind, _ in members:
                counts[(key, kind)] += 1
        for (key, kind), n in counts.items():
            self.groups[key][_DISTINCT[DistinctKind(kind)]] = n


# --- writing ---------------------------------------------------------------------------------------


def _insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    conflict: Sequence[str],
    add: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT (conflict) DO UPDATE SET x = x + EXCLUDED.x for the `add` columns, or
    DO NOTHING without them (PostgreSQL and SQLite >= 3.24 alike; the rows come as arrays on the
    former, as a VALUES list on the latter). PostgreSQL returns the `returning` columns of the rows
    written (with DO NOTHING: the new ones)."""
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    fields = [cast("models.Field[Any, Any]", model._meta.get_field(c)) for c in columns]
    action = (
        "DO UPDATE SET " + ", ".join(f"{qn(c)} = {table}.{qn(c)} + EXCLUDED.{qn(c)}" for c in add)
        if add
        else "DO NOTHING"
    )
    names = ", ".join(qn(c) for c in columns)
    target = ", ".join(qn(c) for c in conflict)
    written: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array per column: the statement stays short however many rows (a long VALUES list
            # costs more to build and parse than to insert).
            arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
            back = f" RETURNING {', '.join(qn(c) for c in returning)}" if returning else ""
            statement = (
                f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT ({target}) {action}{back}"
            )
            for batch in _chunks(rows, 20000):
                params = [
                    [f.get_db_prep_value(v, connection) for v in column]
                    for f, column in zip(fields, zip(*batch, strict=True), strict=True)
                ]
                cursor.execute(statement, params)
                if returning:
                    written.extend(cursor.fetchall())
            return written
        placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
        per_statement = max(1, (connection.features.max_query_params or 999) // len(columns))
        for batch in _chunks(rows, per_statement):
            # The fields adapt each value as the ORM would (SQLite stores datetimes as naive UTC text).
            params = [f.get_db_prep_value(v, connection) for row in batch for f, v in zip(fields, row, strict=True)]
            values = ", ".join([placeholder] * len(batch))
            cursor.execute(f"INSERT INTO {table} ({names}) VALUES {values} ON CONFLICT ({target}) {action}", params)
    return written


_HOURLY_COLUMNS = ("group_key", "hour", *_DIMS, "lists", "fallback_lists", "customers", "items", *_ADDITIVE)


def _write_increment(sums: _Sums, counted: Counted, page_keys: list[tuple[int, str]] | None = None) -> None:
    """Add the pages' members to their hours' sets, then upsert the sums. With `page_keys` (PostgreSQL:
    (page id, row key) of pages added without their items), the database expands the items."""
    if page_keys:
        _items_expand(page_keys, sums)
    recount = _members_write(sums, counted, items_in_database=page_keys is not None) if sums.paged else set()
    _insert(
        HourlyRollup,
        _HOURLY_COLUMNS,
        ([g[c] for c in _HOURLY_COLUMNS] for g in sums.groups.values()),
        conflict=("group_key",),
        add=(*_ADDITIVE, *_DISTINCT.values()),
    )
    _insert(
        PositionRollup,
        ("hour", "scene", "position", "impressions", "clicks"),
        ((h, s, p, *c) for (h, s, p), c in sums.positions.items()),
        conflict=("hour", "scene", "position"),
        add=("impressions", "clicks"),
    )
    rule_counts = ("lists", "impressions", "clicks", "other_impressions", "other_clicks")
    _insert(
        RuleRollup,
        ("hour", "scene", "rule_id", *rule_counts),
        ((h, s, r, *c) for (h, s, r), c in sums.rules.items()),
        conflict=("hour", "scene", "rule_id"),
        add=rule_counts,
    )
    _insert(
        LatencyRollup,
        ("hour", "experiment_id", "variant_id", "bucket", "pages"),
        ((*k, n) for k, n in sums.latency.items()),
        conflict=("hour", "experiment_id", "variant_id", "bucket"),
        add=("pages",),
    )
    if recount:
        _distinct_recount(recount)


def _members_write(sums: _Sums, counted: Counted, *, items_in_database: bool) -> set[str]:
    """Insert the new members into their hours' sets. On PostgreSQL the members actually inserted
    come back: they are the increments of the distinct counts (a set only grows), put into `sums`.
    Returns the rows to count from their sets instead (an hour read back whole; SQLite)."""
    hours = set(sums.members)
    open_hours = set(RollupOpenHour.objects.filter(hour__in=hours).values_list("hour", flat=True))
    returning = connection.vendor == "postgresql"
    new: dict[tuple[str, str], int] = defaultdict(int)
    daily: set[tuple[Any, ...]] = set()
    recount: set[str] = set()
    for hour in sorted(hours):
        if hour not in open_hours:
            _distinct_read_back(hour, counted)  # the hour's members, this batch's included
            daily.update(sums.daily[hour])
            recount.update(key for key, _, _ in sums.members[hour])
        elif returning:
            # Only an item new to its hour's set can be new to the day's (every member already in a
            # set had its day row written when it was counted): the day rows of the new ones only.
            for key, kind, value in _members_add(hour, sums.members[hour], returning=True):
                new[(key, kind)] += 1
                if kind == DistinctKind.ITEM:
                    g = sums.groups[key]
                    daily.add(
                        (
                            hour.date(),
                            g["scene"],
                            g["strategy"],
                            g["model_version_id"] or 0,
                            g["variant_id"] or 0,
                            value,
                        )
                    )
        else:
            _members_add(hour, sums.members[hour])
            daily.update(sums.daily[hour])
            recount.update(key for key, _, _ in sums.members[hour])
    if items_in_database:
        for key, n in _items_members(sorted(hours & open_hours)):
            new[(key, DistinctKind.ITEM)] += n
    _daily_items_add(daily)
    for (key, kind), n in new.items():
        if key not in recount:
            sums.groups[key][_DISTINCT[DistinctKind(kind)]] += n
    return recount


_NEW_ITEMS = "metrics_new_items"


def _items_expand(page_keys: list[tuple[int, str]], sums: _Sums) -> None:
    """Expand the pages' items once into a scratch table (in the database: no item crosses the wire)
    and add what they give to `sums`: impressions per position, per rule lists, impressions and
    other impressions. The same expressions as `_page_sums_sql`, the full recompute's."""
    table = ServedRecommendation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_NEW_ITEMS} (group_key varchar(32), h timestamptz, scene text, "
            "strategy text, model_version_id bigint, variant_id bigint, page_id bigint, n_items integer, item text, "
            "position text, rules jsonb) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"DELETE FROM {_NEW_ITEMS}")  # an earlier batch of the same transaction
        cursor.execute(
            f"INSERT INTO {_NEW_ITEMS} SELECT k.group_key, date_trunc('hour', s.created_at), s.scene, s.strategy, "
            "s.model_version_id, s.variant_id, s.id, s.n_items, e->>'item', e->>'position', e->'rules' "
            f"FROM unnest(%s::bigint[], %s::varchar[]) AS k(page_id, group_key) JOIN {table} s ON s.id = k.page_id "
            "CROSS JOIN LATERAL jsonb_array_elements(s.items) e",
            [[page_id for page_id, _ in page_keys], [key for _, key in page_keys]],
        )
        cursor.execute(f"SELECT h, scene, COALESCE(position::int, 0), COUNT(*) FROM {_NEW_ITEMS} GROUP BY 1, 2, 3")
        for h, scene, position, count in cursor.fetchall():
            sums.positions[(hour_of(h), scene, position)][0] += count
        cursor.execute(
            "SELECT h, scene, rule, COUNT(*), SUM(boosted), SUM(n_items - boosted) FROM ("
            " SELECT h, scene, page_id, n_items, r::bigint AS rule, COUNT(*) AS boosted FROM "
            f"{_NEW_ITEMS} i CROSS JOIN LATERAL jsonb_array_elements_text(CASE WHEN jsonb_typeof(i.rules) = 'array'"
            " THEN i.rules ELSE '[]'::jsonb END) r"
            " WHERE r ~ '^[0-9]+$' GROUP BY 1, 2, 3, 4, 5) per_page GROUP BY h, scene, rule"
        )
        for h, scene, rule, lists, boosted, other in cursor.fetchall():
            counts = sums.rules[(hour_of(h), scene, rule)]
            counts[0] += lists
            counts[1] += int(boosted)
            counts[3] += int(other)


def _items_members(open_hours: list[dt.datetime]) -> list[tuple[str, int]]:
    """The expanded items into their open hours' sets and, for those new to a set (only they can be
    new to their day), the daily item sets; the other hours' sets were read back whole, so their
    items go to the daily sets as they are. Returns the items added per row key."""
    columns = "day, scene, strategy, model_version_id, variant_id, item"
    day_row = (
        "(date_trunc('day', t.h))::date, t.scene, t.strategy, COALESCE(t.model_version_id, 0), "
        "COALESCE(t.variant_id, 0), t.item"
    )
    daily = DailyItem._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new AS (INSERT INTO {HourlyDistinct._meta.db_table} (group_key, hour, kind, value) "
            f"SELECT DISTINCT group_key, h, %s, item FROM {_NEW_ITEMS} WHERE item IS NOT NULL AND h = ANY(%s) "
            "ON CONFLICT (group_key, kind, value) DO NOTHING RETURNING group_key, value), "
            f"days AS (INSERT INTO {daily} ({columns}) SELECT DISTINCT {day_row} FROM {_NEW_ITEMS} t "
            "JOIN new n ON n.group_key = t.group_key AND n.value = t.item ON CONFLICT DO NOTHING) "
            "SELECT group_key, COUNT(*) FROM new GROUP BY group_key",
            [str(DistinctKind.ITEM), open_hours],
        )
        added = [(key, int(n)) for key, n in cursor.fetchall()]
        cursor.execute(
            f"INSERT INTO {daily} ({columns}) SELECT DISTINCT {day_row} FROM {_NEW_ITEMS} t "
            "WHERE t.item IS NOT NULL AND NOT (t.h = ANY(%s)) ON CONFLICT DO NOTHING",
            [open_hours],
        )
    return added


def _members_add(
    hour: dt.datetime, members: Collection[tuple[str, str, str]], *, returning: bool = False
) -> list[tuple[Any, ...]]:
    """Insert the members absent from the sets; with `returning` (PostgreSQL), return those."""
    if connection.vendor == "postgresql":
        # Three text arrays and the hour once: the members of a busy minute are some 10,000 rows, and
        # adapting each value through its field costs more than the insert.
        keys, kinds, values = (list(column) for column in zip(*members, strict=True)) if members else ([], [], [])
        table = HourlyDistinct._meta.db_table
        back = " RETURNING group_key, kind, value" if returning else ""
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (group_key, hour, kind, value) SELECT k, %s, kd, v "
                "FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[]) AS m(k, kd, v) "
                f"ON CONFLICT (group_key, kind, value) DO NOTHING{back}",
                [hour, keys, [str(k) for k in kinds], values],
            )
            return [tuple(row) for row in cursor.fetchall()] if returning else []
    return _insert(
        HourlyDistinct,
        ("group_key", "hour", "kind", "value"),
        ((key, hour, kind, value) for key, kind, value in members),
        conflict=("group_key", "kind", "value"),
        returning=("group_key", "kind", "value") if returning else (),
    )


def _distinct_read_back(hour: dt.datetime, counted: Counted) -> None:
    """Fill the sets of an hour that has none from its counted pages in the served log (the pages of
    this run included: they are in the ledger already), and mark it complete. On PostgreSQL the
    items are expanded by the database (an hour can hold tens of thousands of pages)."""
    in_database = USE_SQL and connection.vendor == "postgresql"
    sums = _Sums()
    pages = (
        ServedRecommendation.objects.filter(created_at__gte=hour, created_at__lt=hour + dt.timedelta(hours=1))
        .filter(counted.pages())
        .values(*(f for f in _PAGE_FIELDS if f != "items" or not in_database))
    )
    page_keys = [(page["id"], sums.add_page(page, items=not in_database)) for page in pages.iterator(chunk_size=5000)]
    _members_add(hour, sums.members[hour])
    if in_database and page_keys:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {HourlyDistinct._meta.db_table} (group_key, hour, kind, value) "
                "SELECT DISTINCT k.group_key, %s, %s, e->>'item' FROM unnest(%s::bigint[], %s::varchar[]) "
                f"AS k(page_id, group_key) JOIN {ServedRecommendation._meta.db_table} s ON s.id = k.page_id "
                "CROSS JOIN LATERAL jsonb_array_elements(s.items) e WHERE e->>'item' IS NOT NULL "
                "ON CONFLICT (group_key, kind, value) DO NOTHING",
                [hour, str(DistinctKind.ITEM), [i for i, _ in page_keys], [k for _, k in page_keys]],
            )
    RollupOpenHour.objects.get_or_create(hour=hour)


def _distinct_recount(keys: set[str]) -> None:
    """Set the distinct counts of these rows from their sets (only the touched rows are counted)."""
    for chunk in _chunks(sorted(keys), 500):
        counts: dict[str, dict[str, int]] = {key: dict.fromkeys(_DISTINCT.values(), 0) for key in chunk}
        rows = (
            HourlyDistinct.objects.filter(group_key__in=chunk)
            .values_list("group_key", "kind")
            .annotate(n=models.Count("id"))
            .order_by()
        )
        for key, kind, n in rows:
            counts[key][_DISTINCT[DistinctKind(kind)]] = n
        objects = list(HourlyRollup.objects.filter(group_key__in=chunk).only("id", "group_key"))
        for row in objects:
            for name, n in counts[row.group_key].items():
                setattr(row, name, n)
        HourlyRollup.objects.bulk_update(objects, list(_DISTINCT.values()))


def _distinct_prune(now: dt.datetime) -> None:
    cutoff = hour_of(now) - dt.timedelta(hours=DISTINCT_SETS_HOURS - 1)
    if (
        RollupOpenHour.objects.filter(hour__lt=cutoff).exists()
        or HourlyDistinct.objects.filter(hour__lt=cutoff).exists()
    ):
        HourlyDistinct.objects.filter(hour__lt=cutoff).delete()
        RollupOpenHour.objects.filter(hour__lt=cutoff).delete()


# --- incremental -----------------------------------------------------------------------------------


@dataclass
class RollupsUpdate:
    pages: int = 0
    attributions: int = 0
    hours: set[dt.datetime] = field(default_factory=set)
    rows: int = 0
    experiment_customers: set[tuple[int, str]] = field(default_factory=set)


def rollups_update(*, state: RollupState) -> RollupsUpdate:
    """Add the served pages and attributions not counted yet to the rollups and move the bookmarks
    on `state` (the caller holds its lock, saves it and commits: all or nothing)."""
    result = RollupsUpdate()
    touched: set[str] = set()

    def note(sums: _Sums) -> None:
        result.hours.update(g["hour"] for g in sums.groups.values())
        touched.update(sums.groups)

    # Pages: above the low mark and not in the ledger. Into the ledger first, so that an hour read
    # back from the served log below sees them as counted.
    low = state.served_check_low
    newest = state.served_read_id
    in_database = USE_SQL and connection.vendor == "postgresql"  # the items expanded there
    new_pages = (
        ServedRecommendation.objects.filter(id__gt=low)
        .exclude(id__in=RollupPage.objects.values("page_id"))
        .order_by("id")
        .values(*(f for f in _PAGE_FIELDS if f != "items" or not in_database))
    )
    for batch in _chunks(new_pages.iterator(chunk_size=_PAGE_BATCH), _PAGE_BATCH):
        RollupPage.objects.bulk_create([RollupPage(page_id=p["id"]) for p in batch], batch_size=_PAGE_BATCH)
        sums = _Sums()
        page_keys = []
        for page in batch:
            page_keys.append((page["id"], sums.add_page(page, items=not in_database)))
            newest = max(newest, page["id"])
            if page["experiment_id"] is not None and page["customer_shop_id"]:
                result.experiment_customers.add((page["experiment_id"], page["customer_shop_id"]))
        counted = Counted(pages_up_to=low, attributions_up_to=state.attributions_read_id)
        _write_increment(sums, counted, page_keys if in_database else None)
        result.pages += len(batch)
        note(sums)

    # Attributions: written only under the state's lock, so every id up to the newest is committed.
    read_id = state.attributions_read_id
    new_attributions = Attribution.objects.filter(id__gt=read_id).order_by("id").values(*_ATTRIBUTION_FIELDS)
    for batch in _chunks(new_attributions.iterator(chunk_size=_PAGE_BATCH), _PAGE_BATCH):
        sums = _Sums()
        for a in batch:
            sums.add_attribution(a)
            read_id = max(read_id, a["id"])
            if a["experiment_id"] is not None and a["customer_shop_id"]:
                result.experiment_customers.add((a["experiment_id"], a["customer_shop_id"]))
        _write_increment(sums, Counted(pages_up_to=low, attributions_up_to=read_id))
        result.attributions += len(batch)
        note(sums)

    # The ledger keeps the last SERVED_ID_LOOKBACK ids: below them a page is taken as counted.
    state.served_read_id = newest
    state.served_check_low = ledger_advance(RollupPage, "page_id", low=low, newest=newest, lookback=SERVED_ID_LOOKBACK)
    state.attributions_read_id = read_id
    _distinct_prune(timezone.now())
    result.rows = len(touched)
    return result


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
