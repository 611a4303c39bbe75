"""Training runs whose process died: heartbeats, the stale-run sweep, leftover working directories.

A process that runs the pipeline (Celery worker, `manage.py train`) writes the run's `heartbeat_at`
every TRAINING_HEARTBEAT_SECONDS from a thread of its own. A SIGKILL, an OOM kill or a machine restart
stops it, and nothing else would ever end the run: `training_runs_sweep_stale` (a periodic task, every
minute under beat or the in-process scheduler) fails every run silent for TRAINING_VISIBILITY_TIMEOUT
with the reason, marks the versions it had built but not promoted `failed` (the TorchServe sync then
unloads whatever of them TorchServe still has), and removes its working directory. When the broker
delivers the killed task again (acks_late), the pipeline sees the run has already ended and skips it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from recadmin.modelops.models import ModelVersion, ModelVersionStatus, TrainingRun, TrainingRunStatus, TrainingStage

logger = logging.getLogger(__name__)

WORKDIR_PREFIX = "recadmin-run"


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def training_workdir_create(*, run_id: int) -> Path:
    """The run's scratch directory: named after the run so the sweep can find it after a kill."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{run_id}-"))


def heartbeat_is_fresh(run: TrainingRun, *, now: dt.datetime | None = None) -> bool:
    if run.heartbeat_at is None:
        return False
    now = now or timezone.now()
    return (now - run.heartbeat_at).total_seconds() < settings.TRAINING_VISIBILITY_TIMEOUT


class Heartbeat:
    """Writes the run's heartbeat_at from a daemon thread while the pipeline runs in this one."""

    def __init__(self, run_id: int, *, every: float | None = None) -> None:
        self.run_id = run_id
        self.every = float(settings.TRAINING_HEARTBEAT_SECONDS if every is None else every)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-run-{run_id}", daemon=True)

    def beat(self) -> None:
        TrainingRun.objects.filter(pk=self.run_id, status=TrainingRunStatus.RUNNING).update(heartbeat_at=timezone.now())

    def _loop(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.every):
                try:
                    self.beat()
                except Exception:
                    logger.warning("training run %s: heartbeat not written", self.run_id, exc_info=True)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class SweepReport:
    failed_runs: list[int] = field(default_factory=list)
    failed_versions: list[str] = field(default_factory=list)
    removed_dirs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int] | list[str]]:
        return {
            "failed_runs": self.failed_runs,
            "failed_versions": self.failed_versions,
            "removed_dirs": self.removed_dirs,
        }


def _stale_reason(run: TrainingRun, now: dt.datetime) -> str:
    last = run.heartbeat_at or run.started_at
    since = f"{(now - last).total_seconds():.0f}s ago" if last else "never"
    where = f" on {run.worker}" if run.worker else ""
    stage = TrainingStage(run.current_stage).label if run.current_stage else "its start"
    return (
        f"The process running it{where} stopped during {stage}: last heartbeat {since}, over the "
        f"{settings.TRAINING_VISIBILITY_TIMEOUT}s visibility timeout (killed, out of memory, or a restart). "
        "Start a new run."
    )


def training_runs_sweep_stale(*, now: dt.datetime | None = None) -> SweepReport:
    """Fail running runs without a recent heartbeat, fail their unpromoted versions, and remove
    working directories of runs that are no longer running."""
    now = now or timezone.now()
    report = SweepReport()
    cutoff = now - dt.timedelta(seconds=settings.TRAINING_VISIBILITY_TIMEOUT)
    candidates = TrainingRun.objects.filter(status=TrainingRunStatus.RUNNING).filter(_stale_q(cutoff))
    for run in candidates:
        reason = _stale_reason(run, now)
        with transaction.atomic():
            updated = (
                TrainingRun.objects.filter(pk=run.pk, status=TrainingRunStatus.RUNNING)
                .filter(_stale_q(cutoff))
                .update(
                    status=TrainingRunStatus.FAILED,
                    failed_stage=run.current_stage or TrainingStage.TRAINING,
                    stage=f"failed: {reason[:180]}",
                    error=reason,
                    finished_at=now,
                )
            )
            if not updated:
                continue  # it beat meanwhile, or ended by itself
            for version in ModelVersion.objects.select_for_update().filter(
                training_run=run, status__in=[ModelVersionStatus.BUILT, ModelVersionStatus.REGISTERED]
            ):
                version.status = ModelVersionStatus.FAILED
                version.note = (
                    f"Its training run #{run.pk} died before promotion; the TorchServe sync unloads it "
                    "if TorchServe has it."
                )
                version.save(update_fields=["status", "note"])
                report.failed_versions.append(str(version))
        logger.error("training run %s failed by the sweep: %s", run.pk, reason)
        report.failed_runs.append(run.pk)
    report.removed_dirs = training_workdirs_clean()
    return report


def _stale_q(cutoff: dt.datetime) -> Q:
    # No heartbeat at all: a run started before heartbeats existed, or killed before its first beat.
    return (
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True, created_at__lt=cutoff)
    )


def training_workdirs_clean(*, root: Path | None = None) -> list[str]:
    """Remove `recadmin-run<id>-*` directories (in this machine's temp dir) of runs that are not
    running any more, or no longer exist, and stale archive staging directories."""
    root = Path(root or tempfile.gettempdir())
    found: dict[int, list[Path]] = {}
    with contextlib.suppress(OSError):
        for path in root.glob(f"{WORKDIR_PREFIX}*-*"):
            number = path.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
            if path.is_dir() and number.isdigit():
                found.setdefault(int(number), []).append(path)
    if not found:
        return _archive_staging_clean()
    running = set(
        TrainingRun.objects.filter(pk__in=found, status=TrainingRunStatus.RUNNING).values_list("pk", flat=True)
    )
    removed = []
    for run_id, paths in found.items():
        if run_id in running:
            continue
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    removed += _archive_staging_clean()
    if removed:
        logger.info("removed %d leftover training directories: %s", len(removed), ", ".join(removed))
    return removed


def _archive_staging_clean() -> list[str]:
    """`mar-*` staging directories the archive builder leaves in the model store when killed
    mid-archive: removed once older than the visibility timeout while no run is archiving."""
    store = Path(settings.MODEL_STORE)
    if TrainingRun.objects.filter(status=TrainingRunStatus.RUNNING, current_stage=TrainingStage.ARCHIVING).exists():
        return []
    cutoff = time.time() - settings.TRAINING_VISIBILITY_TIMEOUT
    removed = []
    with contextlib.suppress(OSError):
        for path in store.glob("mar-*"):
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
    return removed
