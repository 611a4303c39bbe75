"""From served pages and events to the experiment's report, Thompson sampling and the report page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from recadmin.experiments.models import AllocationSnapshot, Experiment, ExperimentCustomer
from recadmin.metrics.services import metrics_refresh
from tests.rules.factories import SceneFactory

pytestmark = pytest.mark.django_db
M = dt.timedelta(minutes=1)


def _experiment(allocation: str = "fixed") -> Experiment:
    from recadmin.experiments.services import experiment_create, experiment_start

    SceneFactory(slug="home")
    experiment = experiment_create(
        name="popular vs control",
        scenes=["home"],
        primary_metric="ctr",
        allocation=allocation,
        variants=[{"name": "control", "weight": 50}, {"name": "popular", "weight": 50, "strategy": ["popular"]}],
    )
    return experiment_start(experiment=experiment)


def _traffic(
    experiment: Experiment,
    t0: dt.datetime,
    serve: Callable[..., Any],
    send: Callable[..., Any],
    *,
    clicks_control: int,
    clicks_popular: int,
    customers: int = 4,
) -> None:
    control, popular = experiment.variants.order_by("position")
    for n in range(customers):
        variant = control if n % 2 == 0 else popular
        customer = f"c{n}"
        rec = f"r-{n}"
        serve(
            rec, ["A", "B", "C"], at=t0 + n * M, customer=customer, experiment_id=experiment.pk, variant_id=variant.pk
        )
        wanted = clicks_control if variant == control else clicks_popular
        for item in ["A", "B", "C"][:wanted]:
            send("click", item, at=t0 + (n + 1) * M, rec=rec, customer=customer)


def test_served_pages_and_events_fill_the_report_per_variant(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], make_api_client: Callable[..., APIClient]
) -> None:
    experiment = _experiment()
    _traffic(experiment, t0, serve, send, clicks_control=1, clicks_popular=2)
    send("purchase", "B", at=t0 + 20 * M, customer="c1", price=7)  # c1 (popular) clicked B: by the window
    metrics_refresh(drain=False)
    rows = {r.customer_shop_id: r for r in ExperimentCustomer.objects.filter(experiment=experiment)}
    assert sorted(rows) == ["c0", "c1", "c2", "c3"]
    assert (rows["c1"].lists, rows["c1"].impressions, rows["c1"].clicks, rows["c1"].purchases) == (1, 3, 2, 1)
    assert str(rows["c1"].revenue) == "7.00"

    response = make_api_client("manage").get(f"/api/v1/experiments/{experiment.pk}/report")
    assert response.status_code == 200, response.content
    variants = {v["name"]: v for v in response.json()["variants"]}
    assert (variants["control"]["customers"], variants["control"]["clicks"], variants["control"]["impressions"]) == (
        2,
        2,
        6,
    )
    assert (variants["popular"]["customers"], variants["popular"]["clicks"], variants["popular"]["purchases"]) == (
        2,
        4,
        1,
    )
    assert variants["popular"]["ctr"] == pytest.approx(4 / 6)

    # Re-running the pipeline writes the same sums.
    metrics_refresh(drain=False)
    assert ExperimentCustomer.objects.get(experiment=experiment, customer_shop_id="c1").clicks == 2


def test_thompson_sampling_moves_traffic_to_the_arm_the_rollups_show_better(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    from recadmin.experiments.services import experiment_allocations_update_running

    experiment = _experiment(allocation="thompson")
    _traffic(experiment, t0, serve, send, clicks_control=0, clicks_popular=3, customers=40)
    metrics_refresh(drain=False)
    assert experiment_allocations_update_running() == 1
    latest = AllocationSnapshot.objects.filter(experiment=experiment).order_by("-created_at", "-id").first()
    assert latest is not None and latest.reason != "start"
    assert latest.weights["popular"] > 0.8


def test_the_admin_report_page_shows_charts(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], admin_client: Client
) -> None:
    experiment = _experiment()
    _traffic(experiment, t0, serve, send, clicks_control=1, clicks_popular=2)
    metrics_refresh(drain=False)
    response = admin_client.get(f"/admin/metrics/experiments/{experiment.pk}/report/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<svg") >= 3
    assert "Allocation history" in html and "popular" in html and "(control)" in html
    assert admin_client.get("/admin/metrics/experiments/999999/report/").status_code == 404


def test_the_experiment_change_page_links_to_the_report(admin_client: Client) -> None:
    experiment = _experiment()
    html = admin_client.get(f"/admin/experiments/experiment/{experiment.pk}/change/").content.decode()
    assert f"/admin/metrics/experiments/{experiment.pk}/report/" in html


def test_the_refresh_keeps_first_exposures_and_totals_as_the_direct_computation_gives_them_and_a_rebuild_agrees(
    t0: dt.datetime, serve: Callable[..., Any]
) -> None:
    from recadmin.experiments.models import ExperimentFirstExposure, ExposureCount, VariantTotals
    from recadmin.experiments.selectors import (
        experiment_report,
        first_exposure_settle,
        first_exposures,
        first_exposures_counted,
        variant_sums,
        variant_sums_direct,
    )
    from recadmin.experiments.services import experiment_create, experiment_start
    from recadmin.metrics.services import metrics_rebuild

    SceneFactory(slug="home")
    experiment = experiment_create(
        name="thompson",
        scenes=["home"],
        allocation="thompson",
        variants=[{"name": "control", "weight": 50}, {"name": "popular", "weight": 50, "strategy": ["popular"]}],
    )
    experiment = experiment_start(experiment=experiment, now=t0)
    control, popular = experiment.variants.order_by("position")
    AllocationSnapshot.objects.create(
        experiment=experiment, created_at=t0 + 20 * M, weights={"control": 0.3, "popular": 0.7}, reason="thompson"
    )

    def page(n: int, customer: str, variant: Any, at: dt.datetime) -> None:
        serve(f"r-{n}", ["A", "B"], at=at, customer=customer, experiment_id=experiment.pk, variant_id=variant.pk)

    def agree() -> Any:
        history = list(experiment.allocations.order_by("created_at", "id"))
        settle = first_exposure_settle()
        counted = first_exposures_counted(experiment, history, settle=settle)
        assert counted == first_exposures(experiment, [s.created_at for s in history], settle=settle)
        return counted

    for n in range(12):  # one customer every 2.5 minutes from t0 + 1 min, alternating variants
        page(n, f"c{n}", (control, popular)[n % 2], t0 + M + n * 5 * M // 2)
    page(12, "c-edge", popular, t0 + 20 * M + dt.timedelta(seconds=1))  # within 3 s of the reallocation
    metrics_refresh(drain=False)
    first = agree()
    assert first.unsettled == 1 and first.by_period == [8, 4]

    # A late page of c9's, earlier and in the other variant; c1 comes back (no change); a reallocation
    # at t0 + 25 min written after the pages it concerns.
    page(20, "c9", control, t0 + 3 * M)
    page(21, "c1", popular, t0 + 28 * M)
    AllocationSnapshot.objects.create(
        experiment=experiment, created_at=t0 + 25 * M, weights={"control": 0.1, "popular": 0.9}, reason="thompson"
    )
    metrics_refresh(drain=False)
    second = agree()
    assert second.by_period == [9, 1, 2] and second.unsettled == 1
    assert ExperimentFirstExposure.objects.get(experiment=experiment, customer_shop_id="c9").variant_id == control.pk
    assert experiment_report(experiment)["srm_customers"] == {
        "control": second.by_variant[control.pk],
        "popular": second.by_variant[popular.pk],
    }

    assert variant_sums(experiment) == variant_sums_direct(experiment)

    def kept() -> tuple[set[Any], ...]:
        firsts = ExperimentFirstExposure.objects.filter(experiment=experiment)
        counts = ExposureCount.objects.filter(experiment=experiment, customers__gt=0)
        totals = VariantTotals.objects.filter(experiment=experiment)
        return (
            set(firsts.values_list("customer_shop_id", "variant_id", "first_seen_at", "allocation_id", "settled")),
            set(counts.values_list("variant_id", "allocation_id", "settled", "settle_ms", "customers")),
            set(totals.values_list("variant_id", "customers", "exposures", "lists", "impressions", "clicks")),
        )

    incremental = kept()
    # Damaged: the rebuild repairs them.
    ExposureCount.objects.filter(experiment=experiment).update(customers=0)
    VariantTotals.objects.filter(experiment=experiment).update(clicks=99)
    metrics_rebuild()
    assert kept() == incremental
    assert agree() == second
    assert variant_sums(experiment) == variant_sums_direct(experiment)


@pytest.mark.postgres
def test_a_rebuild_of_several_experiments_refreshes_the_planner_statistics_once(
    t0: dt.datetime, serve: Callable[..., Any]
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from recadmin.experiments.models import ExposureCount
    from recadmin.experiments.services import experiment_create, experiment_start
    from recadmin.metrics.services import metrics_rebuild

    experiments = []
    for slug in ("home", "cart"):
        SceneFactory(slug=slug)
        experiment = experiment_create(
            name=slug, scenes=[slug], variants=[{"name": "control", "weight": 1}, {"name": "b", "weight": 1}]
        )
        experiments.append(experiment_start(experiment=experiment, now=t0))
    for k, experiment in enumerate(experiments):
        for n, variant in enumerate(experiment.variants.order_by("position")):
            serve(f"r-{k}-{n}", ["A"], at=t0 + (n + 1) * M, customer=f"c{k}{n}",
                  experiment_id=experiment.pk, variant_id=variant.pk)  # fmt: skip
    metrics_refresh(drain=False)
    ExposureCount.objects.update(customers=0)  # damaged: the rebuild repairs both

    with CaptureQueriesContext(connection) as queries:
        metrics_rebuild()

    assert sum(q["sql"].startswith("ANALYZE") for q in queries.captured_queries) == 1
    for experiment in experiments:
        assert sum(ExposureCount.objects.filter(experiment=experiment).values_list("customers", flat=True)) == 2
