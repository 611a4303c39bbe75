"""Rollups are idempotent, split by every dimension, and feed the experiments' per-customer table;
the periodic task runs under the in-process scheduler (embedded mode)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from recadmin.metrics.models import (
    DailyItem,
    HourlyDistinct,
    HourlyRollup,
    LatencyRollup,
    PositionRollup,
    RollupOpenHour,
    RuleRollup,
)
from recadmin.metrics.selectors import rollup_lag_seconds
from recadmin.metrics.services import hour_of, metrics_rebuild, metrics_refresh, rollups_recompute
from recadmin.metrics.services import rollups as rollups_module

M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)


def _snapshot() -> list[tuple[Any, ...]]:
    def rows(model: Any) -> tuple[Any, ...]:
        # repr orders rows whose nullable dimensions differ (None against an id)
        return tuple(sorted((tuple(v for k, v in r.items() if k != "id") for r in model.objects.values()), key=repr))

    daily = tuple(
        sorted(DailyItem.objects.values_list("day", "scene", "strategy", "model_version_id", "variant_id", "item"))
    )
    return [rows(HourlyRollup), rows(PositionRollup), rows(RuleRollup), rows(LatencyRollup), daily]


def _traffic(t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]) -> None:
    serve("r1", ["A", "B", "C"], at=t0, rules={"B": [7]})
    serve(
        "r2",
        ["A", "D"],
        at=t0 + 70 * M,
        scene="cart",
        source="fallback",
        fallback_reason="timeout",
        strategy="popular",
        model_label="",
    )
    serve("r3", ["C", "B"], at=t0 + 5 * M, customer="c2", rules={"B": [7]})
    send("click", "B", at=t0 + M, rec="r1")
    send("click", "C", at=t0 + 6 * M, rec="r3", customer="c2")
    send("click", "D", at=t0 + 71 * M, rec="r2")
    send("purchase", "D", at=t0 + 80 * M, price=3, value=3)


@pytest.mark.django_db
def test_rerunning_any_period_gives_the_same_rows(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    _traffic(t0, serve, send)
    metrics_refresh(drain=False)
    first = _snapshot()
    assert len(first[0]) == 2  # (hour t0, home, model) and (hour t0 + 1, cart, fallback)
    rollups_recompute(hours=[t0, t0 + H, t0 + 2 * H])
    assert _snapshot() == first
    metrics_rebuild()
    assert _snapshot() == first
    metrics_refresh(drain=False)
    assert _snapshot() == first


@pytest.mark.django_db
def test_rollups_split_by_dimension_and_count_positions_rules_and_fallbacks(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    _traffic(t0, serve, send)
    metrics_refresh(drain=False)
    home = HourlyRollup.objects.get(scene="home")
    assert (home.hour, home.lists, home.impressions, home.clicks, home.customers, home.items) == (
        hour_of(t0),
        2,
        5,
        2,
        2,
        3,
    )
    cart = HourlyRollup.objects.get(scene="cart")
    assert (cart.hour, cart.fallback_share, cart.strategy, cart.purchases, str(cart.revenue)) == (
        hour_of(t0 + H),
        1.0,
        "popular",
        1,
        "9.00",
    )
    home_positions = {p.position: (p.impressions, p.clicks) for p in PositionRollup.objects.filter(scene="home")}
    assert home_positions == {0: (2, 1), 1: (2, 1), 2: (1, 0)}
    rule = RuleRollup.objects.get(rule_id=7)
    # B carried rule 7 in r1 (clicked) and r3 (not clicked); the other items: 3 impressions, C clicked in r3.
    assert (rule.lists, rule.impressions, rule.clicks, rule.other_impressions, rule.other_clicks) == (2, 2, 1, 3, 1)
    assert rollup_lag_seconds() is not None and rollup_lag_seconds() < 60  # type: ignore[operator]


@pytest.mark.django_db
def test_it_drains_the_served_log_before_rolling_up(items: Any, send: Callable[..., Any]) -> None:
    from recadmin.serving.served_log import served_log_drain, served_log_push

    served_log_drain()
    served_log_push(
        record={
            "recommendation_id": "r-log",
            "scene": "home",
            "source": "model",
            "customer": "c1",
            "items": [{"item": "A", "position": 0, "rules": []}],
        }
    )
    result = metrics_refresh()
    assert result.drained == 1
    assert HourlyRollup.objects.get(scene="home").lists == 1


@pytest.mark.django_db(transaction=True)
def test_the_periodic_task_runs_under_the_in_process_scheduler(
    tmp_path: Path, items: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded mode (no beat, no worker): the scheduler runs the metrics task from its schedule."""
    from recadmin.core.scheduler import EmbeddedScheduler
    from recadmin.metrics import tasks
    from recadmin.serving.served_log import served_log_drain, served_log_push
    from tests.fixtures.services import wait_for

    served_log_drain()
    monkeypatch.setattr(tasks, "REFRESH_EVERY_SECONDS", 1.0)
    served_log_push(
        record={
            "recommendation_id": "r-sched",
            "scene": "home",
            "source": "model",
            "customer": "c1",
            "items": [{"item": "A", "position": 0, "rules": []}],
        }
    )
    scheduler = EmbeddedScheduler(lock_path=tmp_path / "lock", per_process_tasks=[], max_interval=0.5)
    scheduler.start()
    try:
        assert wait_for(lambda: HourlyRollup.objects.filter(scene="home", lists=1).exists(), timeout=30)
    finally:
        scheduler.stop()
        monkeypatch.undo()
        from recadmin.celery import app

        app.on_after_finalize.send(sender=app)  # the 60 s entry back in the schedule
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(name="metrics: drain, attribute and roll up").exists()


@pytest.mark.django_db
def test_a_page_committed_late_below_the_bookmark_is_rolled_up(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    late_id = serve("r0", ["A"], at=t0).pk
    from recadmin.serving.models import ServedRecommendation

    ServedRecommendation.objects.filter(pk=late_id).delete()
    serve("r1", ["A", "B"], at=t0 + 2 * H)
    metrics_refresh(drain=False)
    assert not HourlyRollup.objects.filter(hour=hour_of(t0)).exists()
    # Another drain's transaction commits a page with a lower id after the run.
    serve("r0", ["A"], at=t0, id=late_id)
    result = metrics_refresh(drain=False)
    assert HourlyRollup.objects.get(hour=hour_of(t0)).lists == 1
    assert result.hours == 1  # only the late page's hour
    assert metrics_refresh(drain=False).hours == 0  # nothing new: nothing recomputed


@pytest.mark.django_db
def test_the_python_aggregation_gives_the_same_rows_as_postgresqls(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite (embedded) reads pages into Python; PostgreSQL aggregates them with jsonb functions."""
    from recadmin.metrics.services import rollups as services

    _traffic(t0, serve, send)
    serve("r4", ["A", "B", "C", "D"], at=t0 + 3 * M, rules={"A": [7, 8], "C": [8]})
    send("click", "C", at=t0 + 4 * M, rec="r4")
    metrics_refresh(drain=False)
    by_sql = _snapshot()
    DailyItem.objects.all().delete()
    monkeypatch.setattr(services, "USE_SQL", False)
    metrics_rebuild()
    assert _snapshot() == by_sql
    rule8 = RuleRollup.objects.get(rule_id=8)
    assert (rule8.lists, rule8.impressions, rule8.clicks, rule8.other_impressions, rule8.other_clicks) == (
        1,
        2,
        1,
        2,
        0,
    )


@pytest.mark.django_db
def test_incremental_runs_give_the_rows_of_a_full_recompute(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refresh adds only what is new (pages, attributions) to additive counters and recounts
    the touched rows' distinct sets; the result equals recomputing every hour from scratch, through
    PostgreSQL's aggregation and through the Python one, with late and duplicated events, a list
    whose pages fall in two hours, and an hour old enough for its sets to have been dropped."""
    old = hour_of(timezone.now()) - 5 * H + 10 * M  # older than DISTINCT_SETS_HOURS: its sets go
    # Run 1: lists in three hours, one click.
    serve("r1", ["A", "B", "C"], at=t0, rules={"B": [7]})
    serve("r2", ["A", "D"], at=t0 + 70 * M, scene="cart", source="fallback", fallback_reason="timeout",
          strategy="popular", model_label="")  # fmt: skip
    serve("r-old", ["A", "B"], at=old, customer="c3")
    send("click", "B", at=t0 + M, rec="r1")
    metrics_refresh(drain=False)
    assert not RollupOpenHour.objects.filter(hour=hour_of(old)).exists()  # read, then dropped
    assert not HourlyDistinct.objects.filter(hour=hour_of(old)).exists()

    # Run 2: the same list's second page (same hour) and third (the next hour), the same customer
    # again, a list inside an experiment, a page in the old hour, a double click, a resent event, a
    # purchase by the window and one whose click has not arrived yet.
    serve("r1", ["D"], at=t0 + 2 * M, offset=3)
    serve("r1", ["C"], at=t0 + 65 * M, offset=4)
    serve("r3", ["C", "B"], at=t0 + 5 * M, customer="c2", rules={"B": [7]})
    serve("r4", ["B", "D"], at=t0 + 6 * M, customer="c1", experiment_id=5, variant_id=9, latency_ms=41.3)
    # Latencies on the histogram's edges and between, two pages in one bucket (rows per bucket).
    edges = rollups_module.LATENCY_EDGES_MS
    pages = [(10, edges[100]), (10, edges[100]), (11, edges[100] - 1e-9), (11, 0.0), (10, 500_000.0), (11, 41.3)]
    for i, (variant, latency) in enumerate(pages):
        serve(f"x{i}", ["A"], at=t0 + (8 + i) * M, customer=f"x{i}", experiment_id=6, variant_id=variant,
              latency_ms=latency)  # fmt: skip
    serve("r-old2", ["C", "A"], at=old + M, customer="c3")
    send("click", "B", at=t0 + 3 * M, rec="r1")  # a double click: counted once
    send("click", "D", at=t0 + 7 * M, rec="r4", event_id="dup")
    send("click", "D", at=t0 + 7 * M, rec="r4", event_id="dup")  # resent: stored once
    send("click", "A", at=old + 2 * M, rec="r-old2", customer="c3")
    send("purchase", "B", at=t0 + 10 * M, price=2, value=2)  # by the window: c1's last click on B (r1)
    send("purchase", "C", at=t0 + 20 * M, customer="c2", price=5)  # its click comes in the next run
    metrics_refresh(drain=False)

    # Run 3: late events inside the window (the click that led to the purchase above, a click on a
    # list served two hours ago), an add-to-cart, and a page in the current hour.
    send("click", "C", at=t0 + 6 * M, rec="r3", customer="c2")
    send("click", "A", at=t0 + 100 * M, rec="r1")
    send("add_to_cart", "D", at=t0 + 101 * M, rec="r4")
    # The current hour (t0's plus two): a minute ago, but never the hour before, which it would be in the
    # first minute of an hour (CI once ran this at xx:00:30 and found r5 in r1's third page's hour).
    serve("r5", ["A", "B"], at=max(timezone.now() - M, hour_of(t0) + 2 * H), customer="c4")
    metrics_refresh(drain=False)
    assert metrics_refresh(drain=False).rows == 0  # nothing new: nothing touched
    incremental = _snapshot()

    home = HourlyRollup.objects.get(hour=hour_of(t0), scene="home", experiment_id=None)
    # r1 (two pages) and r3; A B C D; c1 and c2; clicks B (r1), C (r3), A (r1, late); purchases B, C.
    assert (home.lists, home.impressions, home.items, home.customers) == (2, 6, 4, 2)
    assert (home.clicks, home.purchases, str(home.revenue), home.window_attributions) == (3, 2, "9.00", 2)
    assert HourlyRollup.objects.get(hour=hour_of(t0 + H), scene="home").lists == 1  # r1's third page
    experiment = HourlyRollup.objects.get(experiment_id=5)
    assert (experiment.variant_id, experiment.clicks, experiment.add_to_carts) == (9, 1, 1)
    old_row = HourlyRollup.objects.get(hour=hour_of(old))
    assert (old_row.lists, old_row.items, old_row.customers, old_row.clicks) == (2, 3, 1, 1)
    histogram = {(r.variant_id, r.bucket): r.pages for r in LatencyRollup.objects.filter(experiment_id=6)}
    assert histogram[(10, 101)] == 2 and histogram[(11, 100)] == 1  # edges[100] opens bucket 101
    assert histogram[(11, 0)] == 1 and histogram[(10, len(edges))] == 1  # below the first edge, past the last

    metrics_rebuild()
    assert _snapshot() == incremental
    monkeypatch.setattr(rollups_module, "USE_SQL", False)
    metrics_rebuild()
    assert _snapshot() == incremental
    monkeypatch.undo()

    # After a full recompute the incremental runs go on from the same rows.
    serve("r6", ["C"], at=t0 + 8 * M, customer="c1")
    send("click", "C", at=t0 + 9 * M, rec="r6")
    metrics_refresh(drain=False)
    after = _snapshot()
    metrics_rebuild()
    assert _snapshot() == after
