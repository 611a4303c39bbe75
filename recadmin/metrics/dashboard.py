"""The merchandiser's dashboard panels, for the admin home page (settings.RECADMIN_DASHBOARD_PANELS)
and for /admin/metrics/dashboard/.

Each panel is {"title", "template", "context", "width": "full" | "half"}: the template renders with
the context alone (`render_to_string(panel["template"], panel["context"])`). Everything comes from
the rollups (a few indexed aggregate queries), charts are server-side SVG (core.charts).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from django.core.cache import cache
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from recadmin.core.charts import bar_chart, line_chart
from recadmin.experiments.models import Experiment, ExperimentStatus
from recadmin.experiments.selectors import experiment_report
from recadmin.metrics import selectors
from recadmin.modelops.models import ModelVersion, ModelVersionStatus, TrainingRun
from recadmin.rules.models import BusinessRule

# An upper bound: a new rollup run changes the key anyway.
DASHBOARD_CACHE_SECONDS = 120
PERIODS = (
    ("Last 24 h", dt.timedelta(hours=24)),
    ("Last 7 days", dt.timedelta(days=7)),
    ("Last 30 days", dt.timedelta(days=30)),
)
CARDS = (
    ("Lists served", "lists", "count"),
    ("CTR", "ctr", "percent"),
    ("Conversion (purchases per list)", "conversion_rate", "percent"),
    ("Revenue from recommendations", "revenue", "money"),
    ("Fallback share", "fallback_share", "percent"),
)


def _format(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "percent":
        return f"{value * 100:.2f} %"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _change(now: Any, before: Any) -> str:
    if now is None or before is None or not before:
        return ""
    change = (now - before) / abs(before) * 100
    return f"{'+' if change >= 0 else '-'}{abs(change):.1f} %"


def comparison_panel(now: dt.datetime) -> dict[str, Any]:
    rows = []
    periods: list[dict[str, Any]] = []
    ranges = [r for _, length in PERIODS for r in ((now - length, now), (now - 2 * length, now - length))]
    totals = selectors.periods_totals(periods=ranges)
    for n, (label, _) in enumerate(PERIODS):
        periods.append({"label": label, "current": totals[2 * n], "previous": totals[2 * n + 1]})
    for title, key, kind in CARDS:
        cells = []
        for period in periods:
            value, before = period["current"][key], period["previous"][key]
            cells.append(
                {"value": _format(value, kind), "previous": _format(before, kind), "change": _change(value, before)}
            )
        rows.append({"title": title, "cells": cells})
    return {
        "title": "Recommendations: this period against the one before",
        "template": "metrics/panels/comparison.html",
        "context": {"periods": [p["label"] for p in periods], "rows": rows},
        "width": "full",
    }


def _over_time(data: dict[str, Any], metric: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, points in sorted(data.items()):
        values = []
        for moment, r in sorted(points.items()):
            if metric == "ctr":
                values.append((moment, r["clicks"] / r["impressions"] if r["impressions"] else None))
            else:
                values.append((moment, float(r[metric] or 0)))
        out[name] = values
    return out


def chart_panel(title: str, svg: Any, *, width: str = "half", note: str = "") -> dict[str, Any]:
    return {
        "title": title,
        "template": "metrics/panels/chart.html",
        "context": {"svg": svg, "note": note},
        "width": width,
    }


def status_panel(now: dt.datetime) -> dict[str, Any]:
    """The default model and the last training run, running experiments with their verdict, rules
    active now: what the numbers above are the result of."""
    defaults = list(ModelVersion.objects.filter(status=ModelVersionStatus.DEFAULT).order_by("name"))
    last_run = TrainingRun.objects.order_by("-created_at", "-id").first()
    state = selectors.rollup_state()
    done = state.complete_until.timestamp() if state and state.complete_until else 0

    def verdict(e: Experiment) -> str:
        # The report changes with a rollup run, a reallocation or a state change: cached until then
        # (its aggregate over the experiment's customers is most of this panel's time).
        snapshot = e.allocations.order_by("-created_at", "-id").values_list("pk", flat=True).first()
        key = f"metrics:experiment-verdict:v1:{e.pk}:{e.status}:{snapshot}:{done}"
        return cast(str, cache.get_or_set(key, lambda: experiment_report(e)["verdict"], DASHBOARD_CACHE_SECONDS))

    experiments = [
        {"experiment": e, "verdict": verdict(e)}
        for e in Experiment.objects.filter(status=ExperimentStatus.RUNNING).order_by("started_at")[:5]
    ]
    rules = list(
        BusinessRule.objects.filter(enabled=True)
        .filter(Q(valid_from__isnull=True) | Q(valid_from__lte=now))
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        .order_by("name")[:10]
    )
    week = selectors.period_totals(since=now - dt.timedelta(days=7), until=now)
    return {
        "title": "Now: models, experiments, rules",
        "template": "metrics/panels/status.html",
        "context": {
            "defaults": defaults,
            "last_run": last_run,
            "experiments": experiments,
            "rules": rules,
            "direct": week["direct_attributions"],
            "window": week["window_attributions"],
        },
        "width": "half",
    }


def dashboard_panels(request: HttpRequest | None = None) -> list[dict[str, Any]]:
    """The panels, cached until the next rollup run (they show nothing newer before it)."""
    state = selectors.rollup_state()
    key = f"metrics:dashboard:v1:{state.complete_until.timestamp() if state and state.complete_until else 0}"
    # The cache's client ignores an outage (core.redis_breaker): a miss, then computed here.
    cached = cache.get_or_set(key, lambda: dashboard_panels_build(), DASHBOARD_CACHE_SECONDS)
    return [*cast(list[dict[str, Any]], cached), freshness_panel(state)]


def freshness_panel(state: Any) -> dict[str, Any]:
    return {
        "title": "Data freshness",
        "template": "metrics/panels/freshness.html",
        "context": {"state": state, "lag": selectors.rollup_lag_seconds()},
        "width": "half",
    }


def dashboard_panels_build() -> list[dict[str, Any]]:
    now = timezone.now()
    two_days, week = dt.timedelta(hours=48), dt.timedelta(days=7)
    panels = [comparison_panel(now)]
    per_scene = selectors.series(since=now - two_days, until=now, by="scene", bucket="hour")["series"]
    per_version = selectors.series(since=now - week, until=now, by="model_version", bucket="day")["series"]
    panels.append(
        chart_panel(
            "Lists served per scene (48 h, hourly)", line_chart(_over_time(per_scene, "lists"), y_label="lists")
        )
    )
    panels.append(
        chart_panel(
            "CTR per scene (48 h, hourly)",
            line_chart(_over_time(per_scene, "ctr"), y_label="CTR", percent=True),
        )
    )
    panels.append(
        chart_panel(
            "CTR per model version (7 days, daily)",
            line_chart(_over_time(per_version, "ctr"), y_label="CTR", percent=True),
        )
    )
    panels.append(
        chart_panel(
            "Revenue per model version (7 days, daily)",
            line_chart(_over_time(per_version, "revenue"), y_label="revenue"),
        )
    )
    positions = selectors.position_rows(since=now - week, until=now)
    shown = sorted({r["position"] for r in positions if r["position"] < 20})
    by_scene: dict[str, dict[int, float | None]] = {}
    for r in positions:
        by_scene.setdefault(r["scene"] or "(no scene)", {})[r["position"]] = r["ctr"]
    panels.append(
        chart_panel(
            "CTR by position (7 days): the position-bias curve",
            bar_chart(
                [str(p + 1) for p in shown],
                {scene: [ctrs.get(p) for p in shown] for scene, ctrs in sorted(by_scene.items())},
                y_label="CTR",
                percent=True,
                width=960,
            ),
            width="full",
            note="Position 1 is the top of the list.",
        )
    )
    rules = selectors.rule_rows(since=now - week, until=now)
    if rules:
        panels.append(
            {
                "title": "Rules: CTR of boosted / pinned items against the rest of their lists (7 days)",
                "template": "metrics/panels/rules.html",
                "context": {"rows": rules[:20]},
                "width": "full",
            }
        )
    return panels
