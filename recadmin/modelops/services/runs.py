"""Training runs: record one, hand it to the `train_model` task (or a child process without a
broker), cancel it, or run the whole pipeline in this process.

Every torch import happens inside `recadmin.modelops.pipeline`, which only the Celery task and the
commands that train in the foreground load, so the web process never imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from recadmin.celery import app
from recadmin.core.errors import Conflict, ValidationError
from recadmin.modelops.models import ModelKind, TrainingRun, TrainingRunStatus
from recadmin.modelops.services.common import model_name_default
from recadmin.modelops.services.params import training_params_validate
from recadmin.modelops.tasks import train_model

logger = logging.getLogger(__name__)

# The archive's file name is <name>-<version>.mar: the archiver's rule (the API schema states it too).
MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*$"
MODEL_NAME_MAX_LENGTH = 100
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)


def _child_environment() -> dict[str, str]:
    """The environment for a child process that must see the same database, TorchServe and model
    store as this one (settings may have been changed after start-up, e.g. by tests)."""
    import os
    from urllib.parse import quote

    from django.db import connection

    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        auth = quote(db.get("USER") or "")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"])
        host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}@{host}/{quote(db['NAME'])}"
    elif db["ENGINE"].endswith("sqlite3") and db["NAME"] and ":memory:" not in str(db["NAME"]):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    for name in (
        "TORCHSERVE_INFERENCE_URL",
        "TORCHSERVE_MANAGEMENT_URL",
        "TORCHSERVE_METRICS_URL",
        "TORCHSERVE_KEY_FILE",
        "TORCHSERVE_TIMEOUT",
        "TORCHSERVE_REGISTER_TIMEOUT",
        "MODEL_STORE",
        "RECOMMENDER_MODEL_NAME",
        "PROMOTION_TOLERANCE",
    ):
        env[name] = str(getattr(settings, name))
    env["TORCHSERVE_TOKEN_AUTH"] = "true" if settings.TORCHSERVE_TOKEN_AUTH else "false"
    return env


def _spawn_training_process(run_id: int) -> None:
    """Without a broker, run the task body in a child `manage.py train --run <id>`: the web process
    stays torch-free and answers at once, and the run's progress shows in the admin as it goes."""
    import subprocess
    import sys

    log_dir = Path(settings.VAR_DIR) / "training"
    log_dir.mkdir(parents=True, exist_ok=True)
    manage = Path(settings.BASE_DIR) / "manage.py"
    with open(log_dir / f"run-{run_id}.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(manage), "train", "--run", str(run_id), "--no-progress"],
            env=_child_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives a web worker restart
            close_fds=True,
        )
    TrainingRun.objects.filter(pk=run_id, celery_task_id="").update(celery_task_id=f"pid:{process.pid}")


def _on_commit_dispatch(run_id: int) -> None:
    # MODELOPS_TRAIN_IN_SUBPROCESS: set where tasks run eagerly (no Redis) but runs are started
    # from web requests; the test suite leaves it off so that runs finish inside the test.
    if app.conf.task_always_eager and getattr(settings, "MODELOPS_TRAIN_IN_SUBPROCESS", False):
        try:
            _spawn_training_process(run_id)
        except OSError as exc:
            TrainingRun.objects.filter(pk=run_id, status=TrainingRunStatus.QUEUED).update(
                status=TrainingRunStatus.FAILED,
                error=f"Could not start the training process: {exc}",
                finished_at=timezone.now(),
            )
        return
    try:
        result = train_model.apply_async(args=[run_id])
    except Exception as exc:  # a broker outage must show on the run, not vanish
        logger.exception("Could not enqueue training run %s", run_id)
        TrainingRun.objects.filter(pk=run_id, status=TrainingRunStatus.QUEUED).update(
            status=TrainingRunStatus.FAILED,
            error=f"Could not enqueue the training task: {type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        return
    # In eager mode the task has already finished and recorded its own id.
    TrainingRun.objects.filter(pk=run_id, celery_task_id="").update(celery_task_id=result.id or "")


@transaction.atomic
def training_run_create(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    model_name: str | None = None,
    created_by: Any = None,
    trigger: str = "admin",
    enqueue: bool = True,
) -> TrainingRun:
    """Record a training run and, after commit, hand it to the `train_model` task.

    With `enqueue=False` nothing is dispatched: the caller runs `training_run_execute` itself (the
    quickstart command does, to show a progress bar in the terminal).
    """
    if kind not in ModelKind.values:
        choices = ", ".join(ModelKind.values)
        raise ValidationError(f"Unknown model kind '{kind}'. Choose one of: {choices}.", field="kind")
    cleaned = training_params_validate(kind=kind, params=params)
    name = (model_name or "").strip() or model_name_default(kind=kind)
    # The archive's file name is <name>-<version>.mar: the archiver's rule, checked before training.
    if not _MODEL_NAME_RE.match(name) or len(name) > MODEL_NAME_MAX_LENGTH:
        raise ValidationError(
            "Model names start with a letter and use letters, digits, '_' and single '-' only.", field="model_name"
        )
    run = TrainingRun.objects.create(
        kind=kind,
        params=cleaned,
        model_name=name,
        created_by=created_by if getattr(created_by, "pk", None) else None,
        trigger=trigger,
        stage="queued",
    )
    if enqueue:
        transaction.on_commit(lambda: _on_commit_dispatch(run.pk))
    return run


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancel a queued run at once; a running one stops at its next progress report."""
    if run.is_finished:
        raise Conflict(f"Training run #{run.pk} has already finished ({run.status}).")
    updated = TrainingRun.objects.filter(
        pk=run.pk, status__in=[TrainingRunStatus.QUEUED, TrainingRunStatus.RUNNING]
    ).update(status=TrainingRunStatus.CANCELLED, stage="cancelled", finished_at=timezone.now())
    if updated and run.celery_task_id and not settings.CELERY_TASK_ALWAYS_EAGER:
        with contextlib.suppress(Exception):  # the run is cancelled in the registry either way
            app.control.revoke(run.celery_task_id)
    run.refresh_from_db()
    return run


def training_run_execute(
    *,
    run: TrainingRun,
    progress: Callable[[float, str], None] | None = None,
    retry_transient: bool = False,
) -> TrainingRun:
    """Run the whole pipeline for `run` in this process: export, train, evaluate, archive,
    register, promotion gate. Returns the run, finished (succeeded, failed or cancelled).

    `progress(percent, stage)` is called as the run advances (the quickstart command drives a
    terminal bar with it). With `retry_transient`, a transient TorchServe error re-raises instead
    of failing the run, so the Celery task can retry; the built archive is reused on the retry.
    """
    from recadmin.modelops.pipeline import execute

    return execute(run=run, progress=progress, retry_transient=retry_transient)
