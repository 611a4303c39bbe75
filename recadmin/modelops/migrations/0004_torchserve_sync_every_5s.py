"""The TorchServe sync every 5 s on the default queue (it was 60 s on the training queue, where it
waited behind training runs): a restarted TorchServe gets its versions back within seconds. Sends
that a busy worker has not started within 30 s expire instead of piling up."""

from __future__ import annotations

from django.db import migrations

NAME = "TorchServe sync (re-register live versions after a restart)"


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults={
            "task": "recadmin.modelops.tasks.sync_torchserve",
            "interval": interval,
            "crontab": None,
            "kwargs": "{}",
            "queue": "default",
            "expire_seconds": 30,
            "description": "Registers in TorchServe every registered/default version it lacks (after a restart) "
            "and unloads versions the registry does not serve.",
        },
    )
    # beat notices edits through this row's timestamp.
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.filter(name=NAME).update(interval=interval, queue="training", expire_seconds=None)


class Migration(migrations.Migration):
    dependencies = [
        ("modelops", "0003_training_run_heartbeat"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forward, backward)]
