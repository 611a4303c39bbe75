"""Writes of the model registry: training runs, the training pipeline, and version lifecycle.

Every TorchServe call goes through `recadmin.modelops.torchserve` (the adapter); every torch import
happens inside `recadmin.modelops.pipeline`, which only the Celery task and the quickstart command
load, so the web process never imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from recadmin.core.errors import Conflict, NotFound, ServiceUnavailable, ValidationError
from recadmin.modelops.models import (
    LIVE_STATUSES,
    ModelKind,
    ModelVersion,
    ModelVersionStatus,
    TrainingRun,
    TrainingRunStatus,
)
from recadmin.modelops.selectors import (
    UNLOADED_CACHE_KEY,
    default_cache_key,
    model_name_resolve,
    model_version_previous_default,
)

logger = logging.getLogger(__name__)

MAX_WORKERS = 16
# The archive's file name is <name>-<version>.mar: the archiver's rule (the API schema states it too).
MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*$"
MODEL_NAME_MAX_LENGTH = 100
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)

# The parameters a person may set from the admin or the API, per kind, with their bounds; the
# names are those of the models in `training/models` (their DEFAULTS). Anything else in `params`
# is refused: a typo must not silently train with the defaults. Strings list their choices.
PARAM_SPECS: dict[str, dict[str, tuple[Any, Any, Any]]] = {
    ModelKind.SASREC: {
        "max_epochs": (int, 1, 1000),
        "hidden": (int, 8, 1024),
        "blocks": (int, 1, 8),
        "heads": (int, 1, 16),
        "ffn_mult": (int, 1, 8),
        "max_len": (int, 2, 1000),
        "dropout": (float, 0.0, 0.9),
        "lr": (float, 1e-6, 1.0),
        "weight_decay": (float, 0.0, 1.0),
        "batch_size": (int, 1, 65536),
        "patience": (int, 1, 1000),
        "max_seconds": (float, 1.0, 7 * 86400.0),
        "loss": (str, ("full", "sampled"), None),
        "num_negatives": (int, 1, 100000),
        "use_attributes": (bool, None, None),
    },
    ModelKind.CF: {  # EASE
        "l2": (float, 0.0, 1e7),
        "neighbours": (int, 1, 10000),
        "max_items": (int, 10, 200000),
        "history_decay": (float, 0.0, 1.0),
        "max_history": (int, 1, 10000),
        "dims": (int, 2, 1024),
    },
    ModelKind.ITEMKNN: {
        "neighbours": (int, 1, 10000),
        "alpha": (float, 0.0, 1.0),
        "shrink": (float, 0.0, 1e6),
        "history_decay": (float, 0.0, 1.0),
        "max_history": (int, 1, 10000),
        "dims": (int, 2, 1024),
    },
    ModelKind.POP: {
        "half_life_days": (float, 0.001, 3650.0),
        "use_event_weights": (bool, None, None),
    },
    ModelKind.RANKER: {  # ESMM (training/ranker/esmm.py), trained on the served impressions
        "embedding_dim": (int, 2, 256),
        "dropout": (float, 0.0, 0.9),
        "ctcvr_weight": (float, 0.0, 100.0),
        "lr": (float, 1e-6, 1.0),
        "weight_decay": (float, 0.0, 1.0),
        "batch_size": (int, 1, 65536),
        "max_epochs": (int, 1, 1000),
        "patience": (int, 1, 1000),
        "max_seconds": (float, 1.0, 7 * 86400.0),
        "impression_days": (float, 0.01, 3650.0),
        "min_impressions": (int, 1, 10**9),
    },
}
PARAM_ALIASES = {"epochs": "max_epochs"}
# Pipeline options accepted beside model parameters (not passed to the model).
PIPELINE_OPTIONS: dict[str, tuple[Any, Any, Any]] = {
    "seed": (int, 0, 2**31 - 1),
    "test_days": (float, 0.01, 3650.0),
    "valid_days": (float, 0.01, 3650.0),
    "holdout_fraction": (float, 0.01, 0.45),
    "min_events": (int, 1, 10**9),
    "workers": (int, 1, MAX_WORKERS),
}


def _validate_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValidationError("Parameters must be a JSON object.", field="params")
    specs = {**PARAM_SPECS.get(kind, {}), **PIPELINE_OPTIONS}
    cleaned: dict[str, Any] = {}
    for given, value in params.items():
        # Friendly aliases for the commonest setting, mapped to the model's own name.
        name = PARAM_ALIASES.get(given, given) if PARAM_ALIASES.get(given) in specs else given
        if value is None or value == "":
            continue
        if name not in specs:
            allowed = ", ".join(sorted(specs))
            raise ValidationError(f"Unknown parameter '{name}' for {kind}. Allowed: {allowed}.", field=f"params.{name}")
        kind_of, low, high = specs[name]
        if kind_of is str:
            if value not in low:
                raise ValidationError(f"Parameter '{name}' must be one of: {', '.join(low)}.", field=f"params.{name}")
            cleaned[name] = value
            continue
        try:
            if kind_of is bool:
                if not isinstance(value, bool):
                    raise TypeError
                coerced: Any = value
            elif kind_of is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                coerced = int(value)
            else:
                if isinstance(value, bool):
                    raise TypeError
                coerced = float(value)
        except (TypeError, ValueError) as exc:
            expected = {int: "an integer", bool: "true or false"}.get(kind_of, "a number")
            raise ValidationError(f"Parameter '{name}' must be {expected}.", field=f"params.{name}") from exc
        if kind_of is not bool and not (low <= coerced <= high):
            raise ValidationError(f"Parameter '{name}' must be between {low} and {high}.", field=f"params.{name}")
        cleaned[name] = coerced
    return cleaned


def training_params_validate(*, kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The cleaned parameters for `kind`, or ValidationError naming the offending one."""
    return _validate_params(kind, params)


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
    from recadmin.celery import app
    from recadmin.modelops.tasks import train_model

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
    cleaned = _validate_params(kind, params)
    default_name = settings.RANKER_MODEL_NAME if kind == ModelKind.RANKER else settings.RECOMMENDER_MODEL_NAME
    name = (model_name or "").strip() or default_name
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
        from recadmin.celery import app

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


# --- version lifecycle -------------------------------------------------------------------------


def _client() -> Any:
    # Imported here so that importing services (admin, API) stays cheap; the adapter itself is
    # torch-free.
    from recadmin.modelops.torchserve import get_client

    return get_client()


def torchserve_versions_loaded(*, name: str) -> dict[str, Any]:
    """{version string: ModelVersionInfo} of what TorchServe has for `name` (empty if none)."""
    from recadmin.modelops.torchserve import ModelNotRegistered

    try:
        return {info.version: info for info in _client().describe(name)}
    except ModelNotRegistered:
        return {}


def torchserve_unregister_quietly(*, name: str, version: int | str, fallback_default: int | str | None = None) -> str:
    """Remove a version, never raising: used to clean up after a failed pipeline. Returns what
    happened, for the run's log."""
    from recadmin.modelops.torchserve import ModelNotRegistered, TorchServeError, TorchServeUnavailable

    client = _client()
    try:
        if fallback_default is not None and str(fallback_default) != str(version):
            # TorchServe refuses to unregister its default while other versions exist.
            with contextlib.suppress(TorchServeError, TorchServeUnavailable):
                client.set_default(name, str(fallback_default))
        client.unregister(name, str(version))
    except ModelNotRegistered:
        return f"{name} v{version} was not registered"
    except (TorchServeError, TorchServeUnavailable) as exc:
        return f"could not unregister {name} v{version}: {exc.message}"
    return f"unregistered {name} v{version}"


def _invalidate_default(name: str) -> None:
    def drop() -> None:
        with contextlib.suppress(Exception):
            cache.delete(default_cache_key(name))

    drop()
    transaction.on_commit(drop)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def model_version_next_number(*, name: str) -> int:
    last = ModelVersion.objects.filter(name=name).order_by("-version").values_list("version", flat=True).first()
    return (last or 0) + 1


def _lock(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.select_for_update().get(pk=version.pk)


@transaction.atomic
def model_version_mark_default(*, version: ModelVersion, note: str = "") -> ModelVersion:
    """The database half of a promotion (TorchServe already has it as default)."""
    version = _lock(version)
    now = timezone.now()
    current = (
        ModelVersion.objects.select_for_update()
        .filter(name=version.name, status=ModelVersionStatus.DEFAULT)
        .exclude(pk=version.pk)
        .first()
    )
    if current is not None:
        current.status = ModelVersionStatus.REGISTERED
        current.note = f"Replaced as default by v{version.version} at {now:%Y-%m-%d %H:%M} UTC."
        current.save(update_fields=["status", "note"])
    version.status = ModelVersionStatus.DEFAULT
    version.promoted_at = now
    version.rolled_back_at = None
    version.note = note or f"Default since {now:%Y-%m-%d %H:%M} UTC."
    version.save(update_fields=["status", "promoted_at", "rolled_back_at", "note"])
    _invalidate_default(version.name)
    return version


def model_version_promote(*, version: ModelVersion, note: str = "") -> ModelVersion:
    """Make `version` the default in TorchServe, then in the registry."""
    version.refresh_from_db()
    if version.status == ModelVersionStatus.DEFAULT:
        return version
    if version.status != ModelVersionStatus.REGISTERED:
        raise Conflict(
            f"{version} is {version.get_status_display().lower()}; only a registered version can become the default.",
            extra={"status": version.status},
        )
    _client().set_default(version.name, str(version.version))
    return model_version_mark_default(version=version, note=note or "Promoted by hand.")


def model_version_rollback(*, name: str | None = None) -> ModelVersion:
    """Make the previous default the default again; the abandoned one stays registered."""
    name = model_name_resolve(name)
    current = ModelVersion.objects.filter(name=name, status=ModelVersionStatus.DEFAULT).first()
    previous = model_version_previous_default(name=name)
    if previous is None:
        raise Conflict(f"There is no previous default of '{name}' to roll back to.")
    _client().set_default(name, str(previous.version))
    with transaction.atomic():
        now = timezone.now()
        if current is not None:
            current = _lock(current)
            current.status = ModelVersionStatus.REGISTERED
            current.rolled_back_at = now
            current.note = f"Rolled back to v{previous.version} at {now:%Y-%m-%d %H:%M} UTC."
            current.save(update_fields=["status", "rolled_back_at", "note"])
        promoted = model_version_mark_default(
            version=previous,
            note=f"Default again after a rollback from v{current.version if current else '?'}.",
        )
    return promoted


def model_version_retire(*, version: ModelVersion) -> ModelVersion:
    """Unregister `version` from TorchServe and keep its row (and archive) for the record."""
    version.refresh_from_db()
    if version.status == ModelVersionStatus.DEFAULT:
        raise Conflict(f"{version} is the default: promote or roll back to another version before retiring it.")
    if version.status == ModelVersionStatus.RETIRED:
        return version
    if version.status == ModelVersionStatus.REGISTERED:
        from recadmin.modelops.torchserve import ModelNotRegistered

        with contextlib.suppress(ModelNotRegistered):  # already gone (a restart): retiring is still right
            _client().unregister(version.name, str(version.version))
    with transaction.atomic():
        version = _lock(version)
        version.status = ModelVersionStatus.RETIRED
        version.retired_at = timezone.now()
        version.note = "Retired (unregistered from TorchServe)."
        version.save(update_fields=["status", "retired_at", "note"])
    return version


def model_version_scale(*, version: ModelVersion, workers: int) -> ModelVersion:
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValidationError(f"Workers must be an integer between 1 and {MAX_WORKERS}.", field="workers")
    version.refresh_from_db()
    if version.status not in LIVE_STATUSES:
        raise Conflict(f"{version} is not loaded in TorchServe ({version.status}); nothing to scale.")
    _client().scale_workers(version.name, str(version.version), min_workers=workers)
    version.workers = workers
    version.save(update_fields=["workers"])  # a save, not an update: the change history records it
    return version


def model_version_update(*, version: ModelVersion, note: str, workers: int) -> ModelVersion:
    """What a person may change on a version: its note, and its workers (asked of TorchServe at
    once when the version is loaded, otherwise kept for its next registration). The note is kept
    even when TorchServe refuses the workers."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValidationError(f"Workers must be an integer between 1 and {MAX_WORKERS}.", field="workers")
    version.refresh_from_db()
    if note != version.note:
        version.note = note
        version.save(update_fields=["note"])  # saves, not updates: the change history records them
    if workers != version.workers:
        if version.status in LIVE_STATUSES:
            return model_version_scale(version=version, workers=workers)
        version.workers = workers
        version.save(update_fields=["workers"])
    return version


# --- start-up sync -------------------------------------------------------------------------------


@dataclass
class SyncReport:
    registered: list[str] = field(default_factory=list)
    already_loaded: list[str] = field(default_factory=list)
    default_set: str = ""
    failed: dict[str, str] = field(default_factory=dict)
    # Versions TorchServe had loaded that the registry does not serve, and were unloaded: label -> why.
    unloaded: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = []
        if self.registered:
            parts.append(f"registered {', '.join(self.registered)}")
        if self.already_loaded:
            parts.append(f"already loaded {', '.join(self.already_loaded)}")
        if self.default_set:
            parts.append(f"default {self.default_set}")
        for label, reason in self.unloaded.items():
            parts.append(f"unloaded {label} ({reason})")
        for label, reason in self.failed.items():
            parts.append(f"FAILED {label}: {reason}")
        return "; ".join(parts) or "nothing to do"

    @property
    def changed(self) -> bool:
        return bool(self.registered or self.default_set or self.unloaded or self.failed)


_UNLOADED_KEEP = 50


def _unload_reason(row: ModelVersion | None, runs_active: set[int]) -> str | None:
    """Why a version TorchServe has should go, or None to leave it (live, or mid-registration)."""
    if row is None:
        return "unknown to the registry"
    if row.status in LIVE_STATUSES:
        return None
    if row.status == ModelVersionStatus.BUILT and row.training_run_id in runs_active:
        return None  # its run is registering it right now
    return f"registry status {row.status}"


def _remember_unloaded(report: SyncReport) -> None:
    at = timezone.now().isoformat()
    entries = [{"version": label, "reason": reason, "at": at} for label, reason in report.unloaded.items()]
    with contextlib.suppress(Exception):
        kept = list(cache.get(UNLOADED_CACHE_KEY) or [])
        cache.set(UNLOADED_CACHE_KEY, (entries + kept)[:_UNLOADED_KEEP], 7 * 24 * 3600)


def models_sync_torchserve(*, name: str | None = None) -> SyncReport:
    """Bring TorchServe in line with the registry: register every live version it lacks from
    `model_store/` (after checking the archive's sha256), set the registry's default where TorchServe
    has another, and unload versions the registry does not serve (a run killed while registering
    left one loaded while its row says built or failed; a stray registration by hand).

    Run at start-up and every few seconds by the periodic `sync_torchserve` task: a restarted TorchServe
    comes back empty, and this is what fills it again. When nothing changed it costs two queries and
    two GETs per model name. Raises ServiceUnavailable if TorchServe is down.
    """
    from recadmin.modelops.models import TrainingRunStatus
    from recadmin.modelops.torchserve import ModelVersionConflict

    client = _client()
    report = SyncReport()
    # Registered by a sync running at the same time (the periodic one and the serving path's re-sync
    # after a TorchServe restart): that one finishes the registration and sets the default.
    concurrent: set[str] = set()
    rows = ModelVersion.objects.filter(**({"name": name} if name else {}))
    # Default versions first: each registration waits for TorchServe to start the version's worker
    # (seconds), and after a TorchServe restart lists come back as soon as the default is loaded.
    live = sorted(
        rows.filter(status__in=LIVE_STATUSES).order_by("name", "version"),
        key=lambda v: v.status != ModelVersionStatus.DEFAULT,
    )
    names = sorted(set(rows.order_by().values_list("name", flat=True).distinct()) | ({name} if name else set()))
    loaded: dict[str, dict[str, Any]] = {model: torchserve_versions_loaded(name=model) for model in names}
    for version in live:
        label = str(version)
        if str(version.version) in loaded[version.name]:
            report.already_loaded.append(label)
            continue
        path = Path(version.archive_path)
        if not path.is_file():
            report.failed[label] = f"archive {path} is missing"
            continue
        digest = file_sha256(path)
        if version.sha256 and digest != version.sha256:
            report.failed[label] = f"archive {path.name} does not match its recorded sha256 (got {digest[:12]}…)"
            continue
        try:
            # One worker first: the registration waits for it, and lists need only one; the others
            # start in the background (each is a Python process importing torch: seconds).
            client.register(path, model_name=version.name, initial_workers=1)
        except ServiceUnavailable:
            raise
        except ModelVersionConflict:
            report.already_loaded.append(label)
            concurrent.add(label)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad archive must not stop the others
            report.failed[label] = f"{type(exc).__name__}: {exc}"
            continue
        report.registered.append(label)
        if (version.workers or 1) > 1:
            try:
                client.scale_workers(version.name, str(version.version), min_workers=version.workers, synchronous=False)
            except Exception:  # it serves with one worker meanwhile; the admin shows the count
                logger.warning(
                    "TorchServe sync: scaling %s to %s workers failed", label, version.workers, exc_info=True
                )
    for version in live:
        if version.status != ModelVersionStatus.DEFAULT or str(version) in report.failed or str(version) in concurrent:
            continue
        info = loaded[version.name].get(str(version.version))
        if info is None or not info.is_default:
            client.set_default(version.name, str(version.version))
            report.default_set = str(version)
    # What TorchServe has that the registry does not serve, under the names the registry knows.
    extra = {(model, number) for model, versions in loaded.items() for number in versions}
    extra -= {(v.name, str(v.version)) for v in live}
    if extra:
        by_key = {
            (row.name, str(row.version)): row
            for row in ModelVersion.objects.filter(name__in={m for m, _ in extra}).select_related("training_run")
        }
        active_runs = {
            row.training_run.pk
            for row in by_key.values()
            if row.training_run is not None
            and row.training_run.status in (TrainingRunStatus.RUNNING, TrainingRunStatus.QUEUED)
            and not _run_is_stale(row.training_run)
        }
        for model, number in sorted(extra):
            reason = _unload_reason(by_key.get((model, number)), active_runs)
            if reason is None:
                continue
            label = f"{model} v{number}"
            if loaded[model][number].is_default:
                reason += "; it was TorchServe's default"
            try:
                client.unregister(model, number)
            except ServiceUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. TorchServe's only (default) version: report it
                report.failed[label] = f"could not unload ({reason}): {type(exc).__name__}: {exc}"
                continue
            report.unloaded[label] = reason
            logger.warning("TorchServe sync: unloaded %s (%s)", label, reason)
        if report.unloaded:
            _remember_unloaded(report)
    for version in live:
        reason = report.failed.get(str(version))
        if reason:
            logger.error("TorchServe sync: %s: %s", version, reason)
            # Kept live in the registry: the archive may be restored, and the next sync retries.
            ModelVersion.objects.filter(pk=version.pk).update(note=f"TorchServe sync failed: {reason}")
    # Every few seconds: a line only when the sync did something.
    (logger.info if report.changed else logger.debug)("TorchServe sync: %s", report.summary())
    return report


def _run_is_stale(run: TrainingRun) -> bool:
    from recadmin.modelops.recovery import heartbeat_is_fresh

    return run.status == TrainingRunStatus.RUNNING and run.heartbeat_at is not None and not heartbeat_is_fresh(run)


def model_version_lookup(*, name: str, version: int | str) -> ModelVersion:
    try:
        number = int(version)
    except (TypeError, ValueError) as exc:
        raise ValidationError("Version must be an integer.", field="version") from exc
    found = ModelVersion.objects.filter(name=name, version=number).first()
    if found is None:
        raise NotFound(f"Model '{name}' has no version {number}.")
    return found


# --- nightly retraining ---------------------------------------------------------------------------

RETRAINING_TASK = "recadmin.modelops.tasks.scheduled_training"


def retraining_schedule_name(model_name: str) -> str:
    return f"Nightly retraining of {model_name}"


@transaction.atomic
def retraining_schedule_set(
    *,
    hour: int = 3,
    minute: int = 0,
    kind: str = ModelKind.SASREC,
    params: dict[str, Any] | None = None,
    model_name: str | None = None,
    enabled: bool = True,
) -> Any:
    """Create or update the django-celery-beat PeriodicTask that trains `model_name` every night.

    One task per model name, so running the command again edits it instead of adding a second
    schedule. It stays editable in the admin (Periodic tasks)."""
    import json

    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ValidationError("Hour must be between 0 and 23.", field="hour")
    if isinstance(minute, bool) or not isinstance(minute, int) or not 0 <= minute <= 59:
        raise ValidationError("Minute must be between 0 and 59.", field="minute")
    if kind not in ModelKind.values:
        raise ValidationError(f"Unknown model kind '{kind}'.", field="kind")
    cleaned = _validate_params(kind, params)
    name = model_name_resolve(model_name or (settings.RANKER_MODEL_NAME if kind == ModelKind.RANKER else None))
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=str(minute),
        hour=str(hour),
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    task, _ = PeriodicTask.objects.update_or_create(
        name=retraining_schedule_name(name),
        defaults={
            "task": RETRAINING_TASK,
            "crontab": schedule,
            "interval": None,
            "kwargs": json.dumps({"kind": kind, "params": cleaned, "model_name": name}),
            "enabled": enabled,
            "queue": "training",
            "description": f"Trains a new {kind} version of '{name}' at {hour:02d}:{minute:02d} "
            f"{settings.TIME_ZONE} and promotes it if it passes the gate.",
        },
    )
    return task


SYNC_TASK = "recadmin.modelops.tasks.sync_torchserve"
SYNC_SCHEDULE_NAME = "TorchServe sync (re-register live versions after a restart)"


@transaction.atomic
def torchserve_sync_schedule_ensure(*, every_seconds: int = 5, enabled: bool = True) -> Any:
    """The periodic sync: a restarted TorchServe comes back empty, and within seconds beat's (or the
    in-process scheduler's) `sync_torchserve` registers the live versions again. Cheap when nothing is
    missing. Editable in the admin like the retraining schedule."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    if isinstance(every_seconds, bool) or not isinstance(every_seconds, int) or every_seconds < 1:
        raise ValidationError("The sync interval must be at least 1 second.", field="every_seconds")
    interval, _ = IntervalSchedule.objects.get_or_create(every=every_seconds, period=IntervalSchedule.SECONDS)
    task, _ = PeriodicTask.objects.update_or_create(
        name=SYNC_SCHEDULE_NAME,
        defaults={
            "task": SYNC_TASK,
            "interval": interval,
            "crontab": None,
            "kwargs": "{}",
            "enabled": enabled,
            "queue": "default",
            "expire_seconds": 30,
            "description": "Registers in TorchServe every registered/default version it lacks (after a restart) "
            "and unloads versions the registry does not serve.",
        },
    )
    return task
