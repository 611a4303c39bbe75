"""Schedule the TorchServe start-up sync (every 60 s through celery beat) on every install, so a
restarted TorchServe gets its live versions back without anyone running a command. Editable (or
disable-able) in the admin under Periodic tasks."""

from __future__ import annotations

from django.db import migrations

NAME = "TorchServe sync (re-register live versions after a restart)"


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=NAME).exists():
        return
    interval, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.create(
        name=NAME,
        task="recadmin.modelops.tasks.sync_torchserve",
        interval=interval,
        kwargs="{}",
        enabled=True,
        queue="training",
        description="Registers in TorchServe every registered/default version it lacks (after a restart).",
    )


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("modelops", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
