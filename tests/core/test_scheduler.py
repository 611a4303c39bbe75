"""The in-process scheduler runs beat's schedule (PeriodicTask rows and add_periodic_task entries)
in one process, under a file lock, and calls tasks by name."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from recadmin.core.scheduler import EmbeddedScheduler, FileLock, scheduler_enabled
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "scheduler.lock"


def _scheduler(lock_path: Path, **kwargs: Any) -> EmbeddedScheduler:
    kwargs.setdefault("per_process_tasks", [])
    kwargs.setdefault("max_interval", 0.5)
    kwargs.setdefault("follower_every", 0.5)
    return EmbeddedScheduler(lock_path=lock_path, **kwargs)


def _state(scheduler: EmbeddedScheduler) -> str:
    """What the scheduler was doing, for a failure message."""
    beat = scheduler.beat
    heap = [(round(event[0] - time.time(), 1), event[2].name) for event in sorted(beat._heap or [])] if beat else []
    return (
        f"leader={scheduler.is_leader} ticks={scheduler.ticks} runs={scheduler.runner.runs} "
        f"running={scheduler.runner.running} errors={scheduler.runner.last_error} due in (s)={heap}"
    )


def test_it_is_on_by_default_only_where_tasks_run_in_process(settings: Any) -> None:
    from recadmin.celery import app

    settings.SCHEDULER = "auto"
    previous = app.conf.task_always_eager
    try:
        app.conf.task_always_eager = True
        assert scheduler_enabled()
        app.conf.task_always_eager = False  # a broker and beat: beat does it
        assert not scheduler_enabled()
        settings.SCHEDULER = "on"
        assert scheduler_enabled()
        app.conf.task_always_eager = True
        settings.SCHEDULER = "off"
        assert not scheduler_enabled()
    finally:
        app.conf.task_always_eager = previous


def test_it_runs_the_add_periodic_task_entries_and_shows_them_as_periodic_tasks(lock_path: Path) -> None:
    from recadmin.serving.models import ServedRecommendation
    from recadmin.serving.served_log import served_log_backlog, served_log_drain, served_log_push

    served_log_drain()  # what earlier tests left in this process's buffer (a Redis outage test)
    served_log_push(record={"recommendation_id": "r-1", "items": [], "source": "popular", "endpoint": "popular"})
    assert served_log_backlog() == 1
    scheduler = _scheduler(lock_path).start()
    try:
        # serving's add_periodic_task entry drains every 5 s; its first run is due 5 s after start.
        drained = wait_for(lambda: ServedRecommendation.objects.filter(recommendation_id="r-1").exists(), timeout=30)
        assert drained, _state(scheduler)
    finally:
        scheduler.stop()
    assert scheduler.is_leader is False and served_log_backlog() == 0
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert {"serving: drain the served log", "modelops: fail stale training runs"} <= names


def test_it_runs_a_periodic_task_row_edited_in_the_admin(lock_path: Path) -> None:
    from recadmin.modelops.models import ModelVersion, ModelVersionStatus

    # An interval row like the ones made in the admin, calling a task by name (here the nightly
    # retraining's task, every second): it records a training run each time.
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="test: schedule a run",
        task="recadmin.modelops.tasks.scheduled_training",
        interval=every_second,
        kwargs=json.dumps({"kind": "pop", "params": {"min_events": 10**9}}),
    )
    from recadmin.modelops.models import TrainingRun

    scheduler = _scheduler(lock_path).start()
    try:
        assert wait_for(lambda: TrainingRun.objects.filter(trigger="schedule").count() >= 2, timeout=30)
    finally:
        scheduler.stop()
    run = TrainingRun.objects.filter(trigger="schedule").first()
    assert run is not None and run.status == "failed" and "at least" in run.error  # ran, found too few events
    assert not ModelVersion.objects.exclude(status=ModelVersionStatus.FAILED).exists()


def test_one_process_holds_the_lock_and_another_takes_over_when_it_stops(lock_path: Path) -> None:
    first = _scheduler(lock_path).start()
    second = _scheduler(lock_path).start()
    try:
        assert wait_for(lambda: first.is_leader or second.is_leader, timeout=20)
        time.sleep(1.5)
        assert first.is_leader != second.is_leader  # never both
        leader, follower = (first, second) if first.is_leader else (second, first)
        leader.stop()
        assert wait_for(lambda: follower.is_leader, timeout=20)
    finally:
        first.stop()
        second.stop()


def test_a_follower_runs_the_per_process_tasks_on_its_own_buffer(lock_path: Path) -> None:
    from recadmin.serving.models import ServedRecommendation
    from recadmin.serving.served_log import served_log_push

    holder = FileLock(lock_path)
    assert holder.acquire()  # another process holds the schedule
    follower = _scheduler(lock_path, per_process_tasks=["recadmin.serving.tasks.drain_served_log"]).start()
    try:
        served_log_push(record={"recommendation_id": "r-2", "items": [], "source": "popular", "endpoint": "popular"})
        assert wait_for(lambda: ServedRecommendation.objects.filter(recommendation_id="r-2").exists(), timeout=20)
        assert not follower.is_leader
    finally:
        follower.stop()
        holder.release()


def test_a_failing_task_is_logged_once_per_change_not_every_run(lock_path: Path, caplog: Any) -> None:
    from recadmin.celery import app
    from recadmin.core.scheduler import Runner

    runner = Runner(app, threads=1)
    with caplog.at_level("WARNING", logger="recadmin.scheduler"):
        for _ in range(3):
            runner.submit("recadmin.no_such_task", (), {})
            assert wait_for(lambda: not runner.running, timeout=5) is not None
    runner.shutdown()
    failures = [r.getMessage() for r in caplog.records if "recadmin.no_such_task" in r.getMessage()]
    assert len(failures) == 1 and "no task named" in failures[0]


THOMPSON = "experiments: Thompson sampling reallocation"


def _beat(kind: str, lock_path: Path) -> Any:
    """A new scheduler instance (what a restart of beat or of the web process makes): its
    setup_schedule copies the code's add_periodic_task entries into PeriodicTask rows."""
    from recadmin.celery import app
    from recadmin.core.beat import TunableDatabaseScheduler
    from recadmin.core.scheduler import Runner, _load_tasks, _make_scheduler_class

    _load_tasks(app)
    if kind == "beat":  # what `celery beat --scheduler recadmin.core.beat:...` (compose) instantiates
        assert app.conf.beat_scheduler == "recadmin.core.beat:TunableDatabaseScheduler"
        return TunableDatabaseScheduler(app=app, lazy=False)
    return _make_scheduler_class()(app=app, runner=Runner(app, threads=1), lazy=False)


@pytest.mark.parametrize("kind", ["beat", "embedded"])
def test_an_interval_tuned_in_the_admin_survives_a_new_scheduler(kind: str, lock_path: Path) -> None:
    from recadmin.experiments.tasks import ALLOCATION_EVERY_SECONDS

    _beat(kind, lock_path)
    row = PeriodicTask.objects.get(name=THOMPSON)
    assert row.interval is not None and row.interval.every == int(ALLOCATION_EVERY_SECONDS)
    # The admin: every 60 s instead of the code's default, and the drain disabled.
    row.interval, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    row.save()
    PeriodicTask.objects.filter(name="serving: drain the served log").update(enabled=False)

    scheduler = _beat(kind, lock_path)  # a restart
    row.refresh_from_db()
    assert row.interval is not None and row.interval.every == 60
    assert PeriodicTask.objects.get(name="serving: drain the served log").enabled is False
    assert scheduler.schedule[THOMPSON].schedule.run_every.total_seconds() == 60
    assert "serving: drain the served log" not in scheduler.schedule


@pytest.mark.parametrize("kind", ["beat", "embedded"])
def test_a_new_code_entry_is_still_created_with_the_codes_schedule(kind: str, lock_path: Path) -> None:
    _beat(kind, lock_path)
    PeriodicTask.objects.filter(name=THOMPSON).delete()  # as if the entry were new in this release
    sweep = PeriodicTask.objects.get(name="modelops: fail stale training runs")
    sweep.task, sweep.args = "recadmin.old.name", "[1]"  # what the code owns follows the code
    sweep.save()

    scheduler = _beat(kind, lock_path)
    from recadmin.experiments.tasks import ALLOCATION_EVERY_SECONDS

    row = PeriodicTask.objects.get(name=THOMPSON)
    assert row.enabled and row.interval is not None and row.interval.every == int(ALLOCATION_EVERY_SECONDS)
    assert THOMPSON in scheduler.schedule
    sweep.refresh_from_db()
    assert sweep.task == "recadmin.modelops.tasks.sweep_stale_runs" and sweep.args == "[]"
    # options={"expires": 50} reaches beat's row (the base scheduler dropped it).
    assert sweep.expire_seconds == 50
