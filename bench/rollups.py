"""Rollups at scale: 2,000,000 served pages and 200,000 events (COPY), then one minute of new traffic
through the real path (served-log push, event ingestion) rolled up, and the dashboard and an
experiment report rendered.

    createdb -h 127.0.0.1 -U postgres metrics_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/metrics_bench nice .venv/bin/python bench/rollups.py \
        [--pages 2000000] [--events 200000] [--days 30]

Goals (issue 9): one minute of new traffic rolled up in under 1 s; the dashboard and an experiment
report render in under 300 ms. PostgreSQL only (the data goes in with COPY). The database's bench
tables are emptied first: point it at a database of its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENES = ("home", "product_detail", "cart")
ITEMS = 5000
CUSTOMERS = 50_000


def _setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recadmin.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _copy(table: str, columns: str, lines: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        copy.write("".join(lines))


def _generate(args: argparse.Namespace) -> tuple[int, list[int]]:
    from django.db import connection
    from tqdm import tqdm

    from recadmin.catalog.models import Customer, Item
    from recadmin.events.models import Event
    from recadmin.experiments.models import Experiment
    from recadmin.experiments.services import experiment_create, experiment_start
    from recadmin.metrics.models import (
        Attribution,
        DailyItem,
        HourlyDistinct,
        HourlyRollup,
        PositionRollup,
        RollupOpenHour,
        RollupPage,
        RollupState,
        RuleRollup,
    )
    from recadmin.rules.models import Scene
    from recadmin.serving.models import ServedRecommendation

    for model in (
        Attribution,
        DailyItem,
        HourlyRollup,
        PositionRollup,
        RuleRollup,
        RollupState,
        HourlyDistinct,
        RollupOpenHour,
        RollupPage,
        Event,
        ServedRecommendation,
    ):
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {model._meta.db_table}")
    Experiment.objects.all().delete()
    for slug in SCENES:
        Scene.objects.get_or_create(slug=slug, defaults={"name": slug})
    if Item.objects.filter(shop_id__startswith="b-i").count() < ITEMS:
        Item.objects.bulk_create(
            [Item(shop_id=f"b-i{i}", title=f"item {i}", price=5 + i % 50) for i in range(ITEMS)], ignore_conflicts=True
        )
    if Customer.objects.filter(shop_id__startswith="b-c").count() < CUSTOMERS:
        Customer.objects.bulk_create([Customer(shop_id=f"b-c{i}") for i in range(CUSTOMERS)], ignore_conflicts=True)
    item_pk = dict(Item.objects.filter(shop_id__startswith="b-i").values_list("shop_id", "pk"))
    customer_pk = dict(Customer.objects.filter(shop_id__startswith="b-c").values_list("shop_id", "pk"))
    experiment = experiment_create(
        name="bench: popular vs control",
        scenes=["home"],
        primary_metric="ctr",
        allocation="fixed",
        variants=[{"name": "control", "weight": 50}, {"name": "popular", "weight": 50, "strategy": ["popular"]}],
    )
    experiment = experiment_start(experiment=experiment)
    variant_ids = list(experiment.variants.order_by("position").values_list("pk", flat=True))

    rng = random.Random(1)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    span = dt.timedelta(days=args.days).total_seconds()
    pages: list[tuple[str, str, int, dt.datetime, list[str]]] = []  # for events: rec, customer, item, when
    columns = (
        'recommendation_id, "offset", endpoint, customer_id, customer_shop_id, scene, model_version_id, '
        "model_label, source, strategy, experiment_id, variant_id, fallback_reason, context_item, category, "
        "items, n_items, latency_ms, created_at"
    )
    bar = tqdm(total=args.pages, desc="served pages (COPY)", unit="page")
    batch: list[str] = []
    sample_every = max(1, args.pages // (args.events * 2))
    for n in range(args.pages):
        customer = f"b-c{rng.randrange(CUSTOMERS)}"
        scene = SCENES[n % 3]
        at = now - dt.timedelta(seconds=span * (1 - n / args.pages))
        shown = [f"b-i{rng.randrange(ITEMS)}" for _ in range(10)]
        fallback = rng.random() < 0.05
        in_experiment = scene == "home"
        variant = variant_ids[int(customer[3:]) % 2] if in_experiment else None
        items = [
            {
                "item": s,
                "position": p,
                "score": 1 - p / 10,
                "rules": [1] if p == 0 and n % 7 == 0 else [],
                "source": "popular" if fallback else "model",
            }
            for p, s in enumerate(shown)
        ]
        rec = f"b-r{n}"
        batch.append(
            f"{rec}\t0\trecommendations\t{customer_pk[customer]}\t{customer}\t{scene}\t\\N\t"
            f"{'' if fallback else 'recommender v1'}\t{'fallback' if fallback else 'model'}\tmodel,popular\t"
            f"{experiment.pk if in_experiment else chr(92) + 'N'}\t{variant if variant else chr(92) + 'N'}\t"
            f"{'timeout' if fallback else ''}\t\t\t{json.dumps(items)}\t10\t12.5\t{at.isoformat()}\n"
        )
        if n % sample_every == 0:
            pages.append((rec, customer, 0, at, shown))
        if len(batch) >= 20_000:
            _copy(ServedRecommendation._meta.db_table, columns, batch)
            bar.update(len(batch))
            batch = []
    if batch:
        _copy(ServedRecommendation._meta.db_table, columns, batch)
        bar.update(len(batch))
    bar.close()

    event_columns = (
        "customer_id, item_id, type, value, price, occurred_at, scene, context, recommendation_id, event_id, created_at"
    )
    bar = tqdm(total=args.events, desc="events (COPY)", unit="event")
    lines: list[str] = []
    n = 0
    while n < args.events:
        rec, customer, _, at, shown = pages[rng.randrange(len(pages))]
        item = shown[min(int(rng.expovariate(0.5)), 9)]
        click_at = at + dt.timedelta(seconds=rng.randint(2, 600))
        rows = [("click", rec, click_at)]
        if rng.random() < 0.15:
            rows.append(("add_to_cart", rec if rng.random() < 0.5 else None, click_at + dt.timedelta(minutes=2)))
            if rng.random() < 0.5:
                rows.append(("purchase", None, click_at + dt.timedelta(minutes=10)))
        for type_, rec_id, when in rows:
            lines.append(
                f"{customer_pk[customer]}\t{item_pk[item]}\t{type_}\t\\N\t"
                f"{'9.99' if type_ == 'purchase' else chr(92) + 'N'}\t{when.isoformat()}\thome\t{{}}\t"
                f"{rec_id or chr(92) + 'N'}\tb-e{n}\t{now.isoformat()}\n"
            )
            n += 1
        if len(lines) >= 20_000:
            _copy(Event._meta.db_table, event_columns, lines)
            bar.update(len(lines))
            lines = []
    if lines:
        _copy(Event._meta.db_table, event_columns, lines)
        bar.update(len(lines))
    bar.close()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ServedRecommendation._meta.db_table}")
        cursor.execute(f"ANALYZE {Event._meta.db_table}")
    return experiment.pk, variant_ids


def _minute_of_traffic(pages: int, events: int, seed: int) -> None:
    """One minute as the product writes it: pages through the served log, events through ingestion."""
    from django.utils import timezone

    from recadmin.events.services import events_ingest
    from recadmin.serving.served_log import served_log_push

    rng = random.Random(seed)
    now = timezone.now()
    recs = []
    for n in range(pages):
        customer = f"b-c{rng.randrange(CUSTOMERS)}"
        shown = [f"b-i{rng.randrange(ITEMS)}" for _ in range(10)]
        rec = f"m{seed}-r{n}"
        recs.append((rec, customer, shown))
        served_log_push(
            record={
                "recommendation_id": rec,
                "customer": customer,
                "scene": SCENES[n % 3],
                "source": "model",
                "model_label": "recommender v1",
                "strategy": "model,popular",
                "items": [{"item": s, "position": p, "rules": []} for p, s in enumerate(shown)],
                "created_at": (now - dt.timedelta(seconds=rng.randint(0, 59))).isoformat(),
            }
        )
    payload = []
    for n in range(events):
        rec, customer, shown = recs[rng.randrange(len(recs))]
        payload.append(
            {
                "event_id": f"m{seed}-e{n}",
                "customer": customer,
                "item": shown[rng.randrange(3)],
                "type": "click" if n % 5 else "purchase",
                "recommendation_id": rec,
                "occurred_at": now.isoformat(),
            }
        )
    for start in range(0, len(payload), 1000):
        events_ingest(payload=payload[start : start + 1000], record_history=False)


def _whole_hours_recompute(hour: dt.datetime) -> float:
    """Seconds to recompute this hour from scratch (what every run did before the rollups were
    incremental), in a transaction rolled back so that the incremental state stays as it is."""
    from django.db import transaction

    from recadmin.metrics.services import rollups_recompute

    with transaction.atomic():
        began = time.perf_counter()
        rollups_recompute(hours=[hour])
        took = time.perf_counter() - began
        transaction.set_rollback(True)
    return took


def _timed_get(client: object, path: str, rounds: int = 7, cold: bool = False) -> tuple[float, int]:
    from django.core.cache import cache

    times = []
    status = 0
    for _ in range(rounds):
        if cold:
            cache.clear()  # the first render after a rollup run
        began = time.perf_counter()
        response = client.get(path)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - began)
        status = response.status_code
    return statistics.median(times[1:]), status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30, help="the pages are spread over this many days")
    parser.add_argument("--minute-pages", type=int, default=1000, help="pages in the busy minute (17/s)")
    parser.add_argument("--minute-events", type=int, default=300)
    parser.add_argument(
        "--busy-minutes",
        type=int,
        default=8,
        help="busy minutes in a row (the hour fills up: the later ones are late in it)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the data of the last run: skip generation and backfill"
    )
    args = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from recadmin.metrics.models import Attribution, HourlyRollup
    from recadmin.metrics.services import hour_of, metrics_rebuild, metrics_refresh
    from recadmin.serving.models import ServedRecommendation
    from recadmin.serving.served_log import served_log_drain

    if connection.vendor != "postgresql":
        sys.exit("bench/rollups.py needs PostgreSQL (DATABASE_URL=postgres://...)")
    settings.ALLOWED_HOSTS = ["*"]
    if args.reuse:
        from recadmin.experiments.models import Experiment

        experiment_id = Experiment.objects.filter(name="bench: popular vs control").values_list("pk", flat=True).get()
    else:
        began = time.perf_counter()
        experiment_id, _ = _generate(args)
        print(
            f"generated {args.pages:,} pages and {args.events:,} events over {args.days} days in "
            f"{time.perf_counter() - began:.1f} s"
        )

        began = time.perf_counter()
        backfill = metrics_rebuild()
        print(
            f"backfill (every hour, all attribution): {time.perf_counter() - began:.1f} s; "
            f"{Attribution.objects.count():,} attributions, {HourlyRollup.objects.count():,} hourly rows, "
            f"{backfill.experiment_customers:,} experiment customers"
        )

    metrics_refresh()  # nothing new: the steady state
    quiet = []
    for _ in range(3):
        began = time.perf_counter()
        metrics_refresh()
        quiet.append(time.perf_counter() - began)
    print(f"refresh with no new traffic: {statistics.median(quiet) * 1000:.0f} ms")

    per_minute_pages = max(1, round(args.pages / (args.days * 1440)))
    per_minute_events = max(1, round(args.events / (args.days * 1440)))
    minutes = [("average", per_minute_pages, per_minute_events)]
    minutes += [(f"busy #{i + 1}", args.minute_pages, args.minute_events) for i in range(args.busy_minutes)]
    seed = int(time.time())
    for label, pages, events in minutes:
        seed += 1
        _minute_of_traffic(pages, events, seed)
        began = time.perf_counter()
        drained = served_log_drain()  # what the task does first; timed apart (serving's bulk insert)
        drain_took = time.perf_counter() - began
        result = metrics_refresh()
        took = time.perf_counter() - began
        hour = hour_of(timezone.now())
        in_hour = ServedRecommendation.objects.filter(created_at__gte=hour).count()
        whole = _whole_hours_recompute(hour)
        print(
            f"one {label} minute ({pages:,} pages, {events:,} events) drained, attributed and rolled up: "
            f"{took * 1000:.0f} ms, of which draining {drain_took * 1000:.0f} ms and the rollups run "
            f"{result.seconds * 1000:.0f} ms (goal < 1000 ms; {drained} drained, "
            f"{result.direct + result.window} attributed, {result.hours} hours, {result.rows} rows, "
            f"{result.experiment_customers} experiment customers); the hour holds {in_hour:,} pages, "
            f"recomputing it whole (the former way, rolled back) takes {whole * 1000:.0f} ms"
        )

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    pages = (
        ("dashboard page", "/admin/metrics/dashboard/"),
        ("experiment report page", f"/admin/metrics/experiments/{experiment_id}/report/"),
    )
    for label, path in pages:
        cold, status = _timed_get(client, path, cold=True)
        warm, _ = _timed_get(client, path)
        print(
            f"{label}: {cold * 1000:.0f} ms after a rollup run, {warm * 1000:.0f} ms cached until the next "
            f"(HTTP {status}; goal < 300 ms)"
        )
    from recadmin.experiments.models import Experiment
    from recadmin.experiments.selectors import experiment_report

    experiment = Experiment.objects.get(pk=experiment_id)
    times = []
    for _ in range(7):
        began = time.perf_counter()
        experiment_report(experiment)
        times.append(time.perf_counter() - began)
    print(
        f"experiment report (GET /api/v1/experiments/<id>/report's work): "
        f"{statistics.median(times[1:]) * 1000:.0f} ms (goal < 300 ms)"
    )


if __name__ == "__main__":
    main()
