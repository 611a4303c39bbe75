"""/api/v1/scenes and /api/v1/rules: auth, scopes, CRUD, and 400s naming the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.rules.models import BusinessRule, Scene
from tests.rules.factories import BusinessRuleFactory, CategoryFactory, ItemFactory, SceneFactory

pytestmark = pytest.mark.django_db

BOOST = {
    "name": "Skincare week",
    "kind": "boost",
    "scenes": ["home"],
    "weight": 1.5,
    "condition": {
        "all": [
            {"field": "category", "op": "in_subtree", "value": "skincare"},
            {"field": "price", "op": "between", "value": [10, 50]},
        ]
    },
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_until": "2036-01-01T00:00:00Z",
}


@pytest.fixture
def manage(make_api_client: Callable[..., APIClient]) -> APIClient:
    SceneFactory(slug="home")
    SceneFactory(slug="cart")
    CategoryFactory(slug="skincare")
    return make_api_client("manage")


@pytest.mark.parametrize("url", ["/api/v1/scenes", "/api/v1/scenes/home", "/api/v1/rules", "/api/v1/rules/1"])
def test_it_answers_401_without_a_key(url: str) -> None:
    response = APIClient().get(url)
    assert response.status_code == 401
    assert set(response.json()) == {"message", "extra"}


@pytest.mark.parametrize("url", ["/api/v1/scenes", "/api/v1/rules"])
def test_it_answers_403_to_keys_without_the_manage_scope(make_api_client: Callable[..., APIClient], url: str) -> None:
    client = make_api_client("ingest", "recommend")
    assert client.get(url).status_code == 403
    assert client.post(url, {"name": "x"}, format="json").status_code == 403


def test_scene_crud(manage: APIClient) -> None:
    created = manage.post(
        "/api/v1/scenes",
        {"slug": "search", "name": "Search page", "max_per_category": 2, "mmr_enabled": True, "mmr_lambda": 0.4},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["default_n"] == 10 and created.json()["max_per_category"] == 2
    listed = manage.get("/api/v1/scenes").json()["results"]
    assert [scene["slug"] for scene in listed] == ["cart", "home", "search"]
    patched = manage.patch("/api/v1/scenes/search", {"default_n": 20, "max_per_category": None}, format="json")
    assert patched.status_code == 200
    assert Scene.objects.get(slug="search").default_n == 20
    assert Scene.objects.get(slug="search").max_per_category is None
    assert manage.get("/api/v1/scenes/search").json()["name"] == "Search page"
    assert manage.delete("/api/v1/scenes/search").status_code == 204
    assert manage.get("/api/v1/scenes/search").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "x", "name": "X", "mmr_lambda": 1.5}, "mmr_lambda"),
        ({"slug": "x", "name": "X", "default_n": 0}, "default_n"),
        ({"slug": "x", "name": "X", "fallback": "random"}, "fallback"),
        ({"slug": "not a slug", "name": "X"}, "slug"),
        ({"slug": "x"}, "name"),
        ({"slug": "x", "name": "X", "max_per_category": 0}, "max_per_category"),
        ({"slug": "x", "name": "X", "candidate_multiplier": "many"}, "candidate_multiplier"),
    ],
)
def test_bad_scene_input_gets_400_naming_the_field(manage: APIClient, body: dict, field: str) -> None:
    response = manage.post("/api/v1/scenes", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]
    assert field in response.json()["message"]


def test_a_duplicate_scene_slug_is_a_conflict(manage: APIClient) -> None:
    response = manage.post("/api/v1/scenes", {"slug": "home", "name": "Again"}, format="json")
    assert response.status_code == 409
    assert "slug" in response.json()["extra"]["fields"]


def test_patching_a_scene_read_only_or_unknown_field_is_refused(manage: APIClient) -> None:
    response = manage.patch("/api/v1/scenes/home", {"mmr_lambda": -0.1}, format="json")
    assert response.status_code == 400 and "mmr_lambda" in response.json()["extra"]["fields"]
    assert manage.patch("/api/v1/scenes/nope", {"name": "x"}, format="json").status_code == 404


def test_rule_crud(manage: APIClient) -> None:
    created = manage.post("/api/v1/rules", BOOST, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["scenes"] == ["home"] and body["active_now"] is True and body["weight_mode"] == "multiply"
    rule_id = body["id"]
    assert manage.get(f"/api/v1/rules/{rule_id}").json()["condition"] == BOOST["condition"]

    patched = manage.patch(f"/api/v1/rules/{rule_id}", {"enabled": False, "scenes": ["home", "cart"]}, format="json")
    assert patched.status_code == 200
    assert patched.json()["scenes"] == ["cart", "home"] and patched.json()["active_now"] is False
    rule = BusinessRule.objects.get(pk=rule_id)
    assert rule.enabled is False and rule.weight == 1.5  # what the patch left out kept its value

    assert manage.delete(f"/api/v1/rules/{rule_id}").status_code == 204
    assert manage.get(f"/api/v1/rules/{rule_id}").status_code == 404


def test_a_pin_is_created_with_items_by_shop_id(manage: APIClient) -> None:
    ItemFactory(shop_id="GIFT-2")
    ItemFactory(shop_id="GIFT-1")
    body = {"name": "Gifts", "kind": "pin", "scenes": ["cart"], "position": 1, "pinned_items": ["GIFT-2", "GIFT-1"]}
    response = manage.post("/api/v1/rules", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["pinned_items"] == ["GIFT-1", "GIFT-2"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**BOOST, "condition": {"field": "colour", "op": "eq", "value": "red"}}, "condition",
         "unknown field 'colour'"),
        ({**BOOST, "condition": {"field": "price", "op": "between", "value": [50, 10]}}, "condition", "above max"),
        ({**BOOST, "condition": {"field": "category", "op": "in_subtree", "value": "nope"}}, "condition",
         "unknown category"),
        ({**BOOST, "condition": "price < 10"}, "condition", "expected an object"),
        ({**BOOST, "weight": 0.5}, "weight", "above 1"),
        ({**BOOST, "weight": "heavy"}, "weight", "valid number"),
        ({**BOOST, "kind": "teleport"}, "kind", "not a valid choice"),
        ({**BOOST, "scenes": ["home", "nowhere"]}, "scenes", "unknown scene(s): nowhere"),
        ({**BOOST, "scenes": []}, "scenes", "at least one scene"),
        ({**BOOST, "valid_until": "2025-01-01T00:00:00Z"}, "valid_until", "after valid_from"),
        ({**BOOST, "valid_from": "yesterday"}, "valid_from", "format"),
        ({"name": "pin", "kind": "pin", "scenes": ["home"], "pinned_items": ["sku-x"], "position": 1}, "pinned_items",
         "unknown item(s): sku-x"),
        ({"name": "pin", "kind": "pin", "scenes": ["home"], "position": 1}, "pinned_items", "at least one item"),
        ({"name": "pin", "kind": "pin", "scenes": ["home"], "position": 0}, "position", "greater than or equal to 1"),
        ({"name": "x" * 201, "kind": "boost"}, "name", "no more than 200"),
    ],
)  # fmt: skip
def test_bad_rule_input_gets_400_naming_the_field(manage: APIClient, body: dict, field: str, message: str) -> None:
    response = manage.post("/api/v1/rules", body, format="json")
    assert response.status_code == 400, response.json()
    fields = response.json()["extra"]["fields"]
    assert field in fields
    assert message in " ".join(str(m) for m in fields[field])
    assert not BusinessRule.objects.exists()


def test_patching_a_rule_into_an_inert_one_is_refused_and_keeps_it(manage: APIClient) -> None:
    rule = BusinessRuleFactory(scenes=[Scene.objects.get(slug="home")])
    response = manage.patch(f"/api/v1/rules/{rule.pk}", {"condition": {"all": []}}, format="json")
    assert response.status_code == 400 and "condition" in response.json()["extra"]["fields"]
    rule.refresh_from_db()
    assert rule.condition == {"field": "in_stock", "op": "eq", "value": True}


def test_malformed_json_gets_400(manage: APIClient) -> None:
    response = manage.generic("POST", "/api/v1/rules", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()["extra"]["fields"]


def test_a_list_body_gets_400(manage: APIClient) -> None:
    response = manage.post("/api/v1/rules", [BOOST], format="json")
    assert response.status_code == 400


def test_the_rule_list_filters_by_kind_scene_and_enabled(manage: APIClient) -> None:
    home, cart = Scene.objects.get(slug="home"), Scene.objects.get(slug="cart")
    on_home = BusinessRuleFactory(name="home boost", scenes=[home])
    everywhere = BusinessRuleFactory(name="everywhere", all_scenes=True, kind="bury")
    BusinessRuleFactory(name="cart off", scenes=[cart], enabled=False)

    def names(query: str) -> set[str]:
        response = manage.get(f"/api/v1/rules{query}")
        assert response.status_code == 200
        return {rule["name"] for rule in response.json()["results"]}

    assert names("") == {"home boost", "everywhere", "cart off"}
    assert names("?scene=home") == {on_home.name, everywhere.name}
    assert names("?kind=bury") == {"everywhere"}
    assert names("?enabled=false") == {"cart off"}
    assert manage.get("/api/v1/rules?kind=magic").status_code == 400
    assert manage.get("/api/v1/rules?enabled=maybe").status_code == 400


def test_the_rule_list_is_cursor_paginated(manage: APIClient) -> None:
    home = Scene.objects.get(slug="home")
    for _ in range(5):
        BusinessRuleFactory(scenes=[home])
    first = manage.get("/api/v1/rules?limit=3").json()
    assert len(first["results"]) == 3 and first["next"]
    second = manage.get(first["next"]).json()
    assert len(second["results"]) == 2
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}


def test_the_schema_documents_the_endpoints_with_examples() -> None:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json() if response["Content-Type"].startswith("application/json") else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    for path in ("/api/v1/scenes", "/api/v1/scenes/{slug}", "/api/v1/rules", "/api/v1/rules/{rule_id}"):
        assert path in paths
    examples = paths["/api/v1/rules"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert len(examples) >= 4


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("post", "/api/v1/scenes", {"slug": "checkout", "name": "Checkout", "colour": "red"}, "colour"),
        ("post", "/api/v1/scenes", {"slug": "checkout", "name": "Checkout", "max_per_categry": 2}, "max_per_categry"),
        ("patch", "/api/v1/scenes/home", {"name": "Renamed", "colour": "red"}, "colour"),
        ("post", "/api/v1/scenes", {"slug": "checkout", "name": "   "}, "name"),
        ("patch", "/api/v1/scenes/home", {"name": "\t"}, "name"),
    ],
)
def test_an_unknown_field_or_a_blank_name_of_a_scene_is_a_400_naming_it(
    manage: APIClient, method: str, url: str, body: dict[str, Any], field: str
) -> None:
    response = getattr(manage, method)(url, body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) >= {"message", "extra"} and field in response.json()["extra"]["fields"]
    assert not Scene.objects.filter(slug="checkout").exists()
    assert Scene.objects.get(slug="home").name.strip() and Scene.objects.get(slug="home").name != "Renamed"


def test_the_scene_schema_allows_no_unknown_field_and_no_blank_name() -> None:
    components = APIClient().get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    for name in ("SceneCreateInputRequest", "PatchedSceneFieldsRequest", "RuleFieldsRequest"):
        assert components[name]["additionalProperties"] is False, name
        pattern = components[name]["properties"]["name"]["pattern"]
        assert re.search(pattern, " Home page ") and not re.search(pattern, " \t "), name
    assert "slug" not in components["PatchedSceneFieldsRequest"]["properties"]  # read-only once created


def test_unknown_or_read_only_fields_are_named_not_ignored(manage: APIClient) -> None:
    response = manage.patch("/api/v1/scenes/home", {"slug": "house"}, format="json")
    assert response.status_code == 400 and "slug" in response.json()["extra"]["fields"]
    response = manage.post("/api/v1/rules", {**BOOST, "wieght": 2}, format="json")
    assert response.status_code == 400 and "wieght" in response.json()["extra"]["fields"]
    assert Scene.objects.filter(slug="home").exists()
