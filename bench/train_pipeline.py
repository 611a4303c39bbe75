"""Benchmark: one training run on the shop's events end to end, with the time of each stage.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench \\
        .venv/bin/python bench/train_pipeline.py [--import-beauty] [--kind sasrec] [--params '{...}']

What it does, against the database in DATABASE_URL (use a scratch one):
1. with --import-beauty and no events yet: `manage.py import_dataset beauty` (Amazon Beauty from
   ../shared/data, 198,502 events);
2. times the export of the events alone (`recadmin.modelops.loader.events_export`), --export-repeats
   times, and reports the best and the median;
3. starts a private TorchServe on free loopback ports with a temporary model store (or uses the
   configured one with --use-configured-torchserve);
4. runs the same pipeline the Celery task runs (`training_run_create(enqueue=False)` then
   `training_run_execute`): export, train, evaluate, archive, register, promotion gate, with a
   progress bar, and prints the time of each stage, the metrics and one prediction's latency.

Goal (issue 4): under 15 minutes in all, the export under 10 s.

--extra-events N adds N synthetic events (random customers and items of the database, SQL
generate_series, PostgreSQL only) before timing the export, to measure the loader at 1M events.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recadmin.settings")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import-beauty", action="store_true", help="import Beauty first if there are no events")
    parser.add_argument("--kind", default="sasrec", choices=["sasrec", "cf", "itemknn", "pop"])
    parser.add_argument("--params", default="{}", help="model parameters as JSON (default: the model's defaults)")
    parser.add_argument("--export-repeats", type=int, default=3)
    parser.add_argument("--export-only", action="store_true", help="only time the export")
    parser.add_argument("--extra-events", type=int, default=0, help="add N synthetic events first (PostgreSQL)")
    parser.add_argument("--use-configured-torchserve", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    import signal

    import django

    # A stopped benchmark still stops its TorchServe and records its run as interrupted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from recadmin.events.models import Event
    from recadmin.modelops.loader import events_export

    figures: dict[str, object] = {"database": connection.vendor, "kind": args.kind}
    wall_started = time.perf_counter()

    if args.import_beauty and not Event.objects.exists():
        started = time.perf_counter()
        call_command("import_dataset", "beauty", "--no-history")
        figures["import_seconds"] = round(time.perf_counter() - started, 1)

    if args.extra_events:
        _add_synthetic_events(args.extra_events)

    # -- export alone ---------------------------------------------------------------------------
    times = []
    exported = None
    for _ in range(max(1, args.export_repeats)):
        started = time.perf_counter()
        exported = events_export()
        times.append(time.perf_counter() - started)
    assert exported is not None
    figures["events"] = len(exported)
    figures["customers"] = exported.num_customers
    figures["items"] = len(exported.item_shop_ids)
    figures["export_seconds_best"] = round(min(times), 3)
    figures["export_seconds_median"] = round(statistics.median(times), 3)
    figures["export_breakdown_last"] = exported.seconds
    print(
        f"export: {len(exported):,} events, {exported.num_customers:,} customers, {len(exported.item_shop_ids):,} "
        f"items in {min(times):.2f}s best / {statistics.median(times):.2f}s median of {len(times)} "
        f"({exported.seconds}) [{connection.vendor}]"
    )
    del exported
    if args.export_only:
        _write(args.json, figures)
        return 0

    # -- TorchServe -------------------------------------------------------------------------------
    handle = None
    tmp = None
    if not args.use_configured_torchserve:
        from recadmin.modelops.torchserve import config_on_free_ports, torchserve_start

        tmp = tempfile.TemporaryDirectory(prefix="bench-train-")
        config = config_on_free_ports(
            Path(tmp.name) / "run", Path(tmp.name) / "model_store", token_auth=False, register_timeout=300.0
        )
        started = time.perf_counter()
        handle = torchserve_start(config)
        figures["torchserve_start_seconds"] = round(time.perf_counter() - started, 2)
        for name, value in config.as_settings().items():
            setattr(settings, name, value)

    try:
        return _run_pipeline(args, figures, wall_started)
    finally:
        if handle is not None:
            handle.stop()
        if tmp is not None:
            tmp.cleanup()


def _run_pipeline(args: argparse.Namespace, figures: dict[str, object], wall_started: float) -> int:
    from tqdm import tqdm

    from recadmin.modelops.models import ModelVersion
    from recadmin.modelops.services import training_run_create, training_run_execute
    from recadmin.modelops.torchserve import get_client

    params = json.loads(args.params)
    run = training_run_create(kind=args.kind, params=params, trigger="cli", enqueue=False)
    stage_started: dict[str, float] = {}
    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt}% [{elapsed}] {postfix}")

    def progress(percent: float, stage: str) -> None:
        key = stage.split(" ")[0]
        stage_started.setdefault(key, time.perf_counter())
        bar.n = percent
        bar.set_postfix_str(stage[:60], refresh=True)

    started = time.perf_counter()
    run = training_run_execute(run=run, progress=progress)
    total = time.perf_counter() - started
    bar.close()
    if run.status != "succeeded":
        print(f"run #{run.pk} {run.status}: {run.error}\n{run.log_tail[-3000:]}")
        figures["status"] = run.status
        figures["error"] = run.error
        _write(args.json, figures)
        return 1

    version = ModelVersion.objects.get(training_run=run)
    seconds = dict(run.metrics.get("seconds", {}))
    figures.update(
        {
            "status": run.status,
            "pipeline_seconds": round(total, 1),
            "stage_seconds": seconds,
            "train_seconds_inside": run.metrics.get("train_seconds"),
            "epochs": run.metrics.get("epochs"),
            "best_epoch": run.metrics.get("best_epoch"),
            "split": run.metrics.get("split"),
            "valid_users": run.metrics.get("valid_users"),
            "test_users": run.metrics.get("test_users"),
            "valid": version.valid_metrics,
            "test": version.test_metrics,
            "archive_mb": round(Path(version.archive_path).stat().st_size / 1e6, 2),
            "version": f"{version.name} v{version.version} ({version.status})",
            "gate": run.gate_decision,
        }
    )
    # One real request through the registered version (the first answer includes warm-up).
    from recadmin.catalog.models import Item

    client = get_client()
    history = list(Item.objects.order_by("id").values_list("shop_id", flat=True)[:5])
    latencies = []
    for _ in range(20):
        t0 = time.perf_counter()
        client.predict(version.name, {"history": history, "k": 100}, version=str(version.version))
        latencies.append((time.perf_counter() - t0) * 1000)
    figures["predict_ms_first"] = round(latencies[0], 1)
    figures["predict_ms_median"] = round(statistics.median(latencies[1:]), 1)
    figures["wall_seconds"] = round(time.perf_counter() - wall_started, 1)

    print()
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    print(f"pipeline: {total:.1f}s in all (goal < 900 s); stages: {stages}")
    print(f"version: {figures['version']}; archive {figures['archive_mb']} MB; {run.gate_decision}")
    print(f"epochs {figures['epochs']} (best {figures['best_epoch']}); split {figures['split']}")
    for split in ("valid", "test"):
        metrics = figures[split]
        assert isinstance(metrics, dict)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        print(f"{split}: {shown}")
    print(f"predict k=100: first {figures['predict_ms_first']} ms, median {figures['predict_ms_median']} ms")
    _write(args.json, figures)
    return 0


def _add_synthetic_events(count: int) -> None:
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        raise SystemExit("--extra-events needs PostgreSQL")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM catalog_customer")
        cmin, cmax = cursor.fetchone()
        cursor.execute("SELECT min(id), max(id) FROM catalog_item")
        imin, imax = cursor.fetchone()
        cursor.execute(
            """
            INSERT INTO events_event (customer_id, item_id, type, occurred_at, scene, context, event_id, created_at)
            SELECT %s + floor(random() * (%s - %s + 1))::bigint,
                   %s + floor(random() * (%s - %s + 1))::bigint,
                   (ARRAY['view', 'view', 'view', 'click', 'add_to_cart', 'purchase'])[1 + floor(random() * 6)::int],
                   now() - random() * interval '180 days', '', '{}'::jsonb,
                   'bench-' || g || '-' || md5(random()::text), now()
            FROM generate_series(1, %s) AS g
            """,
            [cmin, cmax, cmin, imin, imax, imin, count],
        )
    print(f"added {count:,} synthetic events in {time.perf_counter() - started:.1f}s")


def _write(path: Path | None, figures: dict[str, object]) -> None:
    if path:
        path.write_text(json.dumps(figures, indent=2, default=str))
        print(f"figures written to {path}")


if __name__ == "__main__":
    raise SystemExit(main())
