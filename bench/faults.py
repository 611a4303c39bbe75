"""Faults under load against a production-like recadmin: what breaks, what is lost, how fast it heals.

    .venv/bin/python bench/faults.py                      # every fault, ~10 minutes
    .venv/bin/python bench/faults.py --faults redis_pause,torchserve_kill --hold 10

It starts its own private services and never touches the shared ones (PostgreSQL on 5432, Redis on
6379, which other test runs use): a PostgreSQL 15 cluster (initdb/pg_ctl in a temporary directory, on
a free port), a redis-server on a free port, TorchServe on free ports (token auth on), gunicorn with 2
workers (recadmin.gunicorn_conf), a Celery worker (queues default and training) and Celery beat. A demo
shop is generated and a popularity model trained, registered and made default. Then steady traffic
runs throughout (recommendation clients and an ingestion client that re-sends a batch until it is
acknowledged, as a shop's client would) while these faults are injected one after another:

  redis_pause       CLIENT PAUSE (Redis accepts connections and answers nothing) for --hold seconds
  redis_stop        redis-server stopped for 20 s, then started again (empty: no persistence)
  torchserve_kill   TorchServe SIGKILLed, then started again (empty: the sync re-registers the model)
  postgres_restart  pg_ctl restart -m fast
  postgres_stop     PostgreSQL stopped for 10 s, then started again
  worker_kill       a training run started, the Celery worker SIGKILLed mid-training, a new worker started

For each: requests, non-2xx answers by code (and client-side errors), how many of those were not JSON
and how many 503s came without Retry-After (the ingestion client honours it), events acknowledged
against events stored, the recommendation latency during the fault (p50, p95, max), the fallback share,
the log lines, tracebacks and Redis circuit-breaker lines the processes wrote, and the recovery time
(from the fault's end to the first 3 s of answers that are all 2xx and, for TorchServe, from the
model). Progress is printed as it goes; everything is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PYTHON = sys.executable
ALL_FAULTS = ("redis_pause", "redis_stop", "torchserve_kill", "postgres_restart", "postgres_stop", "worker_kill")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(every)
    return False


# --------------------------------------------------------------------------------------------
# Private services
# --------------------------------------------------------------------------------------------


def _as_postgres_user() -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.port = free_port()
        self.log = root / "postgres.log"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-w", *args],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.log, "postgres")
            self.dir.parent.chmod(0o755)
        subprocess.run(
            [
                *_as_postgres_user(),
                str(PG_BIN / "initdb"),
                "-D",
                str(self.dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(self.dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "fsync = off\nsynchronous_commit = off\nmax_connections = 100\n"
            )
        self.start()
        subprocess.run(
            [
                *_as_postgres_user(),
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "recadmin",
            ],
            check=True,
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/recadmin"


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_until(lambda: self.client().ping(), 10):
            raise RuntimeError("private redis-server did not start")

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()
        return self

    def signal_group(self, sig: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.process.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# Traffic
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    kind: str  # "rec" or "events"
    status: str  # "200", "503", "error:Timeout" ...
    seconds: float
    source: str = ""
    # For non-2xx answers: whether the body was JSON and a 503 carried Retry-After (the contract).
    json_body: bool = True
    retry_after: float | None = None


def _sample(started: float, kind: str, response: Any, source: str = "") -> Sample:
    seconds = time.monotonic() - started
    status = response.status_code
    if 200 <= status < 300:
        return Sample(started, kind, str(status), seconds, source)
    retry = response.headers.get("Retry-After")
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    json_body = response.headers.get("Content-Type", "").startswith("application/json")
    return Sample(started, kind, str(status), seconds, source, json_body=json_body, retry_after=retry_after)


@dataclass
class Traffic:
    base: str
    key: str
    customers: list[str]
    items: list[str]
    rec_clients: int = 3
    batch: int = 20
    samples: list[Sample] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _session(self) -> Any:
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        return session

    def _record(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def _recommend(self, seed: int) -> None:
        rng = random.Random(seed)
        session = self._session()
        while not self.stop.is_set():
            started = time.monotonic()
            params = {"customer": rng.choice(self.customers), "scene": "home", "n": 10}
            try:
                response = session.get(f"{self.base}/api/v1/recommendations", params=params, timeout=30)
                source = response.json().get("source", "") if response.status_code == 200 else ""
                self._record(_sample(started, "rec", response, source))
            except Exception as exc:  # noqa: BLE001 - a refused or timed-out request is a figure too
                self._record(Sample(started, "rec", f"error:{type(exc).__name__}", time.monotonic() - started))
                time.sleep(0.2)
            time.sleep(0.02)

    def _ingest(self) -> None:
        """Batches of new events, each re-sent until the server acknowledges it (2xx), as a client would."""
        rng = random.Random(99)
        session = self._session()
        pending: list[dict[str, Any]] | None = None
        while not self.stop.is_set():
            if pending is None:
                now = time.time()
                pending = [
                    {
                        "event_id": uuid.uuid4().hex,
                        "customer": rng.choice(self.customers),
                        "item": rng.choice(self.items),
                        "type": rng.choice(["view", "view", "view", "click", "add_to_cart", "purchase"]),
                        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "Z",
                    }
                    for _ in range(self.batch)
                ]
                with self.lock:
                    self.sent.update(row["event_id"] for row in pending)
            started = time.monotonic()
            try:
                response = session.post(f"{self.base}/api/v1/events", json=pending, timeout=30)
                sample = _sample(started, "events", response)
                self._record(sample)
                if sample.retry_after:  # as a well-behaved client: wait what the server asks (capped)
                    self.stop.wait(min(sample.retry_after, 5.0))
                if response.status_code in (200, 207):
                    refused = {e["index"] for e in response.json().get("errors", [])}
                    with self.lock:
                        self.acknowledged.update(r["event_id"] for i, r in enumerate(pending) if i not in refused)
                    pending = None
            except Exception as exc:  # noqa: BLE001
                self._record(Sample(started, "events", f"error:{type(exc).__name__}", time.monotonic() - started))
            time.sleep(0.25)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._recommend, args=(i,), daemon=True) for i in range(self.rec_clients)]
        threads.append(threading.Thread(target=self._ingest, daemon=True))
        for thread in threads:
            thread.start()
        return threads

    def window(self, start: float, end: float) -> list[Sample]:
        with self.lock:
            return [s for s in self.samples if start <= s.at < end]

    def recovered_at(self, since: float, *, model: bool, steady: float = 3.0, timeout: float = 120.0) -> float | None:
        """When things were back after `since`. With `model`: the first recommendation from the model
        (the goal: within 10 s of TorchServe answering). Otherwise: the start of the first `steady`
        seconds in which every request was answered 2xx. None if that never happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                after = sorted((s for s in self.samples if s.at >= since), key=lambda s: s.at)
            if model:
                first = next((s for s in after if s.kind == "rec" and s.source == "model"), None)
                if first is not None:
                    return first.at
            else:
                bad = [s.at for s in after if not s.status.startswith("2")]
                start = max(bad, default=since)
                covered = [s for s in after if s.at > start]
                if covered and covered[-1].at - start >= steady and len(covered) >= 5:
                    return start
            time.sleep(0.5)
        return None


# --------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pg = PrivatePostgres(root)
        self.redis = PrivateRedis(root)
        self.http_port = free_port()
        self.env = dict(os.environ)
        for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR"):
            self.env.pop(name, None)
        self.procs: dict[str, Proc] = {}
        self.torchserve_config: Any = None
        self.key = ""

    def configure(self) -> None:
        self.env.update(
            {
                "DATABASE_URL": self.pg.url,
                "REDIS_URL": self.redis.url,
                "RECADMIN_VAR_DIR": str(self.root / "var"),
                "MODEL_STORE": str(self.root / "model_store"),
                "SECRET_KEY": "faults-bench-" + uuid.uuid4().hex,
                "TORCHSERVE_INFERENCE_URL": f"http://127.0.0.1:{free_port()}",
                "TORCHSERVE_MANAGEMENT_URL": f"http://127.0.0.1:{free_port()}",
                "TORCHSERVE_METRICS_URL": f"http://127.0.0.1:{free_port()}",
                "TORCHSERVE_GRPC_INFERENCE_PORT": str(free_port()),
                "TORCHSERVE_GRPC_MANAGEMENT_PORT": str(free_port()),
                "TORCHSERVE_TOKEN_AUTH": "true",
                "LOG_LEVEL": "WARNING",
                # Short enough to see the sweep within the bench; the defaults are 15 s / 120 s.
                "TRAINING_HEARTBEAT_SECONDS": "3",
                "TRAINING_VISIBILITY_TIMEOUT": "20",
                "RECADMIN_ENV_FILE": str(self.root / "no.env"),
            }
        )
        os.environ.update(self.env)  # this process reads the same database and TorchServe (django.setup)

    def manage(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def start_torchserve(self) -> None:
        from recadmin.modelops.torchserve import torchserve_start

        torchserve_start(self.torchserve_config, ready_timeout=120)

    def kill_torchserve(self) -> None:
        from recadmin.modelops.torchserve import torchserve_stop

        torchserve_stop(self.torchserve_config, timeout=20, graceful=False)

    def proc(self, name: str, args: list[str]) -> Proc:
        self.procs[name] = Proc(name, args, self.env, self.root).start()
        return self.procs[name]

    def worker(self) -> Proc:
        return self.proc(
            "worker",
            [PYTHON, "-m", "celery", "-A", "recadmin", "worker", "-Q", "default,training", "-c", "2", "-l", "warning"],
        )

    def up(self, *, items: int, customers: int, events: int) -> dict[str, Any]:
        log(f"PostgreSQL 15 (private, port {self.pg.port}) and Redis (private, port {self.redis.port})")
        self.pg.init()
        self.redis.start()
        self.configure()
        log("migrate, demo shop, scenes, API key")
        self.manage("migrate", "--noinput")
        self.manage(
            "generate_demo_shop",
            "--items",
            str(items),
            "--customers",
            str(customers),
            "--events",
            str(events),
            "--no-progress",
        )
        self.manage("seed_scenes")
        key = self.manage("create_api_key", "faults", "--scopes", "ingest,recommend,manage").strip().splitlines()[-1]
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recadmin.settings")
        django.setup()
        from recadmin.modelops.torchserve import TorchServeConfig

        self.torchserve_config = TorchServeConfig.from_settings()
        log("TorchServe (token auth on)")
        self.start_torchserve()
        log("training a popularity model and registering it as the default")
        self.manage("train", "--kind", "pop", "--no-progress")
        log(f"gunicorn (2 workers) on :{self.http_port}, Celery worker and beat")
        self.proc(
            "web",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "recadmin.wsgi:application",
                "-c",
                "python:recadmin.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{self.http_port}",
                "--workers",
                "2",
                "--timeout",
                "60",
            ],
        )
        self.worker()
        self.proc(
            "beat",
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "recadmin",
                "beat",
                "-l",
                "warning",
                "--scheduler",
                "recadmin.core.beat:TunableDatabaseScheduler",
                "--pidfile",
                "",
            ],
        )
        import requests

        if not wait_until(lambda: requests.get(f"{self.base}/healthz", timeout=2).ok, 60):
            raise RuntimeError("gunicorn did not answer")
        from recadmin.catalog.models import Customer, Item
        from recadmin.events.models import Event

        with_events = list(Event.objects.order_by().values_list("customer__shop_id", flat=True).distinct()[:300])
        return {
            "key": key,
            "customers": with_events or list(Customer.objects.values_list("shop_id", flat=True)[:300]),
            "items": list(Item.objects.values_list("shop_id", flat=True)[:500]),
        }

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def down(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(Exception):
                proc.stop()
        if self.torchserve_config is not None:
            with contextlib.suppress(Exception):
                self.kill_torchserve()
        self.redis.stop()
        self.pg.stop("immediate")


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def fault_redis_pause(stack: Stack, hold: float) -> dict[str, Any]:
    stack.redis.client().execute_command("CLIENT", "PAUSE", int(hold * 1000), "ALL")
    time.sleep(hold)
    return {}


def fault_redis_stop(stack: Stack, hold: float) -> dict[str, Any]:
    stack.redis.stop()
    time.sleep(20)
    stack.redis.start()
    return {"note": "Redis restarted empty (no persistence): history, caches and the broker queue were lost"}


def fault_torchserve_kill(stack: Stack, hold: float) -> dict[str, Any]:
    stack.kill_torchserve()
    time.sleep(min(hold, 5))
    started = time.monotonic()
    stack.start_torchserve()
    return {"torchserve_start_seconds": round(time.monotonic() - started, 1), "recovery_from": "torchserve_up"}


def fault_postgres_restart(stack: Stack, hold: float) -> dict[str, Any]:
    stack.pg.restart()
    return {}


def fault_postgres_stop(stack: Stack, hold: float) -> dict[str, Any]:
    stack.pg.stop("fast")
    time.sleep(10)
    stack.pg.start()
    return {}


def fault_worker_kill(stack: Stack, hold: float) -> dict[str, Any]:
    import requests
    from django.db import connections

    from recadmin.modelops.models import TrainingRun

    connections.close_all()  # the bench's own connection did not survive the PostgreSQL faults
    response = requests.post(
        f"{stack.base}/api/v1/training-runs",
        headers={"Authorization": f"Bearer {stack.key}"},
        json={"kind": "sasrec", "params": {"max_epochs": 400, "max_seconds": 600, "patience": 400}},
        timeout=30,
    )
    response.raise_for_status()
    run_id = response.json()["id"]

    def training() -> bool:
        run = TrainingRun.objects.get(pk=run_id)
        return run.status == "running" and run.current_stage == "training"

    if not wait_until(training, 180, every=0.5):
        return {"error": "the run never reached training", "run": run_id}
    workdirs = list(Path(tempfile.gettempdir()).glob(f"recadmin-run{run_id}-*"))
    stack.procs["worker"].signal_group(signal.SIGKILL)
    killed = time.monotonic()
    log(f"  worker SIGKILLed during run #{run_id}'s training; starting a new worker")
    time.sleep(3)
    still_running = TrainingRun.objects.get(pk=run_id).status == "running"
    stack.worker()
    ended = wait_until(lambda: TrainingRun.objects.get(pk=run_id).status != "running", 240, every=1)
    run = TrainingRun.objects.get(pk=run_id)
    return {
        "run": run_id,
        "running_right_after_the_kill": still_running,
        "final_status": run.status,
        "seconds_until_failed_by_the_sweep": round(time.monotonic() - killed, 1) if ended else None,
        "error": run.error[:240],
        "workdirs_left": [str(p) for p in workdirs if p.exists()],
        "visibility_timeout": stack.env["TRAINING_VISIBILITY_TIMEOUT"],
    }


FAULTS = {
    "redis_pause": fault_redis_pause,
    "redis_stop": fault_redis_stop,
    "torchserve_kill": fault_torchserve_kill,
    "postgres_restart": fault_postgres_restart,
    "postgres_stop": fault_postgres_stop,
    "worker_kill": fault_worker_kill,
}


def _summary(samples: list[Sample]) -> dict[str, Any]:
    recs = [s for s in samples if s.kind == "rec"]
    events = [s for s in samples if s.kind == "events"]
    latency = sorted(s.seconds for s in recs) or [0.0]
    return {
        "requests": len(samples),
        "recommendations": len(recs),
        "event_batches": len(events),
        "non_2xx": dict(Counter(s.status for s in samples if not s.status.startswith("2"))),
        # The contract for failures: JSON bodies, and a 503 says when to retry.
        "non_2xx_not_json": sum(1 for s in samples if s.status[:1] in "345" and not s.json_body),
        "503_without_retry_after": sum(1 for s in samples if s.status == "503" and s.retry_after is None),
        "fallback_share": round(sum(1 for s in recs if s.source == "fallback") / len(recs), 3) if recs else None,
        "rec_p50_ms": round(statistics.median(latency) * 1000, 1),
        "rec_p95_ms": round(latency[int(0.95 * (len(latency) - 1))] * 1000, 1),
        "rec_max_ms": round(latency[-1] * 1000, 1),
    }


def _log_sizes(stack: Any) -> dict[str, int]:
    sizes = {}
    for name, proc in stack.procs.items():
        with contextlib.suppress(OSError):
            sizes[name] = proc.log_path.stat().st_size
    return sizes


def _log_figures(stack: Any, before: dict[str, int]) -> dict[str, Any]:
    """Log lines and tracebacks the web and worker processes wrote during a fault, and the Redis
    circuit breaker's lines (one per change of state is the goal, not thousands of tracebacks)."""
    lines = tracebacks = breaker = 0
    for name, proc in stack.procs.items():
        with contextlib.suppress(OSError), open(proc.log_path, "rb") as handle:
            handle.seek(before.get(name, 0))
            for raw in handle:
                lines += 1
                tracebacks += raw.startswith(b"Traceback")
                breaker += b"Redis circuit" in raw
    return {"log_lines": lines, "tracebacks": tracebacks, "breaker_lines": breaker}


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="recadmin-faults-"))
    root.chmod(0o755)
    stack = Stack(root)
    report: dict[str, Any] = {"faults": {}}
    started = time.monotonic()
    try:
        shop = stack.up(items=args.items, customers=args.customers, events=args.events)
        stack.key = shop["key"]
        traffic = Traffic(stack.base, shop["key"], shop["customers"], shop["items"], rec_clients=args.clients)
        threads = traffic.start()
        log(f"traffic: {args.clients} recommendation clients and an ingestion client; baseline {args.baseline:.0f}s")
        time.sleep(args.baseline)
        now = time.monotonic()
        report["baseline"] = _summary(traffic.window(now - args.baseline, now))
        log(f"  baseline: {json.dumps(report['baseline'])}")
        for name in args.faults:
            log(f"fault: {name}")
            sent_before = len(traffic.sent)
            logs_before = _log_sizes(stack)
            begin = time.monotonic()
            extra = FAULTS[name](stack, args.hold)
            fault_end = time.monotonic()
            recovered = traffic.recovered_at(fault_end, model=name == "torchserve_kill", timeout=args.recovery_timeout)
            time.sleep(2)
            figures = _summary(traffic.window(begin, time.monotonic()))
            figures["fault_seconds"] = round(fault_end - begin, 1)
            figures["recovery_seconds"] = round(recovered - fault_end, 1) if recovered is not None else None
            after = [x for x in traffic.window(fault_end, time.monotonic()) if x.kind == "rec"]
            if name == "torchserve_kill" and recovered is not None:
                later = [x for x in after if x.at >= recovered]
                figures["model_share_after_recovery"] = (
                    round(sum(1 for x in later if x.source == "model") / len(later), 3) if later else None
                )
            figures["events_sent_during"] = len(traffic.sent) - sent_before
            figures.update(_log_figures(stack, logs_before))
            figures.update(extra)
            report["faults"][name] = figures
            log(f"  {name}: {json.dumps(figures)}")
            time.sleep(args.settle)
        traffic.stop.set()
        for thread in threads:
            thread.join(35)
        log("traffic stopped; counting stored events")
        from django.db import connections

        connections.close_all()
        from recadmin.events.models import Event

        acknowledged = set(traffic.acknowledged)
        stored: set[str] = set()
        ids = list(acknowledged)
        for i in range(0, len(ids), 5000):
            stored.update(Event.objects.filter(event_id__in=ids[i : i + 5000]).values_list("event_id", flat=True))
        report["events"] = {
            "sent": len(traffic.sent),
            "acknowledged": len(acknowledged),
            "acknowledged_and_stored": len(stored),
            "acknowledged_but_missing": len(acknowledged - stored),
        }
        report["total"] = _summary(traffic.samples)
        log(f"events: {json.dumps(report['events'])}")
    finally:
        log("stopping everything")
        stack.down()
        report["seconds"] = round(time.monotonic() - started, 1)
        report["logs"] = str(root)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(ALL_FAULTS), help="comma-separated, in order")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds a paused Redis stays paused")
    parser.add_argument("--baseline", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between faults")
    parser.add_argument("--recovery-timeout", type=float, default=90.0)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--events", type=int, default=15000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    args.faults = [f for f in args.faults.split(",") if f]
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))} (choose from {', '.join(ALL_FAULTS)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
