"""The dashboard panel of experiments: the running ones with their current verdict."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from recadmin.experiments.models import ExperimentStatus
from recadmin.experiments.selectors import experiment_list, experiment_report

MAX_SHOWN = 5


def experiments_panel(request: HttpRequest) -> list[dict[str, Any]]:
    running = list(experiment_list(status=ExperimentStatus.RUNNING)[:MAX_SHOWN])
    rows: list[dict[str, Any]] = []
    for experiment in running:
        report = experiment_report(experiment)
        rows.append(
            {
                "name": experiment.name,
                "scenes": ", ".join(scene.slug for scene in experiment.scenes.all()),
                "metric": report["primary_metric"],
                "started_at": report["started_at"],
                "customers": sum(v["customers"] for v in report["variants"]),
                "verdict": report["verdict"],
                "srm_flag": report["srm_flag"],
                "guardrails_failing": [g["name"] for g in report["guardrails"]["variants"] if g["failures"]],
                "url": reverse("admin:experiments_experiment_change", args=[experiment.pk]),
            }
        )
    return [
        {
            "title": "Running experiments",
            "template": "admin/dashboard/experiments_running.html",
            "context": {"experiments": rows, "list_url": reverse("admin:experiments_experiment_changelist")},
            "width": "full",
        }
    ]
