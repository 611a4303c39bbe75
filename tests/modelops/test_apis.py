"""The model management API (manage scope)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.modelops.models import ModelKind, ModelVersion, TrainingRun
from recadmin.modelops.services import PARAM_ALIASES, PARAM_SPECS, PIPELINE_OPTIONS
from tests.fixtures.torchserve import TorchServeInstance

pytestmark = pytest.mark.django_db


@pytest.fixture
def manage_client(make_api_client: Callable[..., APIClient]) -> APIClient:
    return make_api_client("manage")


def test_model_endpoints_need_the_manage_scope(make_api_client: Callable[..., APIClient]) -> None:
    client = make_api_client("recommend")
    response = client.get("/api/v1/models")
    assert response.status_code == 403
    assert response.json()["extra"]["required_scope"] == "manage"
    assert client.post("/api/v1/training-runs", {"kind": "pop"}, format="json").status_code == 403


def test_it_lists_versions_with_what_torchserve_has_loaded(
    manage_client: APIClient, make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="registered", ndcg=0.05)
    make_version(2, status="default", ndcg=0.07)

    body = manage_client.get("/api/v1/models").json()

    assert body["torchserve"]["reachable"] is True
    by_version = {row["version"]: row for row in body["versions"]}
    assert by_version[2]["status"] == "default"
    assert by_version[2]["torchserve"] == {"loaded": True, "is_default": True, "workers_ready": 1, "workers_total": 1}
    assert by_version[1]["valid_metrics"]["NDCG@10"] == 0.05


def test_it_lists_versions_when_torchserve_is_down_and_says_so(manage_client: APIClient, settings: Any) -> None:
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5
    ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")

    response = manage_client.get("/api/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["torchserve"]["reachable"] is False and "did not answer" in body["torchserve"]["error"]
    assert body["versions"][0]["version"] == 1


def test_starting_a_training_run_returns_its_id_and_enqueues_it_after_commit(
    manage_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = manage_client.post(
            "/api/v1/training-runs", {"kind": "sasrec", "params": {"max_epochs": 3, "hidden": 32}}, format="json"
        )
    assert response.status_code == 201
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert (run.kind, run.status, run.trigger) == ("sasrec", "queued", "api")
    assert run.params == {"max_epochs": 3, "hidden": 32}
    assert len(callbacks) == 1, "the task is handed to Celery only once the run is committed"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "deep-magic"}, "kind"),
        ({"kind": "sasrec", "params": {"epoch": 3}}, "params.epoch"),
        ({"kind": "pop", "params": {"epochs": 3}}, "params.epochs"),
        ({"kind": "sasrec", "params": {"hidden": "big"}}, "params.hidden"),
        ({"kind": "sasrec", "params": {"dropout": 2}}, "params.dropout"),
        ({"kind": "sasrec", "params": {"loss": "hinge"}}, "params.loss"),
        ({"kind": "sasrec", "params": {"new_items": "popular"}}, "params.new_items"),
        ({"kind": "sasrec", "params": {"new_item_weight": -1}}, "params.new_item_weight"),
        ({"kind": "pop", "params": "fast"}, "params"),
        ({"kind": "pop", "model_name": "no spaces please"}, "model_name"),
        ({"kind": "cf", "params": {"hidden": 32}}, "params.hidden"),  # a sasrec parameter
        ({"params": {"l2": 10.0}}, "params.l2"),  # no kind: a sasrec run, and l2 is cf's
        ({"kind": "pop", "params": {"seed": -1}}, "params.seed"),
        ({"kind": "pop", "parms": {"seed": 1}}, "parms"),
        ({"model_name": "1st"}, "model_name"),
        ({"model_name": "rec--1"}, "model_name"),
        ({"model_name": "rec-"}, "model_name"),
        ({"model_name": "r" * 101}, "model_name"),
    ],
)
def test_bad_training_input_is_a_400_naming_the_field(
    manage_client: APIClient, payload: dict[str, Any], field: str
) -> None:
    response = manage_client.post("/api/v1/training-runs", payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["extra"]["fields"]
    assert not TrainingRun.objects.exists()


def test_the_training_run_schema_takes_each_kinds_own_params_and_the_model_name_rule(
    manage_client: APIClient,
) -> None:
    """One request shape per kind: the parameters the service takes for it, with their bounds, and no
    other; the model name's pattern is the service's rule (or empty: the default name)."""
    components = manage_client.get("/api/schema/?format=json").json()["components"]["schemas"]
    shapes = {shape["title"]: shape for shape in components["TrainingRunCreateRequest"]["oneOf"]}
    assert set(shapes) == set(ModelKind.values)
    for kind, shape in shapes.items():
        params = shape["properties"]["params"]
        assert params["additionalProperties"] is False and shape["additionalProperties"] is False
        expected = set(PARAM_SPECS[kind]) | set(PIPELINE_OPTIONS)
        expected |= {alias for alias, name in PARAM_ALIASES.items() if name in PARAM_SPECS[kind]}
        assert set(params["properties"]) == expected, kind
        assert shape.get("required", []) == ([] if kind == ModelKind.SASREC else ["kind"])
    assert shapes["sasrec"]["properties"]["params"]["properties"]["dropout"] == {
        "type": ["number", "null"], "minimum": 0.0, "maximum": 0.9
    }  # fmt: skip
    name = shapes["pop"]["properties"]["model_name"]
    for accepted in ("", "recommender", "rec-2", "Shop_A-b-9"):
        assert re.search(name["pattern"], accepted), accepted
    for refused in ("1st", "rec--1", "rec-", "-rec", "no spaces", "ré"):
        assert not re.search(name["pattern"], refused), refused
    assert name["maxLength"] == 100


def test_what_the_training_run_schema_allows_starts_a_run(manage_client: APIClient) -> None:
    bodies = [
        {},
        {"kind": "cf", "params": {"l2": 10_000_000, "dims": 2, "seed": None}, "model_name": ""},
        {"kind": "pop", "params": {"half_life_days": 0.001, "use_event_weights": False}, "model_name": "pop-A_1"},
        {"params": {"epochs": 1000, "loss": "sampled", "workers": 16}},
    ]
    for body in bodies:
        response = manage_client.post("/api/v1/training-runs", body, format="json")
        assert response.status_code == 201, (body, response.json())
    assert TrainingRun.objects.count() == len(bodies)


def test_epochs_is_accepted_as_the_name_of_max_epochs(manage_client: APIClient) -> None:
    response = manage_client.post("/api/v1/training-runs", {"kind": "sasrec", "params": {"epochs": 4}}, format="json")
    assert response.status_code == 201
    assert TrainingRun.objects.get().params == {"max_epochs": 4}


def test_it_shows_a_training_run_and_404s_an_unknown_one(manage_client: APIClient) -> None:
    run = TrainingRun.objects.create(kind="pop", status="running", progress=42.0, stage="training epoch 2/5")
    ModelVersion.objects.create(name="recommender", version=4, kind="pop", training_run=run)
    body = manage_client.get(f"/api/v1/training-runs/{run.pk}").json()
    assert (body["status"], body["progress"], body["stage"], body["model_version"]) == (
        "running",
        42.0,
        "training epoch 2/5",
        4,
    )
    response = manage_client.get("/api/v1/training-runs/999999")
    assert response.status_code == 404 and "999999" in response.json()["message"]


def test_promote_and_rollback_through_the_api(
    manage_client: APIClient, make_version: Callable[..., ModelVersion], torchserve_settings: TorchServeInstance
) -> None:
    make_version(1, status="default")
    make_version(2)

    response = manage_client.post("/api/v1/models/recommender/2/promote")
    assert response.status_code == 200 and response.json()["status"] == "default"
    assert torchserve_settings.client.default_version("recommender") == "2"

    response = manage_client.post("/api/v1/models/recommender/rollback")
    assert response.status_code == 200 and response.json()["version"] == 1
    assert torchserve_settings.client.default_version("recommender") == "1"


def test_promote_and_rollback_errors_are_clear(manage_client: APIClient) -> None:
    response = manage_client.post("/api/v1/models/recommender/7/promote")
    assert response.status_code == 404 and "no version 7" in response.json()["message"]
    response = manage_client.post("/api/v1/models/recommender/rollback")
    assert response.status_code == 409 and "no previous default" in response.json()["message"]


def test_promote_when_torchserve_is_unreachable_is_a_503_and_changes_nothing(
    manage_client: APIClient, settings: Any
) -> None:
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_MANAGEMENT_URL = f"http://127.0.0.1:{free_port()}"
    settings.TORCHSERVE_TIMEOUT = 0.5
    ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    ModelVersion.objects.create(name="recommender", version=2, kind="pop", status="registered")

    response = manage_client.post("/api/v1/models/recommender/2/promote")

    assert response.status_code == 503 and "did not answer" in response.json()["message"]
    assert ModelVersion.objects.get(status="default").version == 1


def test_scale_validates_workers(manage_client: APIClient) -> None:
    ModelVersion.objects.create(name="recommender", version=1, kind="pop", status="default")
    response = manage_client.post("/api/v1/models/recommender/1/scale", {"workers": 0}, format="json")
    assert response.status_code == 400 and "workers" in response.json()["extra"]["fields"]


def test_the_schema_documents_the_model_endpoints(client: Any) -> None:
    schema = client.get("/api/schema/").content.decode()
    for path in ("/api/v1/models:", "/api/v1/training-runs:", "/api/v1/models/{name}/rollback:"):
        assert path in schema


def test_it_lists_training_runs_newest_first_filtered_by_status_with_cursor_pages(
    manage_client: APIClient, django_assert_max_num_queries: Any
) -> None:
    import datetime as dt

    from django.utils import timezone

    now = timezone.now()
    runs = [
        TrainingRun.objects.create(
            kind="pop", status=status, created_at=now - dt.timedelta(minutes=i), log_tail="x" * 1000
        )
        for i, status in enumerate(["running", "succeeded", "failed", "succeeded", "queued"])
    ]
    ModelVersion.objects.create(name="recommender", version=3, kind="pop", training_run=runs[1])

    with django_assert_max_num_queries(4):  # key, page, prefetched versions: no query per run
        body = manage_client.get("/api/v1/training-runs?limit=2").json()
    assert [r["id"] for r in body["results"]] == [runs[0].pk, runs[1].pk]
    assert body["results"][1]["model_version"] == 3 and "log_tail" not in body["results"][0]
    second = manage_client.get(body["next"]).json()
    assert [r["id"] for r in second["results"]] == [runs[2].pk, runs[3].pk]

    done = manage_client.get("/api/v1/training-runs?status=succeeded").json()
    assert [r["id"] for r in done["results"]] == [runs[1].pk, runs[3].pk]
    active = manage_client.get("/api/v1/training-runs?status=queued,running").json()
    assert {r["id"] for r in active["results"]} == {runs[0].pk, runs[4].pk}


def test_the_training_run_list_refuses_an_unknown_status_and_needs_the_manage_scope(
    manage_client: APIClient, make_api_client: Callable[..., APIClient]
) -> None:
    response = manage_client.get("/api/v1/training-runs?status=done")
    assert response.status_code == 400
    assert "status" in response.json()["message"] and "succeeded" in response.json()["message"]
    assert make_api_client("recommend").get("/api/v1/training-runs").status_code == 403


def test_the_training_run_list_is_documented(manage_client: APIClient) -> None:
    schema = manage_client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/training-runs"]["get"]
    assert operation["operationId"] == "training_runs_list"
    assert {p["name"] for p in operation["parameters"]} >= {"status", "kind", "cursor", "limit"}
    [status] = [p for p in operation["parameters"] if p["name"] == "status"]
    assert re.search(status["schema"]["pattern"], "queued,running")
    assert not re.search(status["schema"]["pattern"], "done") and not re.search(status["schema"]["pattern"], "queued,")
    assert "post" in schema["paths"]["/api/v1/training-runs"]
