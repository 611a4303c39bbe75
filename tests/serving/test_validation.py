"""Bad parameters get a 400 naming the parameter; auth and scope are enforced."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

pytestmark = [pytest.mark.django_db]

URL = "/api/v1/recommendations"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"customer": "c", "scene": "nope"}, "scene"),
        ({"customer": "c"}, "scene"),
        ({"customer": "c", "scene": "home", "item": "no-such-item"}, "item"),
        ({"customer": "c", "scene": "home", "n": 0}, "n"),
        ({"customer": "c", "scene": "home", "n": 101}, "n"),
        ({"customer": "c", "scene": "home", "n": "ten"}, "n"),
        ({"customer": "c", "scene": "home", "offset": -1}, "offset"),
        ({"customer": "c", "scene": "home", "offset": "x"}, "offset"),
        ({"customer": "c", "scene": "home", "category": "no-such-category"}, "category"),
        ({"customer": "c" * 200, "scene": "home"}, "customer"),
    ],
)
def test_recommendations_reject_bad_parameters_naming_them(
    api_client: APIClient, shop: Any, params: dict[str, Any], field: str
) -> None:
    response = api_client.get(URL, params)

    assert response.status_code == 400, response.content
    assert field in response.json()["extra"]["fields"]


def test_similar_rejects_an_unknown_item_and_scene(api_client: APIClient, shop: Any) -> None:
    unknown_item = api_client.get("/api/v1/items/no-such-item/similar", {"n": 5})
    unknown_scene = api_client.get("/api/v1/items/sku-001/similar", {"scene": "nope"})
    bad_n = api_client.get("/api/v1/items/sku-001/similar", {"n": 1000})

    assert unknown_item.status_code == 400 and "item" in unknown_item.json()["extra"]["fields"]
    assert unknown_scene.status_code == 400 and "scene" in unknown_scene.json()["extra"]["fields"]
    assert bad_n.status_code == 400 and "n" in bad_n.json()["extra"]["fields"]


def test_popular_rejects_an_unknown_category_and_bad_n(api_client: APIClient, shop: Any) -> None:
    category = api_client.get("/api/v1/popular", {"category": "nope"})
    n = api_client.get("/api/v1/popular", {"n": -3})

    assert category.status_code == 400 and "category" in category.json()["extra"]["fields"]
    assert n.status_code == 400 and "n" in n.json()["extra"]["fields"]


def test_the_recommend_scope_is_required(make_api_client: Any, shop: Any) -> None:
    ingest_only = make_api_client("ingest")

    assert APIClient().get(URL, {"scene": "home"}).status_code == 401
    assert ingest_only.get(URL, {"scene": "home"}).status_code == 403
    assert ingest_only.get("/api/v1/popular").status_code == 403
    assert make_api_client("recommend").get("/api/v1/popular").status_code == 200


def test_n_defaults_to_the_scenes_list_length(api_client: APIClient, shop: Any) -> None:
    from recadmin.rules.services import scene_update

    scene_update(scene=shop["home"], data={"default_n": 7})

    body = api_client.get(URL, {"customer": "new", "scene": "home"}).json()

    assert len(body["items"]) == 7


@pytest.mark.parametrize(
    "query",
    [
        "customer=a&scene=home&n=10",
        "customer=%20a%20&scene=home&n=",
        "scene=home&offset=&n=007",
        "scene=home&offset=3&recommendation_id=abc",
        "scene=%20%20&customer=",
        "cart=a,b,,c&scene=home",
        "customer=a&customer=b&scene=home",
        "item=%E2%80%83abc%E2%80%83&scene=home&unknown=1",
        "n=5.0",
        "n=+5",
        "n=%205",
        "n=0",
        "n=12345678901",
        "offset=99999",
        "customer=" + "x" * 300,
        "cart=" + ",".join(["x"] * 60),
    ],
)
def test_the_plain_query_path_agrees_with_the_serializer(query: str) -> None:
    from django.http import QueryDict

    from recadmin.serving.apis import ListQueryInput, _plain_query

    params = QueryDict(query)
    plain = _plain_query(params)
    serializer = ListQueryInput(data=params)
    valid = serializer.is_valid()
    # The plain path answers only what the serializer accepts, with the same values; the rest is the
    # serializer's to judge (and to name in a 400).
    if plain is not None:
        assert valid and plain == dict(serializer.validated_data)
    if query.startswith(("customer=a&scene=home", "scene=home&")):
        assert plain is not None  # the shop's everyday query takes the plain path
