"""/api/v1/experiments: auth and scopes, create / list / get / start / stop, the report, and 400s naming
the field for every kind of bad input."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.experiments.models import AllocationSnapshot, Experiment, Variant
from tests.experiments.conftest import ISSUE_EXAMPLE

pytestmark = pytest.mark.django_db

URLS = [
    ("get", "/api/v1/experiments"),
    ("post", "/api/v1/experiments"),
    ("get", "/api/v1/experiments/1"),
    ("post", "/api/v1/experiments/1/start"),
    ("post", "/api/v1/experiments/1/stop"),
    ("get", "/api/v1/experiments/1/report"),
]


@pytest.mark.parametrize(("method", "url"), URLS)
def test_it_answers_401_without_a_key(method: str, url: str) -> None:
    response = getattr(APIClient(), method)(url, {}, format="json")
    assert response.status_code == 401
    assert set(response.json()) == {"message", "extra"}


@pytest.mark.parametrize(("method", "url"), URLS)
def test_it_answers_403_to_keys_without_the_manage_scope(
    make_api_client: Callable[..., APIClient], method: str, url: str
) -> None:
    client = make_api_client("ingest", "recommend")
    response = getattr(client, method)(url, {}, format="json")
    assert response.status_code == 403
    assert response.json()["extra"] == {"required_scope": "manage"}


def test_it_creates_the_issues_example_and_answers_with_its_id(manage: APIClient) -> None:
    response = manage.post("/api/v1/experiments", ISSUE_EXAMPLE, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    experiment = Experiment.objects.get(pk=body["id"])
    assert body["status"] == "draft" and body["scenes"] == ["home"]
    assert body["primary_metric"] == "ctr" and body["allocation"] == "fixed"
    assert [
        (v["name"], v["weight"], v["model_version"], v["strategy"], v["scene_settings"]) for v in body["variants"]
    ] == [
        ("control", 50.0, None, None, None),
        ("v4", 50.0, 4, None, None),
        ("popular", 0.0, None, ["popular"], None),
        ("no-mmr", 0.0, None, None, {"mmr_enabled": False}),
    ]
    assert body["weights"] == {"control": 0.5, "v4": 0.5, "popular": 0.0, "no-mmr": 0.0}
    assert experiment.variants.get(name="v4").model_version.version == 4
    assert len(experiment.salt) == 16


def test_list_get_start_stop(manage: APIClient) -> None:
    created = manage.post("/api/v1/experiments", ISSUE_EXAMPLE, format="json").json()
    other = manage.post("/api/v1/experiments", {**ISSUE_EXAMPLE, "name": "other", "scenes": ["cart"]}, format="json")
    assert other.status_code == 201
    listed = manage.get("/api/v1/experiments").json()["results"]
    assert [e["name"] for e in listed] == ["other", "sasrec v4 vs popular"]
    assert manage.get("/api/v1/experiments?scene=cart").json()["results"][0]["name"] == "other"

    url = f"/api/v1/experiments/{created['id']}"
    assert manage.get(url).json()["name"] == "sasrec v4 vs popular"
    started = manage.post(f"{url}/start")
    assert started.status_code == 200, started.json()
    assert started.json()["status"] == "running" and started.json()["started_at"]
    assert AllocationSnapshot.objects.get(experiment_id=created["id"]).weights == {
        "control": 0.5,
        "v4": 0.5,
        "popular": 0.0,
        "no-mmr": 0.0,
    }
    assert [e["name"] for e in manage.get("/api/v1/experiments?status=running").json()["results"]] == [
        "sasrec v4 vs popular"
    ]
    assert manage.post(f"{url}/start").status_code == 409
    stopped = manage.post(f"{url}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped" and stopped.json()["stopped_at"]
    assert manage.post(f"{url}/stop").status_code == 409
    assert manage.post(f"{url}/start").status_code == 409, "a stopped experiment is not restarted"


def test_unknown_experiments_are_404(manage: APIClient) -> None:
    for url in ["/api/v1/experiments/999", "/api/v1/experiments/999/report"]:
        assert manage.get(url).status_code == 404
    assert manage.post("/api/v1/experiments/999/start").status_code == 404


def test_list_rejects_an_unknown_status(manage: APIClient) -> None:
    response = manage.get("/api/v1/experiments?status=paused")
    assert response.status_code == 400 and "status" in response.json()["extra"]["fields"]


def _with(path: str, value: Any) -> dict[str, Any]:
    """ISSUE_EXAMPLE with one value replaced: path "variants.1.model_version" or "name"."""
    body = copy.deepcopy(ISSUE_EXAMPLE)
    target: Any = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with("variants.1.modle_version", 4), "variants[1].modle_version"),
        (_with("variants.1.strategy", ["popular"]), "variants[1]"),
        (_with("variants.3.model_version", 4), "variants[3]"),
        (_with("variants.1.model_version", 99), "variants[1].model_version"),
        (_with("variants.2.strategy", ["popular", "bestsellers"]), "variants[2].strategy"),
        (_with("variants.2.strategy", []), "variants[2].strategy"),
        (_with("variants.3.scene_settings", {"mmr_enabld": False}), "variants[3].scene_settings"),
        (_with("variants.3.scene_settings", {"mmr_enabled": "no"}), "variants[3].scene_settings.mmr_enabled"),
        (_with("variants.3.scene_settings", {"mmr_lambda": 1.5}), "variants[3].scene_settings.mmr_lambda"),
        (_with("variants.3.scene_settings", {"fallback": "random"}), "variants[3].scene_settings.fallback"),
        (_with("variants.3.scene_settings", {"max_per_category": 0}), "variants[3].scene_settings.max_per_category"),
        (_with("variants.0.weight", 0), "variants[0].weight"),
        (
            {**ISSUE_EXAMPLE, "variants": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]},
            "variants",
        ),
        (_with("variants.1.weight", -1), "variants"),
        (_with("variants.1.name", "control"), "variants[1].name"),
        ({**ISSUE_EXAMPLE, "variants": [{"name": "only", "weight": 1}]}, "variants"),
        (_with("scenes", ["home", "checkout"]), "scenes"),
        (_with("scenes", []), "scenes"),
        (_with("primary_metric", "clicks"), "primary_metric"),
        (_with("allocation", "epsilon_greedy"), "allocation"),
        (_with("name", _DELETE), "name"),
        ({**ISSUE_EXAMPLE, "owner": "me"}, "owner"),
        ({**ISSUE_EXAMPLE, "guardrails": {"fallback_share_max": 2}}, "guardrails"),
        ({**ISSUE_EXAMPLE, "guardrails": {"p99_latency_ms_max": 100}}, "guardrails.p99_latency_ms_max"),
        (
            {
                **_with("variants.2.weight", 10),
                "allocation": "thompson",
                "thompson_floor": 0.4,
            },
            "thompson_floor",
        ),
        ({**ISSUE_EXAMPLE, "thompson_floor": 0.6}, "thompson_floor"),
        ({**ISSUE_EXAMPLE, "status": "stopped"}, "status"),
        ({**ISSUE_EXAMPLE, "minimum_sample": 0}, "minimum_sample"),
        ({**ISSUE_EXAMPLE, "variants": "control,v4"}, "variants"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(manage: APIClient, body: dict[str, Any], field: str) -> None:
    response = manage.post("/api/v1/experiments", body, format="json")
    assert response.status_code == 400, response.json()
    fields = response.json()["extra"]["fields"]
    assert field in fields, fields
    assert not Experiment.objects.exists()


def test_a_model_version_that_cannot_be_served_is_refused(manage: APIClient) -> None:
    from recadmin.modelops.models import ModelVersion

    ModelVersion.objects.create(name="recommender", version=5, kind="sasrec", status="failed")
    response = manage.post("/api/v1/experiments", _with("variants.1.model_version", 5), format="json")
    assert response.status_code == 400
    assert "failed" in response.json()["extra"]["fields"]["variants[1].model_version"][0]


def test_a_second_running_experiment_on_a_scene_is_refused_at_start_naming_scenes(manage: APIClient) -> None:
    first = manage.post("/api/v1/experiments", {**ISSUE_EXAMPLE, "status": "running"}, format="json")
    assert first.status_code == 201 and first.json()["status"] == "running"
    second = manage.post(
        "/api/v1/experiments", {**ISSUE_EXAMPLE, "name": "second", "scenes": ["cart", "home"]}, format="json"
    )
    assert second.status_code == 201
    response = manage.post(f"/api/v1/experiments/{second.json()['id']}/start")
    assert response.status_code == 400
    message = response.json()["extra"]["fields"]["scenes"][0]
    assert "scene 'home' already runs experiment 'sasrec v4 vs popular'" in message
    assert Experiment.objects.get(pk=second.json()["id"]).status == "draft"


def test_a_second_running_experiment_on_a_scene_is_refused_at_create_with_running(manage: APIClient) -> None:
    assert manage.post("/api/v1/experiments", {**ISSUE_EXAMPLE, "status": "running"}, format="json").status_code == 201
    response = manage.post(
        "/api/v1/experiments", {**ISSUE_EXAMPLE, "name": "again", "status": "running"}, format="json"
    )
    assert response.status_code == 400
    assert "scenes" in response.json()["extra"]["fields"]
    assert list(Experiment.objects.values_list("name", flat=True)) == ["sasrec v4 vs popular"], "nothing half-created"


def test_experiments_on_different_scenes_run_side_by_side(manage: APIClient) -> None:
    assert manage.post("/api/v1/experiments", {**ISSUE_EXAMPLE, "status": "running"}, format="json").status_code == 201
    cart = manage.post(
        "/api/v1/experiments", {**ISSUE_EXAMPLE, "name": "cart", "scenes": ["cart"], "status": "running"}, format="json"
    )
    assert cart.status_code == 201, cart.json()


def test_a_version_not_loaded_in_torchserve_cannot_start(manage: APIClient) -> None:
    from recadmin.modelops.models import ModelVersion

    ModelVersion.objects.create(name="recommender", version=6, kind="sasrec", status="built")
    created = manage.post("/api/v1/experiments", _with("variants.1.model_version", 6), format="json")
    assert created.status_code == 201
    response = manage.post(f"/api/v1/experiments/{created.json()['id']}/start")
    assert response.status_code == 400
    assert "variants[1].model_version" in response.json()["extra"]["fields"]


def test_an_aa_test_and_a_thompson_experiment_are_accepted(manage: APIClient) -> None:
    aa = manage.post(
        "/api/v1/experiments",
        {"name": "A/A", "scenes": ["home"], "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
        format="json",
    )
    assert aa.status_code == 201 and aa.json()["primary_metric"] == "ctr"
    bandit = manage.post(
        "/api/v1/experiments",
        {
            **ISSUE_EXAMPLE,
            "allocation": "thompson",
            "primary_metric": "revenue_per_customer",
            "thompson_floor": 0.1,
            "minimum_sample": 2000,
            "guardrails": {"fallback_share_max": 0.2, "p95_latency_ms_max": 150},
            "hypothesis": "v4 sells more",
        },
        format="json",
    )
    assert bandit.status_code == 201, bandit.json()
    body = bandit.json()
    assert body["guardrails"] == {"fallback_share_max": 0.2, "p95_latency_ms_max": 150}
    assert body["thompson_floor"] == 0.1 and body["minimum_sample"] == 2000
    assert Variant.objects.filter(experiment_id=body["id"]).count() == 4
