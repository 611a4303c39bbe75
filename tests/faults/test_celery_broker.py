"""The Celery broker (Redis) goes away while a worker runs a task, and comes back: the worker stays up,
reconnects, and runs tasks again. Before recadmin.core.broker, celery 5.7 / kombu 5.7 workers exited
here with "Unrecoverable error: AttributeError: 'NoneType' object has no attribute 'hostname'"."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery

from tests.fixtures.services import Proc, RestartableRedis, celery, celery_env, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

OUTAGE_SECONDS = 10
QUEUE = "broker-faults"


def _send(url: str, name: str, *args: object) -> None:
    # An app of its own, made anew for each send: the project app's router caches its routes, and a
    # producer connection from before the outage would be stale.
    sender = Celery("faults-sender", broker=url, set_as_current=False)
    try:
        sender.send_task(name, args=list(args), queue=QUEUE)
    finally:
        sender.close()


def _worker_alive(worker: Proc) -> bool:
    return worker.process.poll() is None


def test_a_worker_survives_the_broker_stopping_mid_task_and_runs_tasks_after(tmp_path: Path) -> None:
    redis = RestartableRedis(tmp_path / "redis")
    redis.start()
    # Two pool processes: with one busy, the worker keeps a BRPOP waiting for the next message, and
    # the connection error arriving while it waits is the path that made the worker exit.
    worker = celery(
        "worker", celery_env(redis.url), tmp_path / "worker.log",
        "-I", "tests.fixtures.broker_tasks", "-Q", QUEUE, "--pool", "prefork", "-c", "2",
    )  # fmt: skip
    started, done, after = tmp_path / "started", tmp_path / "done", tmp_path / "after"
    try:
        assert wait_for(lambda: "ready." in worker.output(), timeout=60), worker.output()[-3000:]
        # A late-acknowledged task is running (unacknowledged) when the broker goes: the case that
        # made the worker exit, as it must restore that message while closing the dead connection.
        _send(redis.url, "tests.broker.sleep", str(started), OUTAGE_SECONDS / 2, str(done))
        assert wait_for(started.exists, timeout=30), worker.output()[-3000:]
        redis.stop()
        lost = wait_for(lambda: "Connection to broker lost" in worker.output(), timeout=10)
        assert lost is not None, worker.output()[-3000:]
        time.sleep(OUTAGE_SECONDS)
        assert _worker_alive(worker), worker.output()[-5000:]
        redis.start()
        # The worker retries with a growing interval (2 s, 4 s, ...): back within the next attempt.
        reconnected = wait_for(lambda: worker.output().count("Connected to") >= 2, timeout=40)
        assert reconnected is not None, worker.output()[-5000:]
        _send(redis.url, "tests.broker.touch", str(after))
        ran = wait_for(after.exists, timeout=30)
        assert ran is not None, worker.output()[-5000:]
        print(
            f"\nbroker down {OUTAGE_SECONDS}s: the worker reconnected {reconnected:.1f}s after Redis was back "
            f"and ran a task {ran:.1f}s after that"
        )
        assert _worker_alive(worker)
        assert done.exists()  # the task running during the outage was not cancelled
        assert "Unrecoverable error" not in worker.output()
    finally:
        worker.stop()
        redis.stop()
