"""Celery tasks of the model lifecycle. Routed to the `training` queue (settings.CELERY_TASK_ROUTES).

The task bodies import the pipeline (and so torch) lazily: the web process imports this module to
enqueue, and must stay torch-free.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from recadmin.core.errors import ServiceUnavailable
from recadmin.modelops.models import TrainingRun, TrainingRunStatus, TrainingStage

logger = logging.getLogger(__name__)

TRAIN_MAX_RETRIES = 3
# A training run may take hours on a big shop; the soft limit lets the pipeline clean up first.
TRAIN_SOFT_TIME_LIMIT = getattr(settings, "TRAINING_SOFT_TIME_LIMIT", 3 * 3600)
TRAIN_TIME_LIMIT = TRAIN_SOFT_TIME_LIMIT + 300


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=TRAIN_SOFT_TIME_LIMIT,
    time_limit=TRAIN_TIME_LIMIT,
    max_retries=TRAIN_MAX_RETRIES,
    name="recadmin.modelops.tasks.train_model",
)
def train_model(self: Any, run_id: int) -> dict[str, Any]:
    """Run training run `run_id` end to end. Retries only when TorchServe is transiently
    unavailable while registering (the archive is reused); every other failure ends the run."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        logger.warning("train_model: training run %s does not exist (deleted?)", run_id)
        return {"run": run_id, "status": "missing"}
    if self.request.id and run.celery_task_id != self.request.id:
        TrainingRun.objects.filter(pk=run_id).update(celery_task_id=self.request.id)

    from recadmin.modelops.pipeline import execute

    # In-process (eager) runs have no worker to come back later: they fail at once instead.
    retries_left = not self.request.is_eager and self.request.retries < self.max_retries
    try:
        run = execute(run=run, retry_transient=retries_left)
    except ServiceUnavailable as exc:
        countdown = min(600, 30 * 2**self.request.retries)
        logger.warning("train_model %s: %s; retry in %ss", run_id, exc.message, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc
    except SoftTimeLimitExceeded:
        TrainingRun.objects.filter(pk=run_id).exclude(
            status__in=[TrainingRunStatus.SUCCEEDED, TrainingRunStatus.CANCELLED]
        ).update(
            status=TrainingRunStatus.FAILED,
            error=f"The run exceeded its time limit of {TRAIN_SOFT_TIME_LIMIT}s.",
            failed_stage=TrainingStage.TRAINING,
            finished_at=timezone.now(),
        )
        raise
    return {"run": run.pk, "status": run.status, "error": run.error}


@shared_task(
    bind=True,
    acks_late=True,
    soft_time_limit=900,
    time_limit=960,
    max_retries=5,
    name="recadmin.modelops.tasks.sync_torchserve",
)
def sync_torchserve(self: Any) -> dict[str, Any]:
    """Register again in TorchServe every live version it lacks (after a TorchServe restart)."""
    from recadmin.modelops.services import models_sync_torchserve

    try:
        report = models_sync_torchserve()
    except ServiceUnavailable as exc:
        raise self.retry(exc=exc, countdown=min(300, 10 * 2**self.request.retries)) from exc
    return {"registered": report.registered, "failed": report.failed, "default": report.default_set}


@shared_task(name="recadmin.modelops.tasks.scheduled_training")
def scheduled_training(kind: str = "sasrec", params: dict[str, Any] | None = None, model_name: str = "") -> int:
    """What the nightly PeriodicTask calls: record a run and start it (a run per night, visible in
    the admin like any other)."""
    from recadmin.modelops.services import training_run_create

    run = training_run_create(kind=kind, params=params or {}, model_name=model_name or None, trigger="schedule")
    return run.pk
