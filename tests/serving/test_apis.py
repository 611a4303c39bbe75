"""The recommendations, similar and popular endpoints through a real TorchServe."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.rules.services import rule_create
from recadmin.serving import fallbacks
from recadmin.serving.models import ServedRecommendation
from recadmin.serving.served_log import served_log_drain
from tests.serving.conftest import ingest, sku

pytestmark = [pytest.mark.django_db, pytest.mark.torchserve]

URL = "/api/v1/recommendations"


def _ids(body: dict[str, Any]) -> list[str]:
    return [row["item"] for row in body["items"]]


def test_it_serves_a_model_list_with_metadata_and_reasons(api_client: APIClient, served_model: Any) -> None:
    response = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 5})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["source"] == "model"
    assert body["model_version"] == "recommender:1"
    assert body["scene"] == "home"
    assert len(body["items"]) == 5
    first = body["items"][0]
    assert set(first) >= {"item", "title", "category", "price", "score", "reasons"}
    assert first["title"].startswith("Product ")
    assert first["category"] in {"skin", "hair"}
    assert first["reasons"][0]["type"] == "model"
    assert [row["position"] for row in body["items"]] == [1, 2, 3, 4, 5]


def test_the_customers_history_is_never_recommended(api_client: APIClient, served_model: Any) -> None:
    history = set(_history("customer-001"))

    body = api_client.get(URL, {"customer": "customer-001", "scene": "home", "n": 30}).json()

    assert body["source"] == "model"
    assert history and not history & set(_ids(body))


def _history(customer: str) -> list[str]:
    from recadmin.events.history import history_get

    return [entry.item for entry in history_get(customer)]


def test_an_ingested_click_changes_the_next_list(api_client: APIClient, served_model: Any) -> None:
    before = api_client.get(URL, {"customer": "customer-002", "scene": "home", "n": 10}).json()
    clicked = before["items"][0]["item"]

    response = api_client.post(
        "/api/v1/events",
        [{"customer": "customer-002", "item": clicked, "type": "click", "event_id": "click-1"}],
        format="json",
    )
    assert response.status_code in (200, 201, 207), response.content
    after = api_client.get(URL, {"customer": "customer-002", "scene": "home", "n": 10}).json()

    # The click is in the history at once (no retraining) and the model masks what was seen.
    assert clicked in _history("customer-002")
    assert clicked not in _ids(after)
    assert _ids(after) != _ids(before)


def test_a_boost_rule_moves_an_item_up_and_says_so(api_client: APIClient, served_model: Any) -> None:
    baseline = api_client.get(URL, {"customer": "customer-003", "scene": "home", "n": 20}).json()
    target = baseline["items"][-1]["item"]
    rule = rule_create(
        name="Push one",
        kind="boost",
        scenes=["home"],
        condition={"field": "item", "op": "eq", "value": target},
        weight=1000.0,
        weight_mode="add",
    )

    body = api_client.get(URL, {"customer": "customer-003", "scene": "home", "n": 20}).json()

    assert body["items"][0]["item"] == target
    boosted = [r for r in body["items"][0]["reasons"] if r["type"] == "boosted"]
    assert boosted and boosted[0]["rule"] == rule.pk and boosted[0]["rule_name"] == "Push one"


def test_a_filter_rule_removes_its_category_and_a_pin_holds_its_position(
    api_client: APIClient, served_model: Any
) -> None:
    rule_create(
        name="No hair",
        kind="filter",
        scenes=["home"],
        condition={"field": "category", "op": "in_subtree", "value": "hair"},
    )
    # The least popular skin item, so the model would not put it at 3 on its own.
    pin = rule_create(name="Feature sku-038", kind="pin", scenes=["home"], position=3, pinned_items=[sku(38)])

    body = api_client.get(URL, {"customer": "customer-004", "scene": "home", "n": 8}).json()

    assert body["source"] == "model"
    pinned = body["items"][2]
    assert pinned["item"] == sku(38)
    assert any(r.get("rule") == pin.pk and r["type"] == "pinned" for r in pinned["reasons"])
    assert len(body["items"]) == 8
    assert all(row["category"] == "skin" for row in body["items"])


def test_similar_items_come_from_the_model_with_the_scene_rules(api_client: APIClient, served_model: Any) -> None:
    response = api_client.get(f"/api/v1/items/{sku(5)}/similar", {"n": 5, "scene": "product_detail"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["source"] == "model"
    assert sku(5) not in _ids(body)
    assert len(body["items"]) == 5
    assert {"type": "similar_to", "item": sku(5)} in body["items"][0]["reasons"]


def test_popular_lists_are_per_category_subtree(api_client: APIClient, shop_with_events: Any) -> None:
    skin = api_client.get("/api/v1/popular", {"n": 10, "category": "skin"}).json()
    beauty = api_client.get("/api/v1/popular", {"n": 10, "category": "beauty"}).json()

    assert skin["source"] == "popular"
    assert skin["items"] and all(row["category"] == "skin" for row in skin["items"])
    assert {row["category"] for row in beauty["items"]} <= {"skin", "hair"}
    scores = [row["score"] for row in beauty["items"]]
    assert scores == sorted(scores, reverse=True)
    assert beauty["items"][0]["reasons"][0]["type"] == "popular"


def test_an_unknown_customer_gets_the_cold_start_list(api_client: APIClient, served_model: Any) -> None:
    response = api_client.get(URL, {"customer": "never-seen", "scene": "home", "n": 5})

    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "fallback"
    assert len(body["items"]) == 5
    assert body["items"][0]["reasons"][0]["type"] == "popular_fallback"
    assert fallbacks.fallback_counts()[fallbacks.REASON_COLD_START] == 1


def test_pages_of_one_recommendation_id_are_one_list(api_client: APIClient, served_model: Any) -> None:
    first = api_client.get(URL, {"customer": "customer-005", "scene": "home", "n": 4}).json()
    rid = first["recommendation_id"]
    # A new event in between must not reshuffle the list the customer is paging through.
    ingest("customer-005", [first["items"][0]["item"], sku(30)], type_="click")

    second = api_client.get(
        URL, {"customer": "customer-005", "scene": "home", "n": 4, "offset": 4, "recommendation_id": rid}
    ).json()
    both = api_client.get(
        URL, {"customer": "customer-005", "scene": "home", "n": 8, "offset": 0, "recommendation_id": rid}
    ).json()

    assert second["recommendation_id"] == rid
    assert second["offset"] == 4
    assert _ids(first) + _ids(second) == _ids(both)
    assert [row["position"] for row in second["items"]] == [5, 6, 7, 8]
    assert not set(_ids(first)) & set(_ids(second))


def test_served_pages_are_logged_for_attribution(api_client: APIClient, served_model: Any) -> None:
    body = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 3}).json()
    api_client.get(
        URL,
        {
            "customer": "customer-000",
            "scene": "home",
            "n": 3,
            "offset": 3,
            "recommendation_id": body["recommendation_id"],
        },
    )

    served_log_drain()

    rows = list(ServedRecommendation.objects.filter(recommendation_id=body["recommendation_id"]).order_by("offset"))
    assert [r.offset for r in rows] == [0, 3]
    assert rows[0].scene == "home" and rows[0].source == "model"
    assert rows[0].model_version_id == served_model.pk
    assert rows[0].customer is not None and rows[0].customer.shop_id == "customer-000"
    assert [i["item"] for i in rows[0].items] == _ids(body)
    assert [i["position"] for i in rows[1].items] == [4, 5, 6]
