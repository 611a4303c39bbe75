"""The training pipeline behind `train_model`: export, train, evaluate, archive, register, gate.

Imported only by the Celery task body and by commands that train in the foreground, never by the
web process: with `trainer` it is the only part of recadmin that reaches torch (through `training`).

Failure contract: whatever stage fails, the run ends `failed` with `failed_stage` and the error,
and no version stays registered in TorchServe on its behalf (it is unregistered again and its
row marked `failed`). A transient TorchServe outage during registration can instead be retried
by the task: the built archive is kept and reused, so a retry does not train again.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from recadmin.core.errors import ServiceUnavailable
from recadmin.modelops.loader import EventArrays, events_export
from recadmin.modelops.models import (
    ModelKind,
    ModelVersion,
    ModelVersionStatus,
    TrainingRun,
    TrainingRunStatus,
    TrainingStage,
)
from recadmin.modelops.progress import Reporter, RunCancelled, StageFailed, TrainOutcome
from recadmin.modelops.recovery import Heartbeat, heartbeat_is_fresh, training_workdir_create, worker_identity
from recadmin.modelops.selectors import model_name_resolve, model_version_default
from recadmin.modelops.services import (
    file_sha256,
    model_version_mark_default,
    model_version_next_number,
    torchserve_unregister_quietly,
)

logger = logging.getLogger(__name__)

MIN_EVENTS = 20
_Data = TypeVar("_Data")  # what a kind's export returns (event arrays, an impression table)


def _fail_if_too_small(arrays: EventArrays, min_events: int) -> None:
    if len(arrays) < min_events:
        raise StageFailed(
            TrainingStage.EXPORTING,
            f"Only {len(arrays)} weighted events in the database; at least {min_events} are needed to train "
            "(import events, or check EVENT_TYPE_WEIGHTS).",
        )


def train_from_arrays(
    *, arrays: EventArrays, kind: str, params: dict[str, Any], reporter: Reporter, workdir: Path
) -> TrainOutcome:
    """The one place that speaks `training/`'s API."""
    from recadmin.modelops import trainer

    return trainer.train(arrays=arrays, kind=kind, params=params, reporter=reporter, workdir=workdir)


def _export_and_train(
    *, run: TrainingRun, reporter: Reporter, workdir: Path, timings: dict[str, float]
) -> TrainOutcome:
    """The export and training stages of the run's kind: `_execute` picks by kind only here (what
    to export and how to train); archiving, registration and the gate take the outcome."""
    steps = _export_and_train_ranker if run.kind == ModelKind.RANKER else _export_and_train_retrieval
    return steps(run=run, reporter=reporter, workdir=workdir, timings=timings)


def _export_and_train_retrieval(
    *, run: TrainingRun, reporter: Reporter, workdir: Path, timings: dict[str, float]
) -> TrainOutcome:
    """A retrieval model's export (the weighted events) and training."""
    arrays = _export_stage(reporter, timings, "exporting events", events_export)
    reporter.log(
        "Exported %d events (%d customers, %d items) in %.2fs",
        len(arrays),
        arrays.num_customers,
        len(arrays.item_shop_ids),
        timings["export"],
    )
    _fail_if_too_small(arrays, int(run.params.get("min_events", MIN_EVENTS)))
    return _training_stage(
        reporter,
        timings,
        "training",
        lambda: train_from_arrays(
            arrays=arrays, kind=run.kind, params=dict(run.params), reporter=reporter, workdir=workdir
        ),
    )


def _export_and_train_ranker(
    *, run: TrainingRun, reporter: Reporter, workdir: Path, timings: dict[str, float]
) -> TrainOutcome:
    """The ranker's export (served impressions with their attributed outcomes, read by the metrics
    app through modelops.registry) and training."""
    from recadmin.modelops import ranker_trainer
    from recadmin.modelops.registry import impressions_export_get

    days = run.params.get("impression_days")
    since = timezone.now() - dt.timedelta(days=float(days)) if days else None
    table = _export_stage(reporter, timings, "exporting impressions", lambda: impressions_export_get()(since=since))
    reporter.log(
        "Exported %d impressions (%d clicks) in %.2fs", len(table), int(table.clicked.sum()), timings["export"]
    )
    return _training_stage(
        reporter,
        timings,
        "training the ranker",
        lambda: ranker_trainer.train_ranker(table=table, params=dict(run.params), reporter=reporter, workdir=workdir),
    )


def _export_stage(reporter: Reporter, timings: dict[str, float], text: str, export: Callable[[], _Data]) -> _Data:
    """The exporting stage around a kind's export: timed, and any error fails the run at this stage."""
    reporter.stage(TrainingStage.EXPORTING, text)
    started = time.perf_counter()
    try:
        data = export()
    except Exception as exc:
        raise StageFailed(TrainingStage.EXPORTING, f"{type(exc).__name__}: {exc}") from exc
    timings["export"] = round(time.perf_counter() - started, 3)
    return data


def _training_stage(
    reporter: Reporter, timings: dict[str, float], text: str, train: Callable[[], TrainOutcome]
) -> TrainOutcome:
    """The training stage around a kind's training (which also evaluates, and may move the reporter
    on to the evaluating stage): timed, and an error fails the run at the stage it was in."""
    reporter.stage(TrainingStage.TRAINING, text)
    started = time.perf_counter()
    try:
        outcome = train()
    except (RunCancelled, StageFailed):
        raise
    except Exception as exc:
        raise StageFailed(reporter.stage_key, f"{type(exc).__name__}: {exc}") from exc
    timings["train_and_evaluate"] = round(time.perf_counter() - started, 3)
    return outcome


def _allocate_version(*, run: TrainingRun, outcome: TrainOutcome) -> ModelVersion:
    # Two runs finishing together would pick the same number: the unique constraint decides and
    # the loser takes the next one.
    name = model_name_resolve(run.model_name)
    for _ in range(5):
        try:
            with transaction.atomic():
                return ModelVersion.objects.create(
                    name=name,
                    version=model_version_next_number(name=name),
                    kind=outcome.kind,
                    params=outcome.params,
                    training_run=run,
                    valid_metrics=outcome.valid_metrics,
                    test_metrics=outcome.test_metrics,
                    num_events=outcome.num_events,
                    num_users=outcome.num_users,
                    num_items=outcome.num_items,
                    status=ModelVersionStatus.BUILT,
                    workers=int(run.params.get("workers", 1)),
                )
        except IntegrityError:
            continue
    raise StageFailed(TrainingStage.ARCHIVING, "Could not allocate a version number (concurrent runs).")


def _build_archive(*, version: ModelVersion, outcome: TrainOutcome) -> tuple[Path, str]:
    from recadmin.modelops.archive import archive_build

    built = archive_build(
        checkpoint_dir=outcome.checkpoint_dir,
        name=version.name,
        version=str(version.version),
        model_store=Path(settings.MODEL_STORE),
        workers=version.workers or 1,
        stage="ranker" if version.kind == ModelKind.RANKER else "retrieval",
        # A failed earlier attempt at this very version number may have left its file behind.
        overwrite=True,
    )
    return Path(built.path), str(built.sha256)


def _distinct(*values: float) -> int:
    """The fewest decimals (4 to 10) at which the given values that differ also print differently:
    a gate message must never read "0.0876 < 0.0876"."""
    for decimals in range(4, 11):
        if len({f"{v:.{decimals}f}" for v in values}) == len(set(values)):
            return decimals
    return 10


def gate_decide(*, candidate: ModelVersion, current: ModelVersion | None, tolerance: float) -> tuple[bool, str]:
    """The promotion gate: (promote?, why). Pure, so it is tested on its own. A ranker is judged on
    its own metrics (click and purchase AUC against its baselines), a retrieval model on NDCG@10."""
    if candidate.kind == ModelKind.RANKER:
        from recadmin.modelops import ranker_trainer  # loaded where it is used, as in _export_and_train_ranker

        return ranker_trainer.ranker_gate_decide(candidate=candidate, current=current, tolerance=tolerance)
    new = candidate.ndcg10
    if current is None:
        return True, f"v{candidate.version} is the first version of '{candidate.name}': it becomes the default."
    old = current.ndcg10
    if new is None:
        return False, f"v{candidate.version} has no validation NDCG@10; v{current.version} stays the default."
    if old is None:
        return True, f"v{current.version} has no validation NDCG@10 to defend; v{candidate.version} becomes default."
    threshold = old - tolerance
    d = _distinct(new, threshold, old)
    margin = new - threshold
    # Two significant digits of the margin, however small it is.
    md = min(10, max(d, 1 - math.floor(math.log10(abs(margin))))) if margin else d
    if new >= threshold:
        return True, (
            f"Promoted: validation NDCG@10 {new:.{d}f} >= {threshold:.{d}f} (margin {margin:+.{md}f}; "
            f"v{current.version}'s {old:.{d}f} minus tolerance {tolerance:g})."
        )
    return False, (
        f"Kept registered, not default: validation NDCG@10 {new:.{d}f} < {threshold:.{d}f} "
        f"({margin:+.{md}f} short; v{current.version}'s {old:.{d}f} minus tolerance {tolerance:g}). "
        "Promote it by hand if you disagree."
    )


def _finish(run: TrainingRun, **fields: Any) -> TrainingRun:
    fields.setdefault("finished_at", timezone.now())
    TrainingRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def _finish_failed(run: TrainingRun, *, stage: str, detail: str, log_tail: str) -> TrainingRun:
    label = TrainingStage(stage).label
    return _finish(
        run,
        status=TrainingRunStatus.FAILED,
        failed_stage=stage,
        stage=f"failed: {label}",
        error=f"{label} failed: {detail}",
        log_tail=log_tail,
    )


def _tail_with_traceback(reporter: Reporter) -> str:
    # Called inside an except block: format_exc is the exception being handled.
    return (reporter.tail.text() + "\n" + traceback.format_exc(limit=8))[-20000:]


def execute(
    *, run: TrainingRun, progress: Callable[[float, str], None] | None = None, retry_transient: bool = False
) -> TrainingRun:
    run.refresh_from_db()
    if run.status in (TrainingRunStatus.CANCELLED, TrainingRunStatus.SUCCEEDED):
        return run
    if run.status == TrainingRunStatus.FAILED:
        # The broker delivered a killed task again, after the sweep had failed its run: a new run
        # is a person's decision (the failure says why), not a silent restart hours later.
        logger.warning("training run %s has already failed (%s); not running it again", run.pk, run.error[:200])
        return run
    if run.status == TrainingRunStatus.RUNNING and heartbeat_is_fresh(run) and run.worker != worker_identity():
        # Delivered a second time while another process still runs it (a visibility timeout shorter
        # than the training): that process finishes it.
        logger.warning("training run %s is running on %s; this delivery is skipped", run.pk, run.worker)
        return run
    with Heartbeat(run.pk):
        return _execute(run=run, progress=progress, retry_transient=retry_transient)


def _execute(*, run: TrainingRun, progress: Callable[[float, str], None] | None, retry_transient: bool) -> TrainingRun:
    reporter = Reporter(run, progress)
    watched = [logging.getLogger("training"), logging.getLogger("recadmin.modelops")]
    for target in watched:
        target.addHandler(reporter.tail)
    previous_levels = {target.name: target.level for target in watched}
    for target in watched:
        if target.getEffectiveLevel() > logging.INFO:
            target.setLevel(logging.INFO)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRunStatus.RUNNING,
        started_at=run.started_at or timezone.now(),
        finished_at=None,
        error="",
        failed_stage="",
        heartbeat_at=timezone.now(),
        worker=worker_identity(),
        current_stage=TrainingStage.EXPORTING,
    )
    run.refresh_from_db()
    workdir = training_workdir_create(run_id=run.pk)
    version: ModelVersion | None = None
    registered = False
    timings: dict[str, float] = dict(run.metrics.get("seconds", {})) if isinstance(run.metrics, dict) else {}
    try:
        # A retry after a transient registration error resumes from the archive it built.
        version = (
            ModelVersion.objects.filter(training_run=run, status=ModelVersionStatus.BUILT)
            .exclude(archive_path="")
            .order_by("-version")
            .first()
        )
        if version is not None and not (
            Path(version.archive_path).is_file() and file_sha256(version.archive_path) == version.sha256
        ):
            ModelVersion.objects.filter(pk=version.pk).update(
                status=ModelVersionStatus.FAILED, note="Archive missing or changed before a retry."
            )
            version = None

        if version is None:
            outcome = _export_and_train(run=run, reporter=reporter, workdir=workdir, timings=timings)
            reporter.stage(TrainingStage.ARCHIVING, "archiving")
            started = time.perf_counter()
            version = _allocate_version(run=run, outcome=outcome)
            try:
                archive_path, sha256 = _build_archive(version=version, outcome=outcome)
            except Exception as exc:
                raise StageFailed(TrainingStage.ARCHIVING, f"{type(exc).__name__}: {exc}") from exc
            ModelVersion.objects.filter(pk=version.pk).update(archive_path=str(archive_path), sha256=sha256)
            version.refresh_from_db()
            timings["archive"] = round(time.perf_counter() - started, 3)
            TrainingRun.objects.filter(pk=run.pk).update(
                metrics={
                    "valid": outcome.valid_metrics,
                    "test": outcome.test_metrics,
                    "num_events": outcome.num_events,
                    "num_users": outcome.num_users,
                    "num_items": outcome.num_items,
                    **outcome.extra,
                    "seconds": timings,
                }
            )
            reporter.log("Built %s (%s)", archive_path.name, sha256[:12])

        reporter.stage(TrainingStage.REGISTERING, f"registering v{version.version} in TorchServe")
        started = time.perf_counter()
        from recadmin.modelops.torchserve import get_client

        try:
            client = get_client()
            client.register(Path(version.archive_path), model_name=version.name, initial_workers=version.workers or 1)
            registered = True
            client.wait_until_ready(version.name, str(version.version), timeout=settings.TORCHSERVE_REGISTER_TIMEOUT)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            raise StageFailed(
                TrainingStage.REGISTERING, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
            ) from exc
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersionStatus.REGISTERED)
        version.refresh_from_db()
        timings["register"] = round(time.perf_counter() - started, 3)

        reporter.stage(TrainingStage.PROMOTING, "promotion gate")
        current = model_version_default(name=version.name)
        promote, reason = gate_decide(candidate=version, current=current, tolerance=float(settings.PROMOTION_TOLERANCE))
        if promote:
            try:
                client.set_default(version.name, str(version.version))
            except ServiceUnavailable:
                raise
            except Exception as exc:
                raise StageFailed(
                    TrainingStage.PROMOTING, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
                ) from exc
            model_version_mark_default(version=version, note=reason)
        else:
            ModelVersion.objects.filter(pk=version.pk).update(note=reason)
        reporter.log(reason)
        reporter.update(100.0, "done", force=True)
        metrics = dict(TrainingRun.objects.get(pk=run.pk).metrics or {})
        metrics["seconds"] = timings
        metrics["model_version"] = version.version
        done = f"done: v{version.version} {'is the default' if promote else 'registered, not default'}"
        # A bar that went from epoch 11/200 to 100 % says why.
        if metrics.get("stopped"):
            done = f"{done} ({metrics['stopped']})"
        return _finish(
            run,
            status=TrainingRunStatus.SUCCEEDED,
            progress=100.0,
            stage=done[:200],
            gate_decision=reason,
            metrics=metrics,
            log_tail=reporter.tail.text(),
        )
    except RunCancelled:
        _cleanup(version, registered, note="Run cancelled.")
        return _finish(run, status=TrainingRunStatus.CANCELLED, stage="cancelled", log_tail=reporter.tail.text())
    except ServiceUnavailable as exc:
        stage = reporter.stage_key
        if retry_transient and version is not None:
            # Keep the archive for the retry; only what TorchServe half-holds is undone.
            if registered:
                logger.warning(torchserve_unregister_quietly(name=version.name, version=version.version))
            TrainingRun.objects.filter(pk=run.pk).update(
                status=TrainingRunStatus.QUEUED,
                stage=f"waiting to retry {TrainingStage(stage).label}: {exc.message}"[:200],
                log_tail=reporter.tail.text(),
            )
            raise
        _cleanup(version, registered, note=f"Failed while {TrainingStage(stage).label}: {exc.message}")
        return _finish_failed(
            run, stage=stage, detail=f"TorchServe unavailable: {exc.message}", log_tail=reporter.tail.text()
        )
    except StageFailed as exc:
        _cleanup(version, registered, note=f"Failed while {TrainingStage(exc.stage).label}: {exc.message}")
        return _finish_failed(run, stage=exc.stage, detail=exc.message, log_tail=_tail_with_traceback(reporter))
    except Exception as exc:
        stage = reporter.stage_key
        _cleanup(version, registered, note=f"Failed while {TrainingStage(stage).label}: {exc}")
        logger.exception("Training run %s failed while %s", run.pk, stage)
        return _finish_failed(
            run, stage=stage, detail=f"{type(exc).__name__}: {exc}", log_tail=_tail_with_traceback(reporter)
        )
    except BaseException:
        # Interrupted (Ctrl-C, SystemExit on SIGTERM): the run must not stay "running" forever.
        stage = reporter.stage_key
        _cleanup(version, registered, note="Interrupted.")
        _finish(
            run,
            status=TrainingRunStatus.FAILED,
            failed_stage=stage,
            stage=f"interrupted: {TrainingStage(stage).label}",
            error=f"{TrainingStage(stage).label} interrupted (the process was stopped).",
            log_tail=reporter.tail.text(),
        )
        raise
    finally:
        for target in watched:
            target.removeHandler(reporter.tail)
            target.setLevel(previous_levels[target.name])
        shutil.rmtree(workdir, ignore_errors=True)


def _cleanup(version: ModelVersion | None, registered: bool, *, note: str) -> None:
    """Leave nothing half-done behind: unregister what this run registered and mark its version failed."""
    if version is None:
        return
    version.refresh_from_db()
    if version.status == ModelVersionStatus.DEFAULT:
        # It already became the default: the run's failure came after; the version is fine.
        return
    if registered or version.status == ModelVersionStatus.REGISTERED:
        current = model_version_default(name=version.name)
        outcome = torchserve_unregister_quietly(
            name=version.name, version=version.version, fallback_default=current.version if current else None
        )
        logger.warning("Cleanup after a failed run: %s", outcome)
        note = f"{note} ({outcome})"
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersionStatus.FAILED, note=note[:2000])
