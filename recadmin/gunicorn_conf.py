"""gunicorn settings: `gunicorn -c python:recadmin.gunicorn_conf recadmin.wsgi:application`.

- Prometheus multiprocess mode: every worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR
  (default var/prometheus/gunicorn-<master pid>, emptied at start), `/metrics` adds them up, and a
  dead worker's live values are dropped (`mark_process_dead`).
- The in-process scheduler (`recadmin.core.scheduler`) starts in each worker when SCHEDULER says so
  (auto: without a broker); one of them holds the lock and runs beat's schedule.
- Each worker warms what the first recommendation request needs before it accepts requests
  (`recadmin.serving.warmup`; SERVING_WARM_UP=false turns it off), then freezes its heap for the
  garbage collector (`heap_freeze`; SERVING_GC_FREEZE=false turns it off).
- gunicorn's own log lines go through the same redaction and format (LOG_FORMAT) as the app's, and
  the access log carries each request's id.

Command-line flags (--workers, --bind, ...) still apply on top of this file.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
from pathlib import Path
from typing import Any

from recadmin.env import BASE_DIR, env

_VAR_DIR = Path(env.str("RECADMIN_VAR_DIR", str(BASE_DIR / "var")))
_OWN_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_DIR:
    # Must be set before any worker imports prometheus_client (it picks its storage at import).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_VAR_DIR / "prometheus" / f"gunicorn-{os.getpid()}")
_METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

_LOG_FORMAT = env.str("LOG_FORMAT", "plain")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "recadmin.core.observability.logs.RedactFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "recadmin.core.observability.logs.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "gunicorn_console": {
            "class": "logging.StreamHandler",
            "formatter": _LOG_FORMAT if _LOG_FORMAT in {"plain", "json"} else "plain",
            "filters": ["redact"],
            "stream": "ext://sys.stderr",
        }
    },
    # The app's LOGGING (settings) configures the root logger in each worker.
    "root": {"level": "INFO", "handlers": []},
    "loggers": {
        "gunicorn.error": {"handlers": ["gunicorn_console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["gunicorn_console"], "level": "INFO", "propagate": False},
    },
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server: Any) -> None:
    """In the master, before workers: a fresh metrics directory; those of dead masters removed."""
    if _METRICS_DIR.exists():
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    _METRICS_DIR.mkdir(parents=True, exist_ok=True)
    if _OWN_DIR:
        for stale in _METRICS_DIR.parent.glob("gunicorn-*"):
            pid = stale.name.removeprefix("gunicorn-")
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)


def heap_freeze() -> int:
    """Move every object alive now into the collector's permanent generation; returns how many.

    A warmed worker holds ~200,000 tracked objects that live as long as it does (modules, the URL
    resolver, the scenes, item metadata). Every full collection walked them all: under load those
    pauses (300-700 ms, every thread of the worker stopped) were the worst latencies of the
    recommendations API (bench/serve.py, issue 9). Frozen, a full collection walks only what
    requests made since. Objects frozen are still freed when their last reference goes; only a
    reference cycle among them would stay, and the collect before the freeze clears those."""
    from django.conf import settings

    if not getattr(settings, "SERVING_GC_FREEZE", True):
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def post_worker_init(worker: Any) -> None:
    from recadmin.core.scheduler import scheduler_start_if_enabled

    scheduler_start_if_enabled()
    # Before the worker accepts requests: the first recommendation must not pay for cold caches,
    # connections and imports (issue 11). Best effort and bounded (recadmin.serving.warmup).
    with contextlib.suppress(Exception):
        from recadmin.serving.warmup import serving_warm_up

        serving_warm_up()
    # After the warm-up, so that what it loaded is frozen too.
    with contextlib.suppress(Exception):
        heap_freeze()


def worker_exit(server: Any, worker: Any) -> None:
    with contextlib.suppress(Exception):
        from recadmin.core.scheduler import scheduler_stop

        scheduler_stop()


def child_exit(server: Any, worker: Any) -> None:
    """In the master: the dead worker's gauges (live values) no longer count."""
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(_METRICS_DIR))


def on_exit(server: Any) -> None:
    if _OWN_DIR:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
