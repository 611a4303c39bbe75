"""Reads of the rollups: the metrics API, the rule and position reports, the dashboard, the lag."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from recadmin.catalog.models import Item
from recadmin.experiments import statistics
from recadmin.experiments.models import Variant
from recadmin.experiments.selectors import PageLatency
from recadmin.metrics.models import (
    LATENCY_EDGES_MS,
    DailyItem,
    HourlyRollup,
    LatencyRollup,
    PositionRollup,
    RollupState,
    RuleRollup,
)
from recadmin.rules.models import BusinessRule

GROUP_BY_CHOICES = ("day", "hour", "scene", "strategy", "model_version", "variant")
_SUMS = (
    "lists",
    "fallback_lists",
    "impressions",
    "clicks",
    "add_to_carts",
    "purchases",
    "revenue",
    "direct_attributions",
    "window_attributions",
)


def rollup_lag_seconds() -> float | None:
    """Seconds since the moment up to which the rollups are complete (None before the first run)."""
    state = RollupState.objects.filter(key="default").values_list("complete_until", flat=True).first()
    if state is None:
        return None
    return max(0.0, (timezone.now() - state).total_seconds())


def rollup_state() -> RollupState | None:
    return RollupState.objects.filter(key="default").first()


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _derived(row: dict[str, Any], active_items: int) -> dict[str, Any]:
    impressions, lists = row["impressions"] or 0, row["lists"] or 0
    revenue = row["revenue"] or Decimal(0)
    row["revenue"] = float(revenue)
    row["ctr"] = _ratio(row["clicks"], impressions)
    row["conversion_rate"] = _ratio(row["purchases"], lists)
    row["revenue_per_1000_impressions"] = _ratio(float(revenue) * 1000, impressions)
    row["fallback_share"] = _ratio(row["fallback_lists"], lists)
    items = row.pop("_items", None)
    row["items_served"] = items
    row["coverage"] = _ratio(items, active_items) if items is not None else None
    return row


def _variant_names() -> dict[int, str]:
    return {
        pk: f"{experiment}: {name}"
        for pk, name, experiment in Variant.objects.values_list("pk", "name", "experiment__name")
    }


def metrics_rows(
    *, since: dt.datetime, until: dt.datetime, scene: str | None = None, group_by: Sequence[str] = ("day",)
) -> list[dict[str, Any]]:
    """Rollup rows summed over [since, until) (hours the lists were served), grouped as asked."""
    query: QuerySet[HourlyRollup] = HourlyRollup.objects.filter(hour__gte=since, hour__lt=until)
    items_query: QuerySet[DailyItem] = DailyItem.objects.filter(
        day__gte=since.date(), day__lt=until.date() + dt.timedelta(days=1)
    )
    if scene:
        query = query.filter(scene=scene)
        items_query = items_query.filter(scene=scene)
    fields: list[str] = []
    item_fields: list[str] = []
    annotations: dict[str, Any] = {}
    if "day" in group_by:
        annotations["day"] = TruncDay("hour", tzinfo=dt.UTC)
        fields.append("day")
        item_fields.append("day")
    elif "hour" in group_by:
        fields.append("hour")
    for name, column in (
        ("scene", "scene"),
        ("strategy", "strategy"),
        ("model_version", "model_version_id"),
        ("variant", "variant_id"),
    ):
        if name in group_by:
            fields.append(column)
            item_fields.append("model_version_id" if column == "model_version_id" else column)
            if name == "model_version":
                fields.append("model_label")
    if annotations:
        query = query.annotate(**annotations)
    rows = list(query.values(*fields).annotate(**{s: Sum(s) for s in _SUMS}).order_by(*fields))

    # Coverage: distinct items over the whole group from the daily sets (hours: the hourly counts).
    items_by_key: dict[tuple[Any, ...], int] = {}
    hourly = "hour" in group_by and "day" not in group_by
    if not hourly:
        for r in items_query.values(*item_fields).annotate(n=Count("item", distinct=True)).order_by():
            key = tuple(_item_key(r, f) for f in item_fields)
            items_by_key[key] = r["n"]
    else:
        for r in query.values(*fields).annotate(n=Sum("items")).order_by():
            items_by_key[tuple(r[f] for f in fields)] = r["n"]

    active = Item.objects.filter(is_active=True).count()
    variants = _variant_names()
    out = []
    for row in rows:
        key = tuple(row[f] for f in fields) if hourly else tuple(_item_key(row, f) for f in item_fields)
        row["_items"] = items_by_key.get(key, 0)
        if "day" in row:
            row["day"] = row["day"].date().isoformat() if isinstance(row["day"], dt.datetime) else str(row["day"])
        if "model_version_id" in row:
            row["model_version"] = row.pop("model_version_id")
        if "variant_id" in row:
            variant = row.pop("variant_id")
            row["variant"] = variant
            row["variant_name"] = variants.get(variant) if variant is not None else None
        out.append(_derived(row, active))
    return out


def _item_key(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if name == "day":
        return value.date() if isinstance(value, dt.datetime) else value
    if name in ("model_version_id", "variant_id"):
        return value or 0
    return value


def rule_rows(*, since: dt.datetime, until: dt.datetime, scene: str | None = None) -> list[dict[str, Any]]:
    """Per rule: CTR of the items it boosted or pinned against the other items of the same lists."""
    query = RuleRollup.objects.filter(hour__gte=since, hour__lt=until)
    if scene:
        query = query.filter(scene=scene)
    sums = (
        query.values("rule_id")
        .annotate(
            lists=Sum("lists"),
            impressions=Sum("impressions"),
            clicks=Sum("clicks"),
            other_impressions=Sum("other_impressions"),
            other_clicks=Sum("other_clicks"),
        )
        .order_by("rule_id")
    )
    names = dict(BusinessRule.objects.values_list("pk", "name"))
    rows = []
    for r in sums:
        ctr = _ratio(r["clicks"], r["impressions"])
        other = _ratio(r["other_clicks"], r["other_impressions"])
        rows.append(
            {
                "rule": r["rule_id"],
                "name": names.get(r["rule_id"]),
                "lists": r["lists"],
                "impressions": r["impressions"],
                "clicks": r["clicks"],
                "ctr": ctr,
                "other_impressions": r["other_impressions"],
                "other_clicks": r["other_clicks"],
                "other_ctr": other,
                "ctr_lift": (ctr / other - 1) if ctr is not None and other else None,
            }
        )
    return rows


def position_rows(*, since: dt.datetime, until: dt.datetime, scene: str | None = None) -> list[dict[str, Any]]:
    """Per scene and position: impressions, clicks, CTR (the position-bias curve)."""
    query = PositionRollup.objects.filter(hour__gte=since, hour__lt=until)
    if scene:
        query = query.filter(scene=scene)
    sums = (
        query.values("scene", "position")
        .annotate(impressions=Sum("impressions"), clicks=Sum("clicks"))
        .order_by("scene", "position")
    )
    return [{**r, "ctr": _ratio(r["clicks"], r["impressions"])} for r in sums]


def period_totals(*, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Totals of one period (the dashboard's comparison cards)."""
    return periods_totals(periods=[(since, until)])[0]


def periods_totals(*, periods: Sequence[tuple[dt.datetime, dt.datetime]]) -> list[dict[str, Any]]:
    """Totals of each [since, until) period, in one scan of the rollups (the dashboard compares six)."""
    if not periods:
        return []
    query = HourlyRollup.objects.filter(hour__gte=min(s for s, _ in periods), hour__lt=max(u for _, u in periods))
    sums = query.aggregate(
        **{
            f"{s}_{n}": Sum(s, filter=Q(hour__gte=since, hour__lt=until))
            for n, (since, until) in enumerate(periods)
            for s in _SUMS
        }
    )
    out = []
    for n in range(len(periods)):
        row: dict[str, Any] = {s: (sums[f"{s}_{n}"] or 0) for s in _SUMS}
        row["_items"] = None
        out.append(_derived(row, 0))
    return out


def series(*, since: dt.datetime, until: dt.datetime, by: str, bucket: str = "hour") -> dict[str, Any]:
    """{"buckets": [datetimes], "series": {name: {"lists", "clicks", "impressions"} per bucket}} over
    time, split by "scene" or "model_version" (the dashboard's charts)."""
    query = HourlyRollup.objects.filter(hour__gte=since, hour__lt=until)
    time_field = "hour"
    if bucket == "day":
        query = query.annotate(bucket=TruncDay("hour", tzinfo=dt.UTC))
        time_field = "bucket"
    column = "scene" if by == "scene" else "model_label"
    rows = (
        query.values(time_field, column)
        .annotate(lists=Sum("lists"), clicks=Sum("clicks"), impressions=Sum("impressions"), revenue=Sum("revenue"))
        .order_by(time_field)
    )
    out: dict[str, dict[dt.datetime, dict[str, Any]]] = {}
    for r in rows:
        name = r[column] or ("(no scene)" if by == "scene" else "fallback / none")
        out.setdefault(name, {})[r[time_field]] = r
    return {"series": out}


def variant_latency_quantiles(experiment_id: int, variant_ids: Sequence[int], q: float) -> dict[int, PageLatency]:
    """variant id -> its rolled-up pages in the experiment and their latency q-quantile (ms), from the
    latency histogram (within 2 % of the exact quantile; registered as the experiments report's
    reader by MetricsConfig.ready). Its cost does not grow with the pages: a few hundred rows a variant."""
    counts: dict[int, dict[int, int]] = {variant_id: {} for variant_id in variant_ids}
    rows = (
        LatencyRollup.objects.filter(experiment_id=experiment_id, variant_id__in=list(variant_ids))
        .values("variant_id", "bucket")
        .annotate(n=Sum("pages"))
        .values_list("variant_id", "bucket", "n")
        .order_by()
    )
    for variant_id, bucket, n in rows:
        counts[variant_id][bucket] = int(n or 0)
    return {
        variant_id: PageLatency(sum(buckets.values()), statistics.histogram_quantile(LATENCY_EDGES_MS, buckets, q))
        for variant_id, buckets in counts.items()
    }
