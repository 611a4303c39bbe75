"""The dashboard panel of modelops: the default model version and the last training run."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from recadmin.modelops.models import TrainingRun
from recadmin.modelops.selectors import model_version_default

SHOWN_METRICS = ["NDCG@10", "HR@10", "coverage@10"]


def models_panel(request: HttpRequest) -> list[dict[str, Any]]:
    default = model_version_default()
    run = TrainingRun.objects.defer("log_tail").order_by("-created_at", "-id").first()
    version: dict[str, Any] | None = None
    if default is not None:
        metrics = default.valid_metrics or {}
        version = {
            "label": str(default),
            "kind": default.get_kind_display(),
            "promoted_at": default.promoted_at,
            "metrics": [(name, metrics[name]) for name in SHOWN_METRICS if isinstance(metrics.get(name), int | float)],
            "url": reverse("admin:modelops_modelversion_change", args=[default.pk]),
        }
    last_run: dict[str, Any] | None = None
    if run is not None:
        last_run = {
            "id": run.pk,
            "kind": run.get_kind_display(),
            "status": run.status,
            "status_label": run.get_status_display(),
            "progress": round(float(run.progress or 0.0)),
            "stage": run.stage,
            "created_at": run.created_at,
            "finished_at": run.finished_at,
            "error": (run.error or "")[:300],
            "url": reverse("admin:modelops_trainingrun_change", args=[run.pk]),
        }
    return [
        {
            "title": "Model",
            "template": "admin/dashboard/models.html",
            "context": {
                "version": version,
                "run": last_run,
                "versions_url": reverse("admin:modelops_modelversion_changelist"),
                "train_url": reverse("admin:modelops_trainingrun_add"),
            },
            "width": "half",
        }
    ]
