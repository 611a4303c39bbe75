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

from recadmin.celery import app
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


_sync_state = {"reachable": True}


@shared_task(
    acks_late=True,
    soft_time_limit=900,
    time_limit=960,
    name="recadmin.modelops.tasks.sync_torchserve",
)
def sync_torchserve() -> dict[str, Any]:
    """Register again in TorchServe every live version it lacks (after a TorchServe restart), and
    unload what the registry does not serve. Runs every few seconds: no retries (the next run is the
    retry), and one log line when TorchServe goes away or comes back, not one per run."""
    from recadmin.modelops.services import models_sync_torchserve

    try:
        report = models_sync_torchserve()
    except ServiceUnavailable as exc:
        if _sync_state["reachable"]:
            logger.warning("TorchServe sync: TorchServe unavailable (%s); retrying every few seconds", exc.message)
        _sync_state["reachable"] = False
        return {"reachable": False, "error": exc.message}
    if not _sync_state["reachable"]:
        logger.info("TorchServe sync: TorchServe answers again; %s", report.summary())
    _sync_state["reachable"] = True
    return {
        "reachable": True,
        "registered": report.registered,
        "failed": report.failed,
        "default": report.default_set,
        "unloaded": report.unloaded,
    }


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360, name="recadmin.modelops.tasks.sweep_stale_runs")
def sweep_stale_runs() -> dict[str, Any]:
    """Fail training runs whose process stopped sending heartbeats; remove leftover working directories."""
    from recadmin.modelops.recovery import training_runs_sweep_stale

    return training_runs_sweep_stale().as_dict()


SWEEP_EVERY_SECONDS = 60.0


@app.on_after_finalize.connect
def _schedule(sender: Any, **kwargs: Any) -> None:
    # Beat copies these into django-celery-beat's tables (editable in the admin); the in-process
    # scheduler runs the same entries without beat.
    sender.add_periodic_task(
        SWEEP_EVERY_SECONDS, sweep_stale_runs.s(), name="modelops: fail stale training runs", options={"expires": 50}
    )


@shared_task(name="recadmin.modelops.tasks.scheduled_training")
def scheduled_training(kind: str = "sasrec", params: dict[str, Any] | None = None, model_name: str = "") -> int:
    """What the nightly PeriodicTask calls: record a run and start it (a run per night, visible in
    the admin like any other)."""
    from recadmin.modelops.services import training_run_create

    run = training_run_create(kind=kind, params=params or {}, model_name=model_name or None, trigger="schedule")
    return run.pk
