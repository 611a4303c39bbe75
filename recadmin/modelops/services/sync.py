"""The TorchServe sync: bring a TorchServe in line with the registry (register the live versions
it lacks from their archives, set the default, unload what the registry does not serve).

Run at start-up and every few seconds by the periodic `sync_torchserve` task: a restarted
TorchServe comes back empty, and this is what fills it again.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from recadmin.core.errors import ServiceUnavailable
from recadmin.modelops.archive import file_sha256
from recadmin.modelops.models import LIVE_STATUSES, ModelVersion, ModelVersionStatus, TrainingRun, TrainingRunStatus
from recadmin.modelops.selectors import UNLOADED_CACHE_KEY
from recadmin.modelops.services.common import torchserve_client

logger = logging.getLogger(__name__)


def torchserve_versions_loaded(*, name: str) -> dict[str, Any]:
    """{version string: ModelVersionInfo} of what TorchServe has for `name` (empty if none)."""
    from recadmin.modelops.torchserve import ModelNotRegistered

    try:
        return {info.version: info for info in torchserve_client().describe(name)}
    except ModelNotRegistered:
        return {}


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
    from recadmin.modelops.torchserve import ModelVersionConflict

    client = torchserve_client()
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
