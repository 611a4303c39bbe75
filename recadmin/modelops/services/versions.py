"""The life of a model version after its run: promotion (TorchServe's default first, then the
registry), rollback, retirement, workers, and the clean-up of a failed run's registration.

Every TorchServe call goes through `recadmin.modelops.torchserve` (the adapter). Each change of a
default drops the cached default (after commit too), which serving reads on every request.
"""

from __future__ import annotations

import contextlib

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from recadmin.core.errors import Conflict, NotFound, ValidationError
from recadmin.modelops.models import LIVE_STATUSES, ModelVersion, ModelVersionStatus
from recadmin.modelops.selectors import default_cache_key, model_name_resolve, model_version_previous_default
from recadmin.modelops.services.common import MAX_WORKERS, torchserve_client


def torchserve_unregister_quietly(*, name: str, version: int | str, fallback_default: int | str | None = None) -> str:
    """Remove a version, never raising: used to clean up after a failed pipeline. Returns what
    happened, for the run's log."""
    from recadmin.modelops.torchserve import ModelNotRegistered, TorchServeError, TorchServeUnavailable

    client = torchserve_client()
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
    torchserve_client().set_default(version.name, str(version.version))
    return model_version_mark_default(version=version, note=note or "Promoted by hand.")


def model_version_rollback(*, name: str | None = None) -> ModelVersion:
    """Make the previous default the default again; the abandoned one stays registered."""
    name = model_name_resolve(name)
    current = ModelVersion.objects.filter(name=name, status=ModelVersionStatus.DEFAULT).first()
    previous = model_version_previous_default(name=name)
    if previous is None:
        raise Conflict(f"There is no previous default of '{name}' to roll back to.")
    torchserve_client().set_default(name, str(previous.version))
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
            torchserve_client().unregister(version.name, str(version.version))
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
    torchserve_client().scale_workers(version.name, str(version.version), min_workers=workers)
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


def model_version_lookup(*, name: str, version: int | str) -> ModelVersion:
    try:
        number = int(version)
    except (TypeError, ValueError) as exc:
        raise ValidationError("Version must be an integer.", field="version") from exc
    found = ModelVersion.objects.filter(name=name, version=number).first()
    if found is None:
        raise NotFound(f"Model '{name}' has no version {number}.")
    return found
