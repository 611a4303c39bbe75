"""Services and the hot-path selector: the cached running experiment per scene (no query when warm,
invalidated by start / stop / reallocation), Thompson reallocation from the per-customer sums, and
promotion of the winner (scene settings through rules, a model version through modelops)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recadmin.core.errors import Conflict, ValidationError
from recadmin.experiments import selectors, services
from recadmin.experiments.assignment import RunningExperiment
from recadmin.experiments.models import AllocationSnapshot, Experiment
from recadmin.experiments.services import CustomerSums
from recadmin.modelops.models import ModelVersion
from recadmin.rules.models import Scene

pytestmark = pytest.mark.django_db


def test_the_running_experiment_of_a_scene_is_read_without_a_query_when_warm(
    make_experiment: Callable[..., Experiment],
) -> None:
    experiment = make_experiment(status="running")
    running = selectors.experiment_running_for_scene("home")
    assert isinstance(running, RunningExperiment)
    assert running.id == experiment.pk and running.salt == experiment.salt
    assert [v.name for v in running.variants] == ["control", "v4", "popular", "no-mmr"]
    assert running.variants[1].model_name == "recommender" and running.variants[1].model_version == 4
    assert running.variants[2].strategy == ("popular",)
    assert running.variants[3].scene_settings == {"mmr_enabled": False}
    with CaptureQueriesContext(connection) as queries:
        for customer in ("c-1", "c-2", "anonymous-7"):
            assert selectors.experiment_running_for_scene("home").assign(customer).name in {"control", "v4"}
        assert selectors.experiment_running_for_scene("cart") is None
    assert len(queries) == 0


def test_another_process_reads_the_shared_cache_without_a_query(make_experiment: Callable[..., Experiment]) -> None:
    make_experiment(status="running")
    selectors.experiment_running_for_scene("home")
    selectors.experiments_forget_local()  # as a fresh web process would start
    with CaptureQueriesContext(connection) as queries:
        assert selectors.experiment_running_for_scene("home") is not None
    assert len(queries) == 0


def test_within_the_process_window_not_even_the_cache_is_asked(
    make_experiment: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    make_experiment(status="running")
    selectors.experiment_running_for_scene("home")
    calls: list[object] = []
    real_get = cache.get

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(cache, "get", counting_get)
    for _ in range(100):
        assert selectors.experiment_running_for_scene("home") is not None
    assert calls == []
    settings.EXPERIMENTS_PROCESS_CACHE_SECONDS = 0
    selectors.experiments_forget_local()
    selectors.experiment_running_for_scene("home")
    calls.clear()
    with CaptureQueriesContext(connection) as queries:
        selectors.experiment_running_for_scene("home")
    assert len(calls) == 1 and len(queries) == 0, "without the window: the version token only"


def test_stopping_removes_the_experiment_from_the_hot_path(make_experiment: Callable[..., Experiment]) -> None:
    experiment = make_experiment(status="running")
    assert selectors.experiment_running_for_scene("home") is not None
    services.experiment_stop(experiment=experiment)
    assert selectors.experiment_running_for_scene("home") is None


def test_an_admin_edit_invalidates_the_cache_too(make_experiment: Callable[..., Experiment]) -> None:
    experiment = make_experiment(status="running")
    assert selectors.experiment_running_for_scene("home") is not None
    experiment.scenes.set([Scene.objects.get(slug="cart")])  # what the admin's form save does
    assert selectors.experiment_running_for_scene("home") is None
    assert selectors.experiment_running_for_scene("cart") is not None


def test_a_cache_outage_falls_back_to_the_database(
    make_experiment: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_experiment(status="running")

    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", broken)
    running = selectors.experiment_running_for_scene("home")
    assert running is not None and running.name == "sasrec v4 vs popular"


def test_zero_weight_variants_are_not_served(make_experiment: Callable[..., Experiment]) -> None:
    make_experiment(status="running")
    running = selectors.experiment_running_for_scene("home")
    assert running is not None
    names = {running.assign(f"c{i}").name for i in range(2000)}
    assert names == {"control", "v4"}


# --- Thompson sampling -----------------------------------------------------------------------------


@pytest.fixture
def bandit(make_experiment: Callable[..., Experiment]) -> Experiment:
    return make_experiment(
        status="running",
        allocation="thompson",
        thompson_floor=0.05,
        variants=[
            {"name": "control", "weight": 1},
            {"name": "v4", "weight": 1, "model_version": 4},
            {"name": "popular", "weight": 1, "strategy": ["popular"]},
            {"name": "paused", "weight": 0, "scene_settings": {"mmr_enabled": False}},
        ],
    )


def _customers(experiment: Experiment, name: str, n: int, clicks_every: int) -> list[CustomerSums]:
    variant = experiment.variants.get(name=name)
    return [
        CustomerSums(variant.pk, f"{name}-{i}", lists=2, impressions=20, clicks=1 if i % clicks_every == 0 else 0)
        for i in range(n)
    ]


def test_thompson_reallocation_moves_traffic_to_the_better_arm_and_keeps_the_floor(bandit: Experiment) -> None:
    rows = (
        _customers(bandit, "control", 400, 10)
        + _customers(bandit, "v4", 400, 4)
        + _customers(bandit, "popular", 400, 12)
    )
    services.experiment_customers_upsert(experiment=bandit, rows=rows)
    snapshot = services.experiment_allocation_update(experiment=bandit)
    assert snapshot is not None and snapshot.reason == "thompson"
    assert snapshot.weights["v4"] > 0.85
    assert snapshot.weights["control"] >= 0.05 - 1e-9 and snapshot.weights["popular"] >= 0.05 - 1e-9
    assert "paused" not in snapshot.weights, "a variant configured with weight 0 stays out"
    assert sum(snapshot.weights.values()) == pytest.approx(1.0)
    assert snapshot.probability_best["v4"] > 0.99

    running = selectors.experiment_running_for_scene("home")
    assert running is not None
    assert dict(zip([v.name for v in running.variants], running.weights, strict=True))["v4"] == pytest.approx(
        snapshot.weights["v4"]
    )
    history = selectors.experiment_report(bandit)["allocation_history"]
    assert [point["reason"] for point in history] == ["start", "thompson"]
    # The sample-ratio test holds under Thompson sampling: these customers were first exposed before the
    # reallocation, so each variant expects a third of them (exactly what they have).
    report = selectors.experiment_report(bandit)
    assert report["srm_expected"] == {"control": 400, "v4": 400, "popular": 400, "paused": 0}
    assert report["srm_p_value"] == pytest.approx(1.0) and report["srm_flag"] is False


def test_a_reallocation_that_changes_nothing_writes_nothing(bandit: Experiment) -> None:
    rows = (
        _customers(bandit, "control", 300, 10)
        + _customers(bandit, "v4", 300, 3)
        + _customers(bandit, "popular", 300, 10)
    )
    services.experiment_customers_upsert(experiment=bandit, rows=rows)
    assert services.experiment_allocation_update(experiment=bandit) is not None
    assert services.experiment_allocation_update(experiment=bandit) is None
    assert AllocationSnapshot.objects.filter(experiment=bandit).count() == 2


def test_the_task_reallocates_every_running_thompson_experiment(
    bandit: Experiment, make_experiment: Callable[..., Experiment]
) -> None:
    from recadmin.experiments.tasks import update_allocations

    fixed = make_experiment(name="fixed", scenes=["cart"], status="running")
    rows = _customers(bandit, "control", 200, 10) + _customers(bandit, "v4", 200, 2)
    services.experiment_customers_upsert(experiment=bandit, rows=rows)
    assert update_allocations.delay().get() == 1
    assert AllocationSnapshot.objects.filter(experiment=fixed).count() == 1


def test_reallocating_a_fixed_experiment_is_refused(make_experiment: Callable[..., Experiment]) -> None:
    with pytest.raises(Conflict):
        services.experiment_allocation_update(experiment=make_experiment(status="running"))


def test_revenue_experiments_reallocate_on_revenue_per_customer(make_experiment: Callable[..., Experiment]) -> None:
    experiment = make_experiment(
        status="running",
        allocation="thompson",
        primary_metric="revenue_per_customer",
        variants=[{"name": "control", "weight": 1}, {"name": "v4", "weight": 1, "model_version": 4}],
    )
    ids = {v.name: v.pk for v in experiment.variants.all()}
    rows = [CustomerSums(ids["control"], f"c{i}", revenue=Decimal(20 if i % 5 == 0 else 0)) for i in range(500)]
    rows += [CustomerSums(ids["v4"], f"t{i}", revenue=Decimal(30 if i % 5 == 0 else 0)) for i in range(500)]
    services.experiment_customers_upsert(experiment=experiment, rows=rows)
    snapshot = services.experiment_allocation_update(experiment=experiment)
    assert snapshot is not None and snapshot.weights["v4"] > 0.9


# --- promotion -------------------------------------------------------------------------------------


def test_promoting_scene_settings_writes_them_into_the_scenes_and_stops_the_experiment(
    make_experiment: Callable[..., Experiment],
) -> None:
    experiment = make_experiment(
        scenes=["home", "cart"],
        status="running",
        variants=[
            {"name": "control", "weight": 1},
            {"name": "tight", "weight": 1, "scene_settings": {"mmr_enabled": False, "max_per_category": 2}},
        ],
    )
    done = services.experiment_promote_winner(experiment=experiment, variant=experiment.variants.get(name="tight"))
    assert "mmr_enabled=False" in done
    for slug in ("home", "cart"):
        scene = Scene.objects.get(slug=slug)
        assert (scene.mmr_enabled, scene.max_per_category) == (False, 2)
    experiment.refresh_from_db()
    assert experiment.status == "stopped" and experiment.promoted_variant.name == "tight"
    assert selectors.experiment_running_for_scene("home") is None
    with pytest.raises(Conflict, match="already promoted"):
        services.experiment_promote_winner(experiment=experiment, variant=experiment.variants.get(name="tight"))


def test_the_control_and_drafts_have_nothing_to_promote(make_experiment: Callable[..., Experiment]) -> None:
    draft = make_experiment()
    with pytest.raises(Conflict, match="has not run"):
        services.experiment_promote_winner(experiment=draft, variant=draft.variants.get(name="v4"))
    running = make_experiment(name="b", scenes=["cart"], status="running")
    with pytest.raises(ValidationError, match="changes nothing"):
        services.experiment_promote_winner(experiment=running, variant=running.variants.get(name="control"))
    with pytest.raises(ValidationError, match="not part of"):
        services.experiment_promote_winner(experiment=running, variant=draft.variants.get(name="v4"))


def test_promoting_a_strategy_sets_it_on_the_scenes(make_experiment: Callable[..., Experiment]) -> None:
    experiment = make_experiment(status="running")

    done = services.experiment_promote_winner(experiment=experiment, variant=experiment.variants.get(name="popular"))

    assert Scene.objects.get(slug="home").strategy == ["popular"]
    assert "strategy popular" in done
    experiment.refresh_from_db()
    assert experiment.promoted_variant is not None and experiment.promoted_variant.name == "popular"


@pytest.mark.slow
def test_promoting_a_model_version_makes_it_the_default_in_torchserve(
    make_version: Callable[..., ModelVersion], scenes: dict[str, Scene], torchserve_settings: object
) -> None:
    from recadmin.modelops.selectors import default_model_get

    make_version(1, status="default")
    make_version(2)
    experiment = services.experiment_create(
        name="v2 vs v1",
        scenes=["home"],
        variants=[{"name": "control", "weight": 1}, {"name": "v2", "weight": 1, "model_version": 2}],
        status="running",
    )
    services.experiment_promote_winner(experiment=experiment, variant=experiment.variants.get(name="v2"))
    assert ModelVersion.objects.get(version=2).status == "default"
    assert default_model_get().version == 2
    assert torchserve_settings.client.default_version("recommender") == "2"  # type: ignore[attr-defined]


def test_creating_names_every_unknown_variant_field_and_guardrail() -> None:
    with pytest.raises(ValidationError) as raised:
        services.experiment_create(
            name="typos",
            scenes=["home"],
            variants=[
                {"name": "control", "weight": 1},
                {"name": "v2", "weight": 1, "modle_version": 4, "strategey": ["popular"]},
            ],
            guardrails={"p99_latency_ms_max": 100, "fallback_shar_max": 0.1, "fallback_share_max": 0.2},
        )

    fields = raised.value.extra["fields"]
    assert {"variants[1].modle_version", "variants[1].strategey"} <= set(fields)
    assert {"guardrails.p99_latency_ms_max", "guardrails.fallback_shar_max"} <= set(fields)
    assert "guardrails.fallback_share_max" not in fields
    assert not Experiment.objects.exists()
