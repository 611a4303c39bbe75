"""The full recompute of the rollups: given hours from scratch (`rollups_recompute`), or all of them
with the bookmarks moved to the newest page and attribution (`rollups_rebuild`, for
`metrics_rebuild`). Reads what the bookmarks say is counted, as the incremental path
(`rollups.rollups_update`) adds it, so both give the same rows (a test compares them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models.functions import TruncHour

from recadmin.metrics.models import (
    LATENCY_EDGES_MS,
    Attribution,
    DailyItem,
    HourlyDistinct,
    HourlyRollup,
    LatencyRollup,
    PositionRollup,
    RollupOpenHour,
    RollupPage,
    RollupState,
    RuleRollup,
)
from recadmin.metrics.services import rollups
from recadmin.metrics.services.common import _PAGE_FIELDS, SERVED_ID_LOOKBACK, hour_of
from recadmin.metrics.services.rollups import (
    _ATTRIBUTION_FIELDS,
    Counted,
    RollupsUpdate,
    _daily_items_add,
    _locked_state,
    _Sums,
)
from recadmin.serving.models import ServedRecommendation

# Every table keyed by the hour: emptied for the hours a full recompute writes.
_HOURLY_MODELS = (HourlyRollup, PositionRollup, RuleRollup, LatencyRollup, HourlyDistinct, RollupOpenHour)


@transaction.atomic
def rollups_recompute(*, hours: Iterable[dt.datetime]) -> int:
    """Recompute the hourly, position and rule rollups of these hours from scratch, from what the
    bookmarks say is counted (and add their items to the daily item sets); their distinct sets are
    dropped (read back when a page touches the hour again). Returns the hourly rows written."""
    counted = Counted.of(_locked_state())
    written = 0
    run: list[dt.datetime] = []
    # Runs of consecutive hours (at most a day each): one range scan of the served log per run.
    for hour in sorted({hour_of(h) for h in hours}):
        if run and (hour - run[-1] != dt.timedelta(hours=1) or len(run) >= 24):
            written += _recompute_hours(run, counted)
            run = []
        run.append(hour)
    if run:
        written += _recompute_hours(run, counted)
    return written


def rollups_rebuild(*, state: RollupState) -> RollupsUpdate:
    """Count every page and attribution: the bookmarks move to the newest, every rollup row is
    recomputed from scratch (the caller holds the state's lock, saves it and commits)."""
    result = RollupsUpdate()
    pages = ServedRecommendation.objects.all()
    newest = pages.order_by("-id").values_list("id", flat=True).first() or 0
    state.served_read_id = newest
    state.served_check_low = max(0, newest - SERVED_ID_LOOKBACK)
    state.attributions_read_id = Attribution.objects.order_by("-id").values_list("id", flat=True).first() or 0
    RollupPage.objects.all().delete()
    # The ledger first (what is visible now above the mark), then the sums read exactly those pages.
    recent = pages.filter(id__gt=state.served_check_low).values_list("id", flat=True)
    RollupPage.objects.bulk_create([RollupPage(page_id=i) for i in recent], batch_size=5000)
    state.save()
    for model in _HOURLY_MODELS:
        model.objects.all().delete()
    counted = Counted.of(state)
    hours = set(
        pages.filter(counted.pages())
        .annotate(h=TruncHour("created_at", tzinfo=dt.UTC))
        .values_list("h", flat=True)
        .distinct()
        .order_by()
    )
    attributed = Attribution.objects.filter(id__lte=counted.attributions_up_to)
    hours.update(attributed.values_list("served_hour", flat=True).distinct().order_by())
    result.rows = rollups_recompute(hours=hours)
    result.hours = {hour_of(h) for h in hours}
    for query in (pages.filter(counted.pages()), attributed):
        pairs = query.filter(experiment_id__isnull=False).exclude(customer_shop_id="")
        for experiment_id, customer in pairs.values_list("experiment_id", "customer_shop_id").distinct().order_by():
            if experiment_id is not None:
                result.experiment_customers.add((experiment_id, customer))
    return result


# Page-side sums of one group: lists, fallback lists, impressions, distinct customers, distinct items.
PageSums = dict[str, int]


def _page_sums_sql(
    hours: list[dt.datetime], counted: Counted
) -> tuple[dict[tuple[Any, ...], PageSums], dict[tuple[Any, ...], int], dict[tuple[Any, ...], list[int]]]:
    """The page side of the hours' rows, aggregated by PostgreSQL (an hour of a busy shop is tens of
    thousands of pages: only the sums cross the wire): (group sums, impressions per (hour, scene,
    position), per (hour, scene, rule) [lists, impressions, other impressions]); adds their items to
    the daily sets. The same sums as `_Sums.add_page` over the same pages (a test compares them)."""
    table = ServedRecommendation._meta.db_table
    hour = "date_trunc('hour', s.created_at)"
    dims = "s.scene, s.strategy, s.model_version_id, s.model_label, s.experiment_id, s.variant_id, s.source"
    where = (
        "s.created_at >= %s AND s.created_at < %s AND date_trunc('hour', s.created_at) = ANY(%s) "
        f"AND (s.id <= %s OR s.id IN (SELECT page_id FROM {RollupPage._meta.db_table}))"
    )
    start, end = min(hours), max(hours) + dt.timedelta(hours=1)
    params: list[Any] = [start, end, list(hours), counted.pages_up_to]
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


def _latency_sums_sql(hours: list[dt.datetime], counted: Counted) -> dict[tuple[Any, ...], int]:
    """The hours' latency histograms per experiment variant: width_bucket over the same edges gives
    the bucket `bisect_right` gives in `_Sums.add_page` (a test compares the two ways)."""
    table = ServedRecommendation._meta.db_table
    start, end = min(hours), max(hours) + dt.timedelta(hours=1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT date_trunc('hour', s.created_at), s.experiment_id, s.variant_id, "
            f"width_bucket(s.latency_ms, %s::float8[]), COUNT(*) FROM {table} s "
            "WHERE s.created_at >= %s AND s.created_at < %s AND date_trunc('hour', s.created_at) = ANY(%s) "
            f"AND (s.id <= %s OR s.id IN (SELECT page_id FROM {RollupPage._meta.db_table})) "
            "AND s.experiment_id IS NOT NULL AND s.variant_id IS NOT NULL GROUP BY 1, 2, 3, 4",
            [list(LATENCY_EDGES_MS), start, end, list(hours), counted.pages_up_to],
        )
        return {tuple(row[:4]): int(row[4]) for row in cursor.fetchall()}


def _recompute_hours(hours: list[dt.datetime], counted: Counted) -> int:
    sums = _Sums()
    # Read through the module: a test switches the SQL aggregation off there.
    if rollups.USE_SQL and connection.vendor == "postgresql":
        page_groups, page_positions, page_rules = _page_sums_sql(hours, counted)
        for (hour, *dims), page_sums in page_groups.items():
            sums.group(hour_of(hour), dims).update(
                lists=page_sums["lists"], fallback_lists=page_sums["fallback"], impressions=page_sums["impressions"],
                customers=page_sums["customers"], items=page_sums["items"],
            )  # fmt: skip
        for (hour, scene, position), count in page_positions.items():
            sums.positions[(hour_of(hour), scene, position)][0] = count
        for (hour, scene, rule), (lists, boosted, other) in page_rules.items():
            counts = sums.rules[(hour_of(hour), scene, rule)]
            counts[0], counts[1], counts[3] = lists, boosted, other
        for (hour, experiment_id, variant_id, bucket), n in _latency_sums_sql(hours, counted).items():
            sums.latency[(hour_of(hour), experiment_id, variant_id, bucket)] = n
    else:
        start, end = min(hours), max(hours) + dt.timedelta(hours=1)
        hour_set = set(hours)
        pages = (
            ServedRecommendation.objects.filter(created_at__gte=start, created_at__lt=end)
            .filter(counted.pages())
            .values(*_PAGE_FIELDS)
        )
        for page in pages.iterator(chunk_size=5000):
            if hour_of(page["created_at"]) in hour_set:
                sums.add_page(page)
        sums.count_members()
        _daily_items_add({row for rows in sums.daily.values() for row in rows})
    attributions = Attribution.objects.filter(served_hour__in=hours, id__lte=counted.attributions_up_to)
    for a in attributions.values(*_ATTRIBUTION_FIELDS).iterator(chunk_size=5000):
        sums.add_attribution(a)

    for model in _HOURLY_MODELS:
        model.objects.filter(hour__in=hours).delete()
    rows = [HourlyRollup(**g) for g in sums.groups.values()]
    HourlyRollup.objects.bulk_create(rows, batch_size=2000)
    LatencyRollup.objects.bulk_create(
        [
            LatencyRollup(hour=h, experiment_id=e, variant_id=v, bucket=b, pages=n)
            for (h, e, v, b), n in sums.latency.items()
        ],
        batch_size=2000,
    )
    PositionRollup.objects.bulk_create(
        [
            PositionRollup(hour=h, scene=s, position=p, impressions=c[0], clicks=c[1])
            for (h, s, p), c in sums.positions.items()
        ],
        batch_size=2000,
    )
    RuleRollup.objects.bulk_create(
        [
            RuleRollup(
                hour=h, scene=s, rule_id=r, lists=c[0], impressions=c[1], clicks=c[2], other_impressions=c[3],
                other_clicks=c[4],
            )
            for (h, s, r), c in sums.rules.items()
        ],
        batch_size=2000,
    )  # fmt: skip
    return len(rows)
