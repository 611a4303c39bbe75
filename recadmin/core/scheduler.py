"""The in-process scheduler: celery beat's schedule, run inside a web process when beat is not used.

Without Redis there is no beat and no worker, yet the served log must be drained, a restarted
TorchServe re-synced, trending lists refreshed and the nightly retraining started. This module runs
**the same schedule as beat** — django-celery-beat's `PeriodicTask` rows (editable in the admin) and
every `app.add_periodic_task` entry, which beat's scheduler creates as rows when they do not exist yet
(`recadmin.core.beat`: the admin's tuning of an existing row wins) — with beat's own scheduling code
(`InProcessScheduler` is that `DatabaseScheduler`); only the dispatch differs:
a due task is called by name through the Celery app and runs in a small thread pool of this process.

One process does the schedule: whoever holds an exclusive `flock` on `SCHEDULER_LOCK_FILE` (under
var/). The others retry the lock every few seconds, so when the holder exits or dies another one takes
over, and meanwhile they run only `SCHEDULER_PER_PROCESS_TASKS` (work on a process-local buffer, such
as the served log's without Redis). A file lock binds processes of one machine: across machines run
celery beat.

Registering periodic work (for every app): in the app's `tasks.py`,

    @app.on_after_finalize.connect
    def _schedule(sender, **kwargs):
        sender.add_periodic_task(60.0, rollup.s(), name="metrics: roll up", options={"expires": 50})

Beat and this scheduler both pick it up, and it shows (and can be tuned or disabled) in the admin under
Periodic tasks. Give short periodic tasks an `expires` so that a busy worker does not run a backlog of
them. Schedules a person edits (a nightly time) are `PeriodicTask` rows made by a service.

Core imports no higher app: tasks are looked up by name in the Celery app (`app.tasks[name]`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings

from recadmin.core.observability.metrics import SCHEDULER_RUNS

logger = logging.getLogger("recadmin.scheduler")

# Seconds between attempts at the lock (and between runs of the per-process tasks) in a process that
# does not hold it: how long the schedule may pause when the holding process dies.
FOLLOWER_EVERY_SECONDS = 5.0


def scheduler_enabled() -> bool:
    """SCHEDULER=on/off, or auto: on where tasks run in-process (no broker, so no beat either)."""
    mode = str(getattr(settings, "SCHEDULER", "auto")).lower()
    if mode in {"on", "true", "1", "yes"}:
        return True
    if mode in {"off", "false", "0", "no"}:
        return False
    from recadmin.celery import app

    return bool(app.conf.task_always_eager)


def _load_tasks(app: Any) -> None:
    """Import every app's tasks module (as a worker or beat does), so that tasks are registered and
    their `add_periodic_task` entries land in `app.conf.beat_schedule`."""
    was_finalized = app.finalized
    app.loader.import_default_modules()
    app.finalize(auto=True)
    if was_finalized:
        # Finalized before some tasks module connected its on_after_finalize receiver (it imports
        # lazily in a web process): run the receivers again; add_periodic_task is keyed by name.
        app.on_after_finalize.send(sender=app)


def _make_scheduler_class() -> type:
    from recadmin.core.beat import TunableDatabaseScheduler

    class InProcessScheduler(TunableDatabaseScheduler):
        """beat's (recadmin's) DatabaseScheduler whose due entries run in this process instead of being sent."""

        # No broker connection: nothing is sent anywhere.
        producer = None

        def __init__(self, *args: Any, runner: Runner, **kwargs: Any) -> None:
            self.runner = runner
            super().__init__(*args, **kwargs)

        def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> None:
            entry = self.reserve(entry) if advance else entry
            self.runner.submit(entry.task, tuple(entry.args or ()), dict(entry.kwargs or {}), entry.name)
            if self.should_sync():
                self._do_sync()
            return None

    return InProcessScheduler


class Runner:
    """Runs tasks by name in a few threads; a task still running is not started a second time (a
    slow TorchServe registration must not pile up syncs every few seconds)."""

    def __init__(self, app: Any, *, threads: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recadmin-scheduler-task")
        self.running: set[str] = set()
        self.lock = threading.Lock()
        self.last_error: dict[str, str] = {}
        self.runs: dict[str, int] = {}

    def submit(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], entry: str = "") -> bool:
        with self.lock:
            if task in self.running:
                logger.debug("scheduler: %s still running, skipped", task)
                return False
            self.running.add(task)
        self.pool.submit(self._run, task, args, kwargs, entry or task)
        return True

    def _run(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], entry: str) -> None:
        from django.db import close_old_connections, connections

        close_old_connections()
        try:
            found = self.app.tasks.get(task)
            if found is None:
                raise LookupError(f"no task named {task!r} is registered")
            found.apply(args=args, kwargs=kwargs, throw=True)
        except Exception as exc:  # noqa: BLE001 - one failing task must not stop the schedule
            SCHEDULER_RUNS.labels(task, "error").inc()
            message = f"{type(exc).__name__}: {exc}"[:500]
            # One log line per change of state, not one every few seconds during an outage.
            if self.last_error.get(task) != message:
                logger.warning("scheduler: %s (%s) failed: %s", entry, task, message)
            self.last_error[task] = message
        else:
            SCHEDULER_RUNS.labels(task, "ok").inc()
            if self.last_error.pop(task, None) is not None:
                logger.info("scheduler: %s (%s) succeeds again", entry, task)
        finally:
            self.runs[task] = self.runs.get(task, 0) + 1
            with self.lock:
                self.running.discard(task)
            connections.close_all()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class FileLock:
    """A non-blocking exclusive flock; the OS releases it when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class EmbeddedScheduler:
    """The loop: hold the lock and tick beat's schedule, or run the per-process tasks and wait."""

    def __init__(
        self,
        *,
        lock_path: Path | None = None,
        per_process_tasks: list[str] | None = None,
        threads: int | None = None,
        max_interval: float | None = None,
        follower_every: float = FOLLOWER_EVERY_SECONDS,
    ) -> None:
        from recadmin.celery import app

        self.app = app
        self.lock = FileLock(Path(lock_path or settings.SCHEDULER_LOCK_FILE))
        self.per_process_tasks = list(
            settings.SCHEDULER_PER_PROCESS_TASKS if per_process_tasks is None else per_process_tasks
        )
        self.runner = Runner(app, threads=threads or settings.SCHEDULER_THREADS)
        self.max_interval = max_interval
        self.follower_every = follower_every
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.beat: Any = None
        self.ticks = 0

    @property
    def is_leader(self) -> bool:
        return self.beat is not None

    def start(self) -> EmbeddedScheduler:
        _load_tasks(self.app)
        self.thread = threading.Thread(target=self._loop, name="recadmin-scheduler", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
        self.runner.shutdown()
        if self.beat is not None:
            with contextlib.suppress(Exception):
                self.beat.sync()
            self.beat = None
        self.lock.release()

    def _become_leader(self) -> None:
        cls = _make_scheduler_class()
        kwargs: dict[str, Any] = {"app": self.app, "runner": self.runner, "lazy": False}
        if self.max_interval is not None:
            kwargs["max_interval"] = self.max_interval
        self.beat = cls(**kwargs)
        logger.info(
            "scheduler: this process (pid %s) runs the schedule: %s",
            os.getpid(),
            ", ".join(sorted(self.beat.schedule)) or "nothing yet",
        )

    def _loop(self) -> None:
        from django.db import close_old_connections

        next_follow = 0.0
        while not self.stop_event.is_set():
            wait = self.follower_every
            try:
                close_old_connections()
                if self.beat is None and self.lock.acquire():
                    try:
                        self._become_leader()
                    except Exception:
                        self.lock.release()
                        raise
                if self.beat is not None:
                    wait = float(self.beat.tick())
                    self.ticks += 1
                    if self.max_interval is not None:
                        wait = min(wait, self.max_interval)
                elif time.monotonic() >= next_follow:
                    next_follow = time.monotonic() + self.follower_every
                    for task in self.per_process_tasks:
                        self.runner.submit(task, (), {})
            except Exception:  # the database away (a restart): try again shortly
                logger.warning("scheduler: tick failed; retrying", exc_info=True)
                wait = self.follower_every
            self.stop_event.wait(max(wait, 0.0))
        from django.db import connections

        # This thread's database connection would otherwise outlive it (and keep a test database busy).
        connections.close_all()


_instance: EmbeddedScheduler | None = None
_instance_lock = threading.Lock()


def scheduler_start(**kwargs: Any) -> EmbeddedScheduler:
    """Start this process's scheduler thread (idempotent)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = EmbeddedScheduler(**kwargs).start()
        return _instance


def scheduler_start_if_enabled() -> EmbeddedScheduler | None:
    """For server processes (gunicorn's post_worker_init): start when SCHEDULER says so."""
    if not scheduler_enabled():
        return None
    return scheduler_start()


def scheduler_stop() -> None:
    global _instance
    with _instance_lock:
        if _instance is not None:
            _instance.stop()
            _instance = None


def scheduler_get() -> EmbeddedScheduler | None:
    return _instance
