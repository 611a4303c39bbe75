"""Ingestion benchmark: events/s through POST /api/v1/events, and the time of import_dataset on Beauty.

    .venv/bin/python bench/ingest.py [--events 200000] [--batch 1000] [--clients 4] [--skip-import]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres as the
maintenance database). The script creates a scratch database, migrates it, seeds items and an API
key, starts gunicorn (2 sync workers) on a free loopback port, sends pre-encoded batches of 1,000
events from a few client threads, then times `manage.py import_dataset beauty` into a second fresh
scratch database. Everything it started or created is stopped and dropped at the end. REDIS_URL,
when set, is passed to the server (history recorded on every batch, as in production) under a
scratch key prefix that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import requests

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SHARED_DATA = Path(os.environ.get("RECADMIN_SHARED_DATA", REPO.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def db_url(base: str, name: str) -> str:
    parsed = urlparse(base)
    return urlunparse(parsed._replace(path=f"/{name}"))


def admin_conn(base: str) -> psycopg.Connection:
    return psycopg.connect(db_url(base, urlparse(base).path.lstrip("/") or "postgres"), autocommit=True)


def create_db(base: str, name: str) -> None:
    with admin_conn(base) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_db(base: str, name: str) -> None:
    with admin_conn(base) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return out.stdout


def seed(env: dict[str, str], n_items: int) -> str:
    """Items for the events to point at, and an ingest key; returns the raw key."""
    script = f"""
from recadmin.catalog.services import items_bulk_upsert
from recadmin.core.services import api_key_create
items_bulk_upsert(rows=[{{"shop_id": f"bench-{{i}}", "title": f"Bench item {{i}}"}} for i in range({n_items})])
print(api_key_create(name="bench", scopes=["ingest"]).raw_key)
"""
    return manage(env, "shell", "-c", script).strip().splitlines()[-1]


def make_batches(n_events: int, batch: int, n_items: int, n_customers: int, run: str) -> list[bytes]:
    bodies = []
    base = time.time() - 86400
    for start in range(0, n_events, batch):
        rows = []
        for i in range(start, min(start + batch, n_events)):
            rows.append(
                {
                    "event_id": f"{run}-{i}",
                    "customer": f"c{(i * 7919) % n_customers}",
                    "item": f"bench-{(i * 104729) % n_items}",
                    "type": ("view", "view", "view", "click", "add_to_cart", "purchase")[i % 6],
                    "occurred_at": base + i * 0.01,
                    "scene": "product_detail",
                    "context": {"device": "mobile"},
                }
            )
        bodies.append(json.dumps(rows).encode())
    return bodies


_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def server_pids(gunicorn_pid: int, base_url: str, db_name: str) -> dict[str, list[int]]:
    """The processes that do the ingest work: gunicorn workers, their PostgreSQL backends, Redis."""
    with admin_conn(base_url) as conn:
        backends = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [db_name])]
    pids = {"gunicorn": [gunicorn_pid, *children(gunicorn_pid)], "postgres": backends, "redis": []}
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        import redis

        pids["redis"] = [int(redis.Redis.from_url(redis_url).info("server")["process_id"])]
    return pids


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    snap = {name: sum(proc_cpu(p) for p in group) for name, group in pids.items()}
    times = os.times()
    snap["client"] = times.user + times.system
    return snap


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited during start-up")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer in time")


def send_all(url: str, key: str, bodies: list[bytes], clients: int) -> tuple[float, int, list[str]]:
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    stored = [0]
    failures: list[str] = []

    def worker() -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop()
            response = session.post(f"{url}/api/v1/events", data=body, headers=headers, timeout=120)
            with lock:
                if response.status_code == 200:
                    stored[0] += response.json()["stored"]
                else:
                    failures.append(f"{response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, stored[0], failures


def bench_http(args: argparse.Namespace, base_env: dict[str, str], base_url: str) -> None:
    name = f"recadmin_bench_{os.getpid()}"
    create_db(args.database_url, name)
    env = {**base_env, "DATABASE_URL": db_url(args.database_url, name)}
    proc = None
    try:
        manage(env, "migrate", "--noinput")
        key = seed(env, args.items)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), "recadmin.wsgi:application", "--workers", "2",
             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--timeout", "120"],
            cwd=REPO, env=env,
        )  # fmt: skip
        wait_ready(url, proc)
        run = uuid.uuid4().hex[:8]
        warm = make_batches(args.batch * 4, args.batch, args.items, args.customers, f"warm{run}")
        send_all(url, key, warm, args.clients)  # connections, caches and the temp table warmed up
        bodies = make_batches(args.events, args.batch, args.items, args.customers, run)
        pids = server_pids(proc.pid, args.database_url, name)
        before = cpu_snapshot(pids)
        load_before = os.getloadavg()[0]
        elapsed, stored, failures = send_all(url, key, bodies, args.clients)
        after = cpu_snapshot(pids)
        print(
            f"HTTP ingest: {stored:,} events in {elapsed:.2f} s = {stored / elapsed:,.0f} events/s "
            f"(batches of {args.batch}, {args.clients} client threads, gunicorn 2 workers, PostgreSQL"
            f"{', Redis history' if env.get('REDIS_URL') else ''}; load average {load_before:.1f} at the start, "
            f"{os.cpu_count()} CPUs)"
        )
        used = {k: after[k] - before[k] for k in after}
        total = sum(used.values())
        per_k = {k: 1000 * v / max(stored, 1) * 1000 for k, v in used.items()}
        print(
            "  CPU per 1,000 events: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in per_k.items())
            + f"; total {1000 * total / max(stored, 1) * 1000:.1f} ms"
        )
        if total:
            print(
                f"  CPU-bound ceiling on {os.cpu_count()} otherwise idle CPUs: "
                f"{stored * (os.cpu_count() or 1) / total:,.0f} events/s (events / CPU seconds x CPUs)"
            )
        if failures:
            print(f"  {len(failures)} failed requests, first: {failures[0]}")
        resent, _, _ = send_all(url, key, bodies[:20], args.clients)
        print(f"  resending 20 batches (all duplicates): {20 * args.batch / resent:,.0f} events/s")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        drop_db(args.database_url, name)


def bench_import(args: argparse.Namespace, base_env: dict[str, str]) -> None:
    beauty = SHARED_DATA / "amazon-beauty"
    if not beauty.is_dir():
        print(f"import_dataset: skipped, {beauty} not found")
        return
    name = f"recadmin_bench_import_{os.getpid()}"
    create_db(args.database_url, name)
    env = {**base_env, "DATABASE_URL": db_url(args.database_url, name)}
    try:
        manage(env, "migrate", "--noinput")
        load = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        output = manage(env, "import_dataset", "beauty", "--path", str(beauty), "--no-progress")
        elapsed = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        counts = manage(
            env, "shell", "-c",
            "from recadmin.catalog.models import Customer, Item; from recadmin.events.models import Event;"
            "print(Customer.objects.count(), Item.objects.count(), Event.objects.count())",
        ).strip().splitlines()[-1].split()  # fmt: skip
        print(
            f"import_dataset beauty: {elapsed:.2f} s wall (incl. process start; load average {load:.1f}) for "
            f"{int(counts[0]):,} customers, {int(counts[1]):,} items, {int(counts[2]):,} events; "
            f"the command's own CPU {cpu:.1f} s"
        )
        print(f"  {output.strip().splitlines()[-1]}")
        started = time.perf_counter()
        manage(env, "import_dataset", "beauty", "--path", str(beauty), "--no-progress")
        print(f"  re-import (idempotent, stores nothing): {time.perf_counter() - started:.2f} s")
    finally:
        drop_db(args.database_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-import", action="store_true")
    args = parser.parse_args()

    prefix = f"bench{os.getpid()}"
    base_env = {**os.environ, "CACHE_KEY_PREFIX": prefix, "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    try:
        if not args.skip_http:
            bench_http(args, base_env, "")
        if not args.skip_import:
            bench_import(args, base_env)
    finally:
        redis_url = os.environ.get("REDIS_URL")
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(f"{prefix}:*", count=10_000))
            for start in range(0, len(keys), 10_000):
                client.delete(*keys[start : start + 10_000])


if __name__ == "__main__":
    main()
