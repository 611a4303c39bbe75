"""The first recommendation after a web worker starts, with and without the serving warm-up (issue 11:
it took 3.2-3.5 s against a 150 ms budget).

A scratch database with the demo shop (generate_demo_shop), a `pop` model trained and served by a
private TorchServe, a scene `home`; then, `--starts` times for each mode, a fresh gunicorn (one sync
worker, recadmin/gunicorn_conf.py) with this run's cache keys deleted first (a cold shared cache, as
after a deploy): wait until /healthz answers, then time the first GET /api/v1/recommendations and
the second one. Prints each start and the medians.

    .venv/bin/python bench/first_request.py [--starts 3] [--no-torchserve]

Needs PostgreSQL (--postgres) and Redis (--redis); Java 17 for TorchServe. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, float, bytes]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, (time.perf_counter() - started) * 1000, body


def _wait(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _get(port, "/healthz", {})[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-torchserve", action="store_true", help="No model: the first list is the fallback.")
    args = parser.parse_args()

    import psycopg

    tag = f"benchfirst{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="recadmin-bench-first-"))
    pg = urllib.parse.urlparse(args.postgres)
    db_name = f"recadmin_{tag}"
    admin_conn = psycopg.connect(args.postgres, autocommit=True)
    admin_conn.execute(f'CREATE DATABASE "{db_name}"')
    from recadmin.modelops.torchserve import config_on_free_ports, free_port

    ts_config = config_on_free_ports(tmp / "torchserve", tmp / "model_store", token_auth=False, timeout=10.0)
    env = {
        "DATABASE_URL": pg._replace(path=f"/{db_name}").geturl(),
        "REDIS_URL": args.redis,
        "CACHE_KEY_PREFIX": tag,
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "RECADMIN_VAR_DIR": str(tmp / "var"),
        "SECRET_KEY": "bench-" + tag,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "SCHEDULER": "off",
        "MODEL_STORE": str(ts_config.model_store),
        "TORCHSERVE_INFERENCE_URL": ts_config.inference_url,
        "TORCHSERVE_MANAGEMENT_URL": ts_config.management_url,
        "TORCHSERVE_METRICS_URL": ts_config.metrics_url,
        "TORCHSERVE_KEY_FILE": str(ts_config.key_file),
        "TORCHSERVE_TOKEN_AUTH": "false",
        "DJANGO_SETTINGS_MODULE": "recadmin.settings",
    }
    os.environ.update(env)
    results: dict[str, list[tuple[float, float, str]]] = {"off": [], "on": []}
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("generate_demo_shop", "--no-progress")
        from recadmin.catalog.models import Customer
        from recadmin.core.services import api_key_create
        from recadmin.rules.models import Scene

        Scene.objects.get_or_create(slug="home", defaults={"name": "Home"})
        if not args.no_torchserve:
            from recadmin.modelops.services import training_run_create, training_run_execute
            from recadmin.modelops.torchserve import torchserve_start

            torchserve_start(ts_config, ready_timeout=120)
            run = training_run_create(kind="pop", params={}, trigger="cli", enqueue=False)
            run = training_run_execute(run=run)
            print(f"model: run {run.pk} {run.status}")
        key = api_key_create(name="bench", scopes=["recommend"]).raw_key
        customers = list(Customer.objects.order_by("id").values_list("shop_id", flat=True)[:50])
        headers = {"Authorization": f"Bearer {key}"}
        import redis

        client = redis.Redis.from_url(args.redis)
        for i in range(args.starts):
            for mode in ("off", "on"):
                for name in client.scan_iter(f"{tag}:*", count=10_000):
                    if b":hist2:" not in name and b"api" not in name:
                        client.delete(name)
                port = free_port()
                log = open(tmp / f"gunicorn-{mode}-{i}.log", "wb")  # noqa: SIM115 - closed below
                web = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "gunicorn"),
                        "-c",
                        "python:recadmin.gunicorn_conf",
                        "recadmin.wsgi:application",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--workers",
                        "1",
                        "--worker-class",
                        "sync",
                    ],
                    cwd=REPO,
                    env={**os.environ, "SERVING_WARM_UP": "true" if mode == "on" else "false"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                try:
                    _wait(port, 120)
                    time.sleep(0.5)
                    path = f"/api/v1/recommendations?scene=home&n=10&customer={customers[i]}"
                    status, first, body = _get(port, path, headers)
                    _, second, _ = _get(port, path.replace(customers[i], customers[i + 10]), headers)
                    source = (
                        body.split(b'"source":"', 1)[1].split(b'"', 1)[0].decode() if status == 200 else str(status)
                    )
                    results[mode].append((first, second, source))
                    print(f"start {i + 1} warm-up {mode:>3}: first {first:7.1f} ms, second {second:6.1f} ms ({source})")
                finally:
                    os.killpg(web.pid, signal.SIGTERM)
                    web.wait(30)
                    log.close()
        for mode, rows in results.items():
            if rows:
                print(
                    f"warm-up {mode:>3}: first request median {statistics.median(r[0] for r in rows):7.1f} ms, "
                    f"second {statistics.median(r[1] for r in rows):6.1f} ms over {len(rows)} starts"
                )
        print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f} (the machine is shared)")
    finally:
        try:
            from recadmin.modelops.torchserve import torchserve_stop

            torchserve_stop(ts_config, timeout=20)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: stopping TorchServe: {exc}", file=sys.stderr)
        try:
            import redis

            client = redis.Redis.from_url(args.redis)
            for name in client.scan_iter(f"{tag}:*", count=10_000):
                client.delete(name)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: cleaning Redis: {exc}", file=sys.stderr)
        from django.db import connections

        connections.close_all()
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
