"""Celery tasks, the nightly schedule and the sync command."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_celery_beat.models import PeriodicTask

from recadmin.modelops.models import ModelVersion, TrainingRun
from recadmin.modelops.pipeline import gate_decide
from recadmin.modelops.selectors import default_model_get
from recadmin.modelops.tasks import scheduled_training, sync_torchserve, train_model
from tests.fixtures.torchserve import TorchServeInstance

pytestmark = pytest.mark.django_db


def test_schedule_retraining_creates_one_editable_periodic_task_and_updates_it() -> None:
    call_command(
        "schedule_retraining", "--hour", "3", "--kind", "sasrec", "--params", '{"max_epochs": 30}', stdout=StringIO()
    )
    call_command("schedule_retraining", "--hour", "4", "--minute", "30", "--kind", "sasrec", stdout=StringIO())

    task = PeriodicTask.objects.get(task="recadmin.modelops.tasks.scheduled_training")
    assert (task.crontab.hour, task.crontab.minute) == ("4", "30")
    assert json.loads(task.kwargs) == {"kind": "sasrec", "params": {}, "model_name": "recommender"}
    assert task.enabled and task.queue == "training"
    sync = PeriodicTask.objects.get(task="recadmin.modelops.tasks.sync_torchserve")
    assert sync.interval.every == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hour", "25"], "Hour must be between 0 and 23"),
        (["--params", "{nope"], "--params is not valid JSON"),
        (["--params", '{"epoch": 3}'], "Unknown parameter 'epoch'"),
    ],
)
def test_schedule_retraining_refuses_bad_input(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("schedule_retraining", *args, stdout=StringIO())
    assert not PeriodicTask.objects.filter(task="recadmin.modelops.tasks.scheduled_training").exists()


def test_the_scheduled_task_records_a_run_and_starts_it(
    make_shop: Callable[..., None], torchserve_settings: TorchServeInstance, django_capture_on_commit_callbacks: Any
) -> None:
    make_shop()
    with django_capture_on_commit_callbacks(execute=True):
        run_id = scheduled_training.delay(kind="pop", params={}, model_name="recommender").get()
    run = TrainingRun.objects.get(pk=run_id)
    assert run.trigger == "schedule" and run.status == "succeeded", run.error


def test_train_model_ignores_a_deleted_run() -> None:
    assert train_model.delay(123456).get() == {"run": 123456, "status": "missing"}


def test_the_sync_task_and_command_register_missing_versions(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="default")
    torchserve_settings.client.unregister("recommender", "1")

    result = sync_torchserve.delay().get()

    assert result["registered"] == ["recommender v1"] and result["default"] == "recommender v1"
    out = StringIO()
    call_command("sync_torchserve", stdout=out)
    assert "already loaded recommender v1" in out.getvalue()


def test_the_sync_command_fails_clearly_when_torchserve_is_down(settings: Any) -> None:
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5
    ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default", archive_path="/x.mar")
    with pytest.raises(CommandError, match="did not answer"):
        call_command("sync_torchserve", stdout=StringIO())


@pytest.mark.parametrize(
    ("new", "old", "tolerance", "promote"),
    [
        (0.050, 0.049, 0.0, True),
        (0.049, 0.049, 0.0, True),
        (0.048, 0.049, 0.0, False),
        (0.048, 0.049, 0.002, True),
        (None, 0.049, 0.0, False),
        (0.01, None, 0.0, True),
    ],
)
def test_the_gate_compares_validation_ndcg_at_10_with_the_tolerance(
    new: float | None, old: float | None, tolerance: float, promote: bool
) -> None:
    candidate = ModelVersion(name="r", version=2, valid_metrics={} if new is None else {"NDCG@10": new})
    current = ModelVersion(name="r", version=1, valid_metrics={} if old is None else {"NDCG@10": old})
    decided, reason = gate_decide(candidate=candidate, current=current, tolerance=tolerance)
    assert decided is promote
    assert reason


def test_the_first_version_always_passes_the_gate() -> None:
    decided, reason = gate_decide(candidate=ModelVersion(name="r", version=1), current=None, tolerance=0.0)
    assert decided and "first version" in reason


def test_the_default_selector_is_cached_and_needs_no_query_when_warm(django_assert_num_queries: Any) -> None:
    ModelVersion.objects.create(name="recommender", version=3, kind="sasrec", status="default")
    assert default_model_get().version == 3
    with django_assert_num_queries(0):
        assert default_model_get().version == 3
        assert default_model_get(name="recommender").kind == "sasrec"


def test_only_one_default_per_name_is_possible() -> None:
    from django.db import IntegrityError, transaction

    ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="recommender", version=2, kind="pop", status="default")
    ModelVersion.objects.create(name="other", version=1, kind="pop", status="default")


@pytest.mark.postgres
@pytest.mark.slow
def test_without_a_broker_a_run_can_train_in_a_child_process_that_sees_the_same_database(
    transactional_db: None,
    make_shop: Callable[..., None],
    torchserve_settings: TorchServeInstance,
    settings: Any,
    tmp_path: Any,
) -> None:
    """MODELOPS_TRAIN_IN_SUBPROCESS: the web request returns at once and a `manage.py train --run`
    child (torch-free parent) does the work, against this test's database and TorchServe."""
    import time

    from recadmin.modelops.services import training_run_create

    settings.MODELOPS_TRAIN_IN_SUBPROCESS = True
    settings.VAR_DIR = tmp_path
    make_shop()

    run = training_run_create(kind="pop")  # no surrounding transaction: dispatched at once
    run.refresh_from_db()
    assert run.celery_task_id.startswith("pid:")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.is_finished:
            break
        time.sleep(0.5)
    log = (tmp_path / "training" / f"run-{run.pk}.log").read_text()
    assert run.status == "succeeded", (run.error, log[-2000:])
    assert ModelVersion.objects.get(training_run=run).status == "default"
    assert torchserve_settings.client.default_version("recommender") == "1"


def test_the_torchserve_sync_is_scheduled_every_five_seconds_on_the_default_queue() -> None:
    import importlib

    from django.apps import apps

    if not PeriodicTask.objects.filter(task="recadmin.modelops.tasks.sync_torchserve").exists():
        # The row comes from a data migration; a transactional test run earlier in this process (two
        # files per process under xdist) flushes the tables. The migration is idempotent: apply it again.
        importlib.import_module("recadmin.modelops.migrations.0004_torchserve_sync_every_5s").forward(apps, None)
    sync = PeriodicTask.objects.get(task="recadmin.modelops.tasks.sync_torchserve")
    assert sync.enabled and sync.interval.every == 5 and sync.interval.period == "seconds"
    # Not behind an hour of training on the training queue; unsent ones expire rather than pile up.
    assert sync.queue == "default" and sync.expire_seconds == 30


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_with_redis_a_real_celery_worker_runs_the_training_task(
    transactional_db: None, make_shop: Callable[..., None], torchserve_settings: TorchServeInstance, tmp_path: Any
) -> None:
    """The deployment path: the run is enqueued on Redis and a separate `celery worker` process
    (here on a private queue, against this test's database and TorchServe) trains and registers it."""
    import os
    import subprocess
    import sys
    import time

    from django.conf import settings

    from recadmin.celery import app
    from recadmin.modelops.services import _child_environment, training_run_create

    make_shop()
    queue = f"training-test-{os.getpid()}"
    env = {
        **_child_environment(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "recadmin", "worker", "-Q", queue, "--pool", "solo", "-l", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    previous = (app.conf.task_always_eager, app.conf.task_routes, app.conf.broker_url)
    app.conf.task_always_eager = False
    app.conf.task_routes = {"recadmin.modelops.tasks.*": {"queue": queue}}
    try:
        run = training_run_create(kind="pop", trigger="api")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.is_finished:
                break
            time.sleep(0.5)
    finally:
        app.conf.task_always_eager, app.conf.task_routes, app.conf.broker_url = previous
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    output = (tmp_path / "worker.log").read_text(errors="replace")
    assert run.status == "succeeded", (run.status, run.error, output[-3000:])
    assert run.celery_task_id and not run.celery_task_id.startswith("pid:")
    assert "recadmin.modelops.tasks.train_model" in output
    assert torchserve_settings.client.default_version("recommender") == "1"


@pytest.mark.parametrize(("new", "old"), [(0.087612, 0.087624), (0.0876231, 0.0876239), (0.08764, 0.08761)])
def test_the_gate_message_shows_enough_digits_to_see_the_difference(new: float, old: float) -> None:
    candidate = ModelVersion(name="r", version=2, valid_metrics={"NDCG@10": new})
    current = ModelVersion(name="r", version=1, valid_metrics={"NDCG@10": old})
    decided, reason = gate_decide(candidate=candidate, current=current, tolerance=0.0)
    shown = re.search(r"NDCG@10 (\S+) ([<>]=?) (\S+) \((?:margin )?([-+][0-9.]+)", reason)
    assert shown, reason
    left, op, right, margin = shown.groups()
    assert decided is (new >= old)
    assert left != right, reason
    assert (float(left) < float(right)) is (op == "<")
    assert float(margin) == pytest.approx(new - old, rel=0.1)
