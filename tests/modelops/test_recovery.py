"""Training runs whose process dies: heartbeats, the stale-run sweep, the sync unloading what a dead
run left in TorchServe, and leftover working directories. One test kills a real Celery worker."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from recadmin.modelops.models import ModelVersion, TrainingRun, TrainingRunStatus, TrainingStage
from recadmin.modelops.recovery import Heartbeat, training_runs_sweep_stale, training_workdir_create
from tests.fixtures.torchserve import TorchServeInstance


def _running(*, heartbeat_ago: float | None, stage: str = TrainingStage.TRAINING) -> TrainingRun:
    now = timezone.now()
    return TrainingRun.objects.create(
        kind="pop",
        status=TrainingRunStatus.RUNNING,
        started_at=now - dt.timedelta(hours=1),
        heartbeat_at=None if heartbeat_ago is None else now - dt.timedelta(seconds=heartbeat_ago),
        current_stage=stage,
        worker="worker-1:4242",
    )


@pytest.mark.django_db
def test_the_sweep_fails_a_run_whose_heartbeat_is_stale_and_says_why(settings: Any) -> None:
    settings.TRAINING_VISIBILITY_TIMEOUT = 120
    dead = _running(heartbeat_ago=600, stage=TrainingStage.REGISTERING)
    alive = _running(heartbeat_ago=5)
    built = ModelVersion.objects.create(name="recommender", version=7, kind="pop", training_run=dead)

    report = training_runs_sweep_stale()

    dead.refresh_from_db()
    alive.refresh_from_db()
    built.refresh_from_db()
    assert report.failed_runs == [dead.pk]
    assert dead.status == "failed" and dead.failed_stage == "registering" and dead.finished_at is not None
    assert "worker-1:4242" in dead.error and "registering" in dead.error and "600s ago" in dead.error
    assert built.status == "failed" and f"#{dead.pk} died" in built.note
    assert alive.status == "running"
    # A second sweep has nothing left to do.
    assert training_runs_sweep_stale().failed_runs == []


@pytest.mark.django_db
def test_the_sweep_removes_working_directories_of_runs_that_no_longer_run(settings: Any, tmp_path: Path) -> None:
    settings.TRAINING_VISIBILITY_TIMEOUT = 120
    dead = _running(heartbeat_ago=900)
    alive = _running(heartbeat_ago=1)
    dead_dir = training_workdir_create(run_id=dead.pk)
    alive_dir = training_workdir_create(run_id=alive.pk)
    gone_dir = training_workdir_create(run_id=10**9)  # its run was deleted
    (dead_dir / "checkpoint.pt").write_bytes(b"x" * 1000)
    settings.MODEL_STORE = str(tmp_path / "store")
    stale_staging = tmp_path / "store" / "mar-abc123"
    fresh_staging = tmp_path / "store" / "mar-def456"
    stale_staging.mkdir(parents=True)
    fresh_staging.mkdir()
    os.utime(stale_staging, (time.time() - 3600, time.time() - 3600))
    try:
        report = training_runs_sweep_stale()
        assert not dead_dir.exists() and not gone_dir.exists()
        assert alive_dir.is_dir()
        assert str(dead_dir) in report.removed_dirs
        # Archive staging killed mid-archive: removed once old; a fresh one may be in use.
        assert not stale_staging.exists() and fresh_staging.is_dir()
    finally:
        import shutil

        for path in (dead_dir, alive_dir, gone_dir):
            shutil.rmtree(path, ignore_errors=True)


@pytest.mark.django_db
def test_a_run_the_sweep_failed_is_not_run_again_when_the_broker_delivers_it_again() -> None:
    from recadmin.modelops.services import training_run_execute

    run = _running(heartbeat_ago=900)
    training_runs_sweep_stale()
    run.refresh_from_db()
    error = run.error

    again = training_run_execute(run=run)

    assert again.status == "failed" and again.error == error


@pytest.mark.django_db
def test_a_delivery_of_a_run_another_live_process_runs_is_skipped() -> None:
    from recadmin.modelops.services import training_run_execute

    run = _running(heartbeat_ago=2)
    again = training_run_execute(run=run)
    assert again.status == "running" and again.worker == "worker-1:4242" and again.progress == 0


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_keeps_a_running_run_fresh() -> None:
    run = _running(heartbeat_ago=1000)
    with Heartbeat(run.pk, every=0.1):
        time.sleep(0.6)
    run.refresh_from_db()
    assert run.heartbeat_at is not None and (timezone.now() - run.heartbeat_at).total_seconds() < 2


def test_the_sync_unloads_what_a_run_killed_while_registering_left_loaded(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance, api_client: Any, settings: Any
) -> None:
    """Killed between TorchServe's register and the registry's update: v2 is loaded, its row says built."""
    from recadmin.modelops.services import models_sync_torchserve

    settings.TRAINING_VISIBILITY_TIMEOUT = 120
    make_version(1, status="default")
    run = _running(heartbeat_ago=3, stage=TrainingStage.REGISTERING)
    version = make_version(2, status="built", training_run=run)
    torchserve_settings.client.register(Path(version.archive_path).name, model_name="recommender", initial_workers=1)

    listed = api_client.get("/api/v1/models").json()["torchserve"]
    assert [(v["version"], v["registry_status"]) for v in listed["unknown_versions"]] == [("2", "built")]
    # While its run is alive the sync leaves it alone: it is being registered right now.
    assert models_sync_torchserve().unloaded == {}

    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=10))
    training_runs_sweep_stale()
    report = models_sync_torchserve()

    assert report.unloaded == {"recommender v2": "registry status failed"}
    assert {v.version for v in torchserve_settings.client.describe("recommender")} == {"1"}
    assert torchserve_settings.client.default_version("recommender") == "1"
    listed = api_client.get("/api/v1/models").json()["torchserve"]
    assert listed["unknown_versions"] == []
    assert [(e["version"], e["reason"]) for e in listed["unloaded_versions"]] == [
        ("recommender v2", "registry status failed")
    ]


def test_the_sync_unloads_a_version_registered_by_hand_under_a_registry_name(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance, archive_cache_dir: Path
) -> None:
    from recadmin.modelops.services import models_sync_torchserve

    make_version(1, status="default")
    stray = make_version(3, status="registered")
    ModelVersion.objects.filter(pk=stray.pk).delete()  # TorchServe has v3; the registry never heard of it

    report = models_sync_torchserve()

    assert report.unloaded == {"recommender v3": "unknown to the registry"}
    assert report.registered == [] and report.default_set == ""  # v1 was loaded and default: nothing else
    assert {v.version for v in torchserve_settings.client.describe("recommender")} == {"1"}


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_with_sigkill_during_training_leaves_a_run_the_sweep_fails(
    make_shop: Callable[..., None], torchserve_settings: TorchServeInstance, tmp_path: Path, settings: Any
) -> None:
    """A real `celery worker` trains a run and is SIGKILLed mid-training: the run stays `running`
    (nothing in that process can record anything), its heartbeat stops, and the sweep fails it with
    the reason and removes its working directory."""
    import tempfile

    from celery import Celery

    from recadmin.modelops.services import training_run_create
    from tests.fixtures.services import celery, celery_env, private_redis, wait_for

    make_shop(customers=200, items=60, length=20)
    queue = "training-faults"
    with private_redis(tmp_path / "redis") as redis_url:
        env = celery_env(redis_url, TRAINING_HEARTBEAT_SECONDS="1")
        worker = celery("worker", env, tmp_path / "worker.log", "-Q", queue, "--pool", "prefork", "-c", "1")
        try:
            run = training_run_create(
                kind="sasrec", params={"max_epochs": 500, "max_seconds": 300, "patience": 500}, enqueue=False
            )
            # Sent by an app of its own: the project app's router caches its routes on first use,
            # which other tests in this process override.
            sender = Celery("faults-sender", broker=redis_url, set_as_current=False)
            sender.send_task("recadmin.modelops.tasks.train_model", args=[run.pk], queue=queue)
            sender.close()

            def training() -> bool:
                run.refresh_from_db()
                return run.status == "running" and run.current_stage == "training" and run.heartbeat_at is not None

            assert wait_for(training, timeout=120), (run.status, run.stage, worker.output()[-3000:])
            workdirs = list(Path(tempfile.gettempdir()).glob(f"recadmin-run{run.pk}-*"))
            assert workdirs
            worker.kill_group(signal.SIGKILL)
            worker.process.wait(timeout=10)
            killed_at = timezone.now()
            time.sleep(3)
            run.refresh_from_db()
            assert run.status == "running"  # nothing could record the death
            assert run.heartbeat_at is not None and run.heartbeat_at <= killed_at

            settings.TRAINING_VISIBILITY_TIMEOUT = 2
            report = training_runs_sweep_stale()
        finally:
            worker.stop()
    run.refresh_from_db()
    assert report.failed_runs == [run.pk]
    assert run.status == "failed" and run.failed_stage == "training"
    assert "stopped during training" in run.error and "last heartbeat" in run.error
    assert not any(path.exists() for path in workdirs)


def test_a_version_another_sync_registered_meanwhile_is_loaded_not_a_failure(
    make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance, caplog: Any, monkeypatch: Any
) -> None:
    """After a TorchServe restart the periodic sync and the serving path's re-sync both find it empty;
    the one that registers second gets TorchServe's 409, which means "loaded", not a failure to log."""
    from recadmin.modelops.services import sync

    make_version(1, status="default")  # loaded by "the other sync" after this one looked
    monkeypatch.setattr(sync, "torchserve_versions_loaded", lambda *, name: {})  # what it saw: empty

    with caplog.at_level("ERROR", logger="recadmin.modelops.services"):
        report = sync.models_sync_torchserve()

    assert report.ok, report.summary()
    assert report.registered == [] and report.already_loaded == ["recommender v1"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert torchserve_settings.client.default_version("recommender") == "1"


class _RecordingClient:
    """What the sync asks of TorchServe, for a TorchServe that came back empty."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def describe(self, name: str) -> list[Any]:
        return []

    def register(self, path: Path, *, model_name: str, initial_workers: int) -> None:
        self.calls.append(("register", Path(path).name, initial_workers))

    def scale_workers(self, name: str, version: str, *, min_workers: int, synchronous: bool) -> None:
        self.calls.append(("scale", f"{name}-{version}", min_workers, synchronous))

    def set_default(self, name: str, version: str) -> None:
        self.calls.append(("default", f"{name}-{version}"))


@pytest.mark.django_db
def test_the_sync_registers_the_default_first_with_one_worker_and_scales_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a TorchServe restart lists come back once the default version has one worker: it is
    registered first, with one worker (the registration waits for it), and scaled up afterwards
    without waiting; a candidate version waits its turn."""
    from recadmin.modelops.models import ModelKind, ModelVersionStatus
    from recadmin.modelops.services import sync

    for number, status, workers in [(1, ModelVersionStatus.REGISTERED, 1), (2, ModelVersionStatus.DEFAULT, 3)]:
        archive = tmp_path / f"recommender-{number}.mar"
        archive.write_bytes(b"mar")
        ModelVersion.objects.create(
            name="recommender", version=number, kind=ModelKind.POP, archive_path=str(archive), status=status,
            workers=workers,
        )  # fmt: skip
    client = _RecordingClient()
    monkeypatch.setattr(sync, "torchserve_client", lambda: client)

    report = sync.models_sync_torchserve()

    assert report.registered == ["recommender v2", "recommender v1"]
    assert client.calls == [
        ("register", "recommender-2.mar", 1),
        ("scale", "recommender-2", 3, False),
        ("register", "recommender-1.mar", 1),
        ("default", "recommender-2"),
    ]
