"""Admin pages of metrics: the dashboard panels, and an experiment's report with charts."""

from __future__ import annotations

import math
from typing import Any, cast

from django.contrib import admin
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone

from recadmin.core.charts import bar_chart, line_chart
from recadmin.experiments import selectors as experiment_selectors
from recadmin.experiments.models import Experiment
from recadmin.experiments.params import METRIC_LABELS
from recadmin.metrics.dashboard import dashboard_panels, status_panel
from recadmin.metrics.selectors import rollup_state

REPORT_CACHE_SECONDS = 120


def _page(request: HttpRequest, title: str, panels: list[dict[str, Any]], intro: str = "") -> HttpResponse:
    rendered = [
        {**panel, "html": render_to_string(panel["template"], panel["context"], request=request)} for panel in panels
    ]
    context = {**admin.site.each_context(request), "title": title, "panels": rendered, "intro": intro}
    return render(request, "metrics/panels_page.html", context)


def dashboard_view(request: HttpRequest) -> HttpResponse:
    # The admin home shows the models, experiments and rules panels of their own apps beside these;
    # this page, the metrics alone, says what the numbers are the result of in one panel.
    return _page(request, "Recommendations dashboard", [*dashboard_panels(request), status_panel(timezone.now())])


def experiment_report_panels(experiment: Any) -> list[dict[str, Any]]:
    sums = experiment_selectors.variant_sums(experiment)
    report = experiment_selectors.experiment_report(experiment, sums=sums)
    variants = experiment_selectors.experiment_variants(experiment)
    metric = experiment.primary_metric
    label = METRIC_LABELS.get(metric, metric)
    values: list[float | None] = []
    intervals: list[tuple[float, float] | None] = []
    for variant in variants:
        estimate = experiment_selectors.metric_estimate(metric, sums.get(variant.pk, {}))
        value = estimate.value if math.isfinite(estimate.value) else None
        values.append(value)
        if value is not None and math.isfinite(estimate.variance):
            half = 1.96 * math.sqrt(max(estimate.variance, 0.0))
            intervals.append((value - half, value + half))
        else:
            intervals.append(None)
    names = [v.name for v in variants]
    percent = metric in ("ctr", "conversion_rate")
    panels: list[dict[str, Any]] = [
        {
            "title": "Verdict",
            "template": "metrics/panels/experiment_summary.html",
            "context": {"report": report},
            "width": "full",
        },
        {
            "title": f"{label} per variant (95 % interval, customers as the unit)",
            "template": "metrics/panels/chart.html",
            "context": {
                "svg": bar_chart(names, {label: values}, errors={label: intervals}, percent=percent, y_label=label)
            },
            "width": "half",
        },
        {
            "title": "Customers per variant",
            "template": "metrics/panels/chart.html",
            "context": {
                "svg": bar_chart(
                    names, {"customers": [float(r["customers"]) for r in report["variants"]]}, y_label="customers"
                )
            },
            "width": "half",
        },
    ]
    history = report["allocation_history"]
    series: dict[str, list[tuple[Any, float | None]]] = {name: [] for name in names}
    for snapshot in history:
        for name in names:
            series[name].append((snapshot["at"], float(snapshot["weights"].get(name, 0.0))))
    if history:
        # Extend the last allocation to now, so a single snapshot still draws a line.
        from django.utils import timezone

        end = experiment.stopped_at or timezone.now()
        for name in names:
            series[name].append((end, series[name][-1][1]))
    panels.append(
        {
            "title": "Allocation history (share of customers per variant)",
            "template": "metrics/panels/chart.html",
            "context": {
                "svg": line_chart(series, y_label="share", percent=True, width=960),
                "note": f"{len(history)} allocation(s); Thompson sampling adds one each time it reweights.",
            },
            "width": "full",
        }
    )
    return panels


def experiment_report_panels_cached(experiment: Any) -> list[dict[str, Any]]:
    """The report's panels, cached until the next rollup run, Thompson reallocation or state change."""
    state = rollup_state()
    snapshot = experiment.allocations.order_by("-created_at", "-id").values_list("pk", flat=True).first()
    done = state.complete_until.timestamp() if state and state.complete_until else 0
    key = f"metrics:experiment-report:v2:{experiment.pk}:{experiment.status}:{snapshot}:{done}"
    # The cache's client ignores an outage (core.redis_breaker): a miss, then computed here.
    panels = cache.get_or_set(key, lambda: experiment_report_panels(experiment), REPORT_CACHE_SECONDS)
    return cast(list[dict[str, Any]], panels)


def experiment_report_view(request: HttpRequest, experiment_id: int) -> HttpResponse:
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None:
        raise Http404("No such experiment.")
    return _page(request, f"Experiment report: {experiment.name}", experiment_report_panels_cached(experiment))
