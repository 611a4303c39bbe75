"""The experiment report's guardrail and sample-ratio reads at scale: the p95 latency per variant over
millions of served pages, and the first exposure of every customer of a Thompson experiment.

    createdb -h 127.0.0.1 -U postgres guardrails_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/guardrails_bench nice .venv/bin/python \
        bench/experiment_guardrails.py [--pages 2000000] [--customers 500000] [--snapshots 400]

Prints, for the p95 latency: the report's read (`recadmin.metrics.selectors.variant_latency_quantiles`:
the latency histogram the rollups keep per hour and variant, filled here in one statement as the
rollups' full recompute does) against PostgreSQL's exact percentile_cont over the same pages, with
the relative difference; for the sample-ratio test: the PostgreSQL query and the portable path of
`first_exposures` (the direct computation over every customer row) against the counts the report
reads (`first_exposures_counted`, kept as customers are written; filled here by the rebuild, as the
customers go in by COPY); the variant sums aggregated over every customer row against the kept
totals; the whole report before (both aggregated over every customer row) and after (the kept totals
and counts), each with an empty cache and cached, in the same run; then what the upkeep adds to an
upsert of 2,000 customers. PostgreSQL only (the data goes in
with COPY). The bench tables are emptied first and the cache cleared: point DATABASE_URL and
REDIS_URL at a database and a Redis database of their own.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rollups import _copy, _setup  # noqa: E402 - the repository root on the path first

VARIANTS = (("control", 60.0), ("model-v4", 95.0), ("popular", 40.0))  # name, median latency (ms)


def _timed(func: Callable[[], Any], rounds: int = 5) -> tuple[float, Any]:
    """Median milliseconds of `rounds` calls after one warm-up call, and the last result."""
    result = func()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000, result


def _generate(args: argparse.Namespace) -> Any:
    from django.db import connection
    from django.utils import timezone
    from tqdm import tqdm

    from recadmin.experiments.models import AllocationSnapshot, Experiment, ExperimentCustomer
    from recadmin.experiments.services import experiment_create, experiment_start
    from recadmin.rules.models import Scene
    from recadmin.serving.models import ServedRecommendation

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {ServedRecommendation._meta.db_table}")
    Experiment.objects.all().delete()
    for slug in ("home", "product_detail"):
        Scene.objects.get_or_create(slug=slug, defaults={"name": slug})
    experiment = experiment_create(
        name="bench: guardrails",
        scenes=["home"],
        primary_metric="ctr",
        allocation="thompson",
        guardrails={"p95_latency_ms_max": 150},
        variants=[
            {"name": "control", "weight": 1},
            {"name": "model-v4", "weight": 1},
            {"name": "popular", "weight": 1, "strategy": ["popular"]},
        ],
    )
    now = timezone.now()
    start = now - dt.timedelta(days=args.days)
    experiment = experiment_start(experiment=experiment, now=start)
    variants = list(experiment.variants.order_by("position"))
    rng = random.Random(1)

    # The allocation history: Thompson moving traffic towards model-v4, one snapshot every few minutes.
    span = (now - start).total_seconds()
    history = [(start, [1 / 3, 1 / 3, 1 / 3])]
    for k in range(1, args.snapshots):
        share = min(0.9, 1 / 3 + (0.9 - 1 / 3) * k / args.snapshots)
        rest = (1 - share) / 2
        history.append((start + dt.timedelta(seconds=span * k / args.snapshots), [rest, share, rest]))
    AllocationSnapshot.objects.bulk_create(
        [
            AllocationSnapshot(
                experiment=experiment,
                created_at=at,
                weights={v.name: w for v, w in zip(variants, weights, strict=True)},
                reason="thompson",
            )
            for at, weights in history[1:]
        ]
    )

    columns = (
        'recommendation_id, "offset", endpoint, customer_shop_id, scene, model_label, source, strategy, '
        "experiment_id, variant_id, fallback_reason, context_item, category, items, n_items, latency_ms, created_at"
    )
    items = json.dumps(
        [{"item": f"i{p}", "position": p, "score": 1 - p / 10, "rules": [], "source": "model"} for p in range(10)]
    )
    bar = tqdm(total=args.pages, desc="served pages (COPY)", unit="page")
    batch: list[str] = []
    for n in range(args.pages):
        at = start + dt.timedelta(seconds=span * n / args.pages)
        inside = rng.random() < args.experiment_share
        if inside:
            index = rng.randrange(3)
            variant, (_, median) = variants[index], VARIANTS[index]
            latency = rng.lognormvariate(0, 0.5) * median
            ids = f"{experiment.pk}\t{variant.pk}"
        else:
            latency = rng.lognormvariate(0, 0.5) * 60
            ids = "\\N\t\\N"
        batch.append(
            f"g-r{n}\t0\trecommendations\tc{rng.randrange(args.customers)}\t{'home' if inside else 'product_detail'}\t"
            f"recommender v1\tmodel\tmodel,popular\t{ids}\t\t\t\t{items}\t10\t{latency:.3f}\t{at.isoformat()}\n"
        )
        if len(batch) >= 20_000:
            _copy(ServedRecommendation._meta.db_table, columns, batch)
            bar.update(len(batch))
            batch = []
    if batch:
        _copy(ServedRecommendation._meta.db_table, columns, batch)
        bar.update(len(batch))
    bar.close()

    # The per-customer table: each customer first seen at a random time, in the variant the allocation
    # then gives them; 3 % come back later in another variant (a second row).
    from bisect import bisect_right

    from recadmin.experiments.assignment import assign

    times = [at for at, _ in history]
    cust_columns = (
        "experiment_id, variant_id, customer_shop_id, exposures, lists, fallback_lists, impressions, clicks, "
        "add_to_carts, purchases, revenue, first_seen_at, last_seen_at"
    )
    lines: list[str] = []
    bar = tqdm(total=args.customers, desc="experiment customers (COPY)", unit="customer")
    for i in range(args.customers):
        first = start + dt.timedelta(seconds=rng.uniform(0, span))
        period = bisect_right(times, first) - 1
        arm = assign(experiment.salt, f"c{i}", history[period][1])
        clicks = int(rng.random() < 0.3)
        lines.append(
            f"{experiment.pk}\t{variants[arm].pk}\tc{i}\t3\t3\t0\t30\t{clicks}\t0\t0\t0\t{first.isoformat()}\t"
            f"{first.isoformat()}\n"
        )
        if rng.random() < 0.03:
            other = (arm + 1) % 3
            later = first + dt.timedelta(hours=6)
            lines.append(
                f"{experiment.pk}\t{variants[other].pk}\tc{i}\t1\t1\t0\t10\t0\t0\t0\t0\t{later.isoformat()}\t"
                f"{later.isoformat()}\n"
            )
        if len(lines) >= 20_000:
            _copy(ExperimentCustomer._meta.db_table, cust_columns, lines)
            bar.update(20_000)
            lines = []
    if lines:
        _copy(ExperimentCustomer._meta.db_table, cust_columns, lines)
    bar.close()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ServedRecommendation._meta.db_table}")
        cursor.execute(f"ANALYZE {ExperimentCustomer._meta.db_table}")
    return experiment


def _percentile_cont(experiment_id: int) -> dict[int, tuple[int, float]]:
    from django.db import connection

    from recadmin.serving.models import ServedRecommendation

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT variant_id, COUNT(*), percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) "
            f"FROM {ServedRecommendation._meta.db_table} WHERE experiment_id = %s GROUP BY variant_id",
            [experiment_id],
        )
        return {int(v): (int(n), float(p)) for v, n, p in cursor.fetchall()}


def _latency_histogram(experiment_id: int) -> int:
    """Fill the experiment's latency histogram from its pages (what the rollups keep); returns rows."""
    from django.db import connection

    from recadmin.metrics.models import LATENCY_EDGES_MS, LatencyRollup
    from recadmin.serving.models import ServedRecommendation

    LatencyRollup.objects.filter(experiment_id=experiment_id).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {LatencyRollup._meta.db_table} (hour, experiment_id, variant_id, bucket, pages) "
            "SELECT date_trunc('hour', created_at), experiment_id, variant_id, "
            "width_bucket(latency_ms, %s::float8[]), COUNT(*) "
            f"FROM {ServedRecommendation._meta.db_table} WHERE experiment_id = %s AND variant_id IS NOT NULL "
            "GROUP BY 1, 2, 3, 4",
            [list(LATENCY_EDGES_MS), experiment_id],
        )
        return int(cursor.rowcount)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2_000_000)
    parser.add_argument("--experiment-share", type=float, default=0.5, help="share of pages in the experiment")
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--snapshots", type=int, default=400, help="allocation periods (Thompson reweights)")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--reuse", action="store_true", help="keep the data of the last run")
    args = parser.parse_args()
    _setup()
    from django.db import connection

    from recadmin.experiments.models import Experiment
    from recadmin.experiments.selectors import experiment_report, first_exposures
    from recadmin.metrics.selectors import variant_latency_quantiles
    from recadmin.serving.models import ServedRecommendation

    if connection.vendor != "postgresql":
        sys.exit("bench/experiment_guardrails.py needs PostgreSQL (DATABASE_URL=postgres://...)")
    if args.reuse:
        experiment = Experiment.objects.get(name="bench: guardrails")
    else:
        began = time.perf_counter()
        experiment = _generate(args)
        print(f"generated in {time.perf_counter() - began:.1f} s")
    variants = list(experiment.variants.order_by("position"))
    ids = [v.pk for v in variants]
    in_experiment = ServedRecommendation.objects.filter(experiment_id=experiment.pk).count()
    customers = experiment.customers.count()
    snapshots = experiment.allocations.count()
    print(
        f"{ServedRecommendation.objects.count():,} served pages, {in_experiment:,} in the experiment "
        f"({len(variants)} variants); {customers:,} per-customer rows; {snapshots} allocation periods"
    )

    fill_ms, rows = _timed(lambda: _latency_histogram(experiment.pk), rounds=1)
    ours_ms, ours = _timed(lambda: variant_latency_quantiles(experiment.pk, ids, 0.95))
    cont_ms, cont = _timed(lambda: _percentile_cont(experiment.pk), rounds=3)
    error = max(abs((ours[v].quantile_ms or 0) - cont[v][1]) / cont[v][1] for v in ids)
    print(
        f"latency histogram of the experiment's pages: {rows:,} rows (hour x variant x bucket), filled in "
        f"{fill_ms:.0f} ms; p95 per variant from it {ours_ms:.1f} ms, percentile_cont over the pages "
        f"{cont_ms:.0f} ms; largest relative difference {error * 100:.2f} % ("
        + ", ".join(f"{v.name} {ours[v.pk].quantile_ms:.1f} ms / exact {cont[v.pk][1]:.1f} ms" for v in variants)
        + ")"
    )

    from django.core.cache import cache

    from recadmin.experiments import selectors
    from recadmin.experiments.services import experiment_aggregates_rebuild

    if not args.reuse:
        rebuild_ms, _ = _timed(lambda: experiment_aggregates_rebuild(experiment=experiment), rounds=1)
        print(f"variant totals and first exposures kept (the rebuild, from every customer row): {rebuild_ms:.0f} ms")
    direct_sums_ms, direct_sums = _timed(lambda: selectors.variant_sums_direct(experiment))
    sums_ms, sums = _timed(lambda: selectors.variant_sums(experiment))
    print(
        f"variant sums: aggregated over every customer row {direct_sums_ms:.0f} ms, kept totals {sums_ms:.1f} ms "
        f"(equal: {sums == direct_sums})"
    )
    history = list(selectors.allocation_history(experiment))
    boundaries = [snapshot.created_at for snapshot in history]
    settle = selectors.first_exposure_settle()
    db_ms, in_db = _timed(lambda: first_exposures(experiment, boundaries, settle=settle))
    py_ms, in_py = _timed(lambda: first_exposures(experiment, boundaries, settle=settle, in_database=False), rounds=1)
    kept_ms, kept = _timed(lambda: selectors.first_exposures_counted(experiment, history, settle=settle))
    print(
        f"first exposures of {sum(in_db.by_variant.values()) + in_db.unsettled:,} customers over {len(boundaries)} "
        f"periods ({in_db.unsettled:,} unsettled): direct PostgreSQL query {db_ms:.0f} ms, portable path "
        f"{py_ms:.0f} ms, kept counts {kept_ms:.1f} ms (same counts: {in_db == in_py == kept})"
    )

    def cold_report() -> Any:
        cache.clear()  # this database's cache: the latency and first-exposure reads are computed again
        return experiment_report(experiment)

    def reports(label: str) -> Any:
        cold_ms, _ = _timed(cold_report, rounds=3)
        report_ms, report = _timed(lambda: experiment_report(experiment))
        print(
            f"the whole report, {label}: {cold_ms:.0f} ms with an empty cache, {report_ms:.0f} ms cached "
            f"(goal < 300); SRM p = {report['srm_p_value']:.4g} (flag {report['srm_flag']}); "
            f"p95 failing: {report['guardrails']['p95_latency_exceeded']}"
        )
        return report

    # Before: the reads this change replaced, which remain as the references (and the fallback).
    # The report module's own references: what experiment_report calls.
    report_module = selectors.report
    counted, kept_sums = report_module.first_exposures_counted, report_module.variant_sums
    report_module.first_exposures_counted = lambda *a, **k: None  # type: ignore[assignment]
    report_module.variant_sums = selectors.variant_sums_direct
    try:
        before = reports("before (sums and first exposures aggregated over every customer row)")
    finally:
        report_module.first_exposures_counted, report_module.variant_sums = counted, kept_sums
    report = reports("after (the kept totals and counts)")
    same = all(before[key] == report[key] for key in ("srm_p_value", "srm_customers", "srm_expected", "srm_note"))
    print(f"  same SRM result before and after: {same}; same variant rows: {before['variants'] == report['variants']}")
    print(f"  verdict: {report['verdict']}")
    _upsert_cost(experiment)
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


def _upsert_cost(experiment: Any) -> None:
    """A refresh's write of 2,000 customers: the upsert of their sums, which now also keeps the variant
    totals and their first exposures; against the bulk upsert alone (what it was). About half are
    new customers, half come back (with all their rows)."""
    from django.db import transaction
    from django.utils import timezone

    from recadmin.experiments.models import ExperimentCustomer
    from recadmin.experiments.services import CustomerSums, experiment_customers_upsert

    variants = list(experiment.variants.order_by("position"))
    now = timezone.now()
    # Returning customers keep their first time in the variant (the minimum over their pages), as in a
    # refresh; new ones arrive now.
    back = ExperimentCustomer.objects.filter(experiment=experiment, customer_shop_id__in=[f"c{i}" for i in range(1000)])
    rows = [
        CustomerSums(variant_id, customer, exposures=9, lists=9, impressions=90, clicks=2, first_seen_at=first)
        for variant_id, customer, first in back.values_list("variant_id", "customer_shop_id", "first_seen_at")
    ]
    rows += [
        CustomerSums(variants[i % 3].pk, f"new-{i}", lists=1, impressions=10, first_seen_at=now) for i in range(1000)
    ]

    class Rollback(Exception):
        pass

    def timed(func: Callable[[], Any]) -> float:
        began = time.perf_counter()
        try:
            with transaction.atomic():
                func()
                raise Rollback
        except Rollback:
            pass
        return (time.perf_counter() - began) * 1000

    def bulk_only() -> None:
        ExperimentCustomer.objects.bulk_create(
            [
                ExperimentCustomer(
                    experiment=experiment, variant_id=r.variant_id, customer_shop_id=r.customer_shop_id,
                    exposures=r.exposures, lists=r.lists, impressions=r.impressions, clicks=r.clicks,
                    first_seen_at=r.first_seen_at, last_seen_at=now,
                )
                for r in rows
            ],
            batch_size=2000, update_conflicts=True, unique_fields=["experiment", "variant", "customer_shop_id"],
            update_fields=["exposures", "lists", "impressions", "clicks", "first_seen_at", "last_seen_at"],
        )  # fmt: skip

    bulk_ms = statistics.median(timed(bulk_only) for _ in range(3))
    upsert_ms = statistics.median(timed(lambda: experiment_customers_upsert(experiment=experiment, rows=rows))
                                  for _ in range(3))  # fmt: skip
    print(
        f"upsert of {len(rows):,} customer rows (rolled back): {upsert_ms:.0f} ms keeping totals and first exposures, "
        f"{bulk_ms:.0f} ms for the bulk upsert alone"
    )


if __name__ == "__main__":
    main()
