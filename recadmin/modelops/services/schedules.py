"""The periodic tasks of the model lifecycle, as django-celery-beat rows editable in the admin:
the nightly retraining of a model, and the TorchServe sync every few seconds."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from recadmin.core.errors import ValidationError
from recadmin.modelops.models import ModelKind
from recadmin.modelops.services.common import model_name_default
from recadmin.modelops.services.params import training_params_validate

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
    cleaned = training_params_validate(kind=kind, params=params)
    name = model_name or model_name_default(kind=kind)
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
