"""Strategies: a scene's chain of candidate sources, the source named in the response and the served
log, complementary items from purchase sequences, and experiments applied on the hot path. No model
version is registered here (the model and similar sources fail fast), so no TorchServe is needed."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from recadmin.events.complements import complements_refresh
from recadmin.experiments.selectors import experiments_forget_local
from recadmin.experiments.services import experiment_create
from recadmin.rules.models import Scene
from recadmin.serving import fallbacks
from recadmin.serving.models import ServedRecommendation
from recadmin.serving.served_log import served_log_drain
from tests.serving.conftest import ingest, sku

pytestmark = [pytest.mark.django_db]

URL = "/api/v1/recommendations"


def _get(api_client: APIClient, params: dict[str, Any]) -> dict[str, Any]:
    response = api_client.get(URL, params)
    assert response.status_code == 200, response.content
    return dict(response.json())


def _ids(body: dict[str, Any]) -> list[str]:
    return [row["item"] for row in body["items"]]


def test_a_scene_without_a_strategy_serves_the_default_of_its_slug(api_client: APIClient, shop: Any) -> None:
    Scene.objects.create(slug="cart", name="Cart")
    Scene.objects.create(slug="checkout", name="Checkout")

    strategies = {
        slug: _get(api_client, {"scene": slug, "customer": "c-1", "item": sku(2)})["strategy"]
        for slug in ("home", "product_detail", "cart", "checkout")
    }

    assert strategies == {
        "home": ["model", "popular"],
        "product_detail": ["similar", "model", "popular"],
        "cart": ["complementary", "model", "popular"],
        "checkout": ["model", "popular"],
    }


def test_recently_viewed_serves_the_customers_own_items_newest_first(api_client: APIClient, shop: Any) -> None:
    Scene.objects.create(slug="continue", name="Continue shopping", strategy=["recently_viewed", "popular"])
    ingest("c-rv", [sku(1), sku(4), sku(7)])

    body = _get(api_client, {"scene": "continue", "customer": "c-rv", "n": 5})

    assert body["source"] == "recently_viewed"
    assert _ids(body)[:3] == [sku(7), sku(4), sku(1)]
    assert [row["reasons"][0]["type"] for row in body["items"][:3]] == ["recently_viewed"] * 3
    # Too few of the customer's own: the chain went on to the trending items to fill the page.
    assert len(body["items"]) == 5
    assert {row["reasons"][0]["type"] for row in body["items"][3:]} == {"popular_fallback"}
    scores = [row["score"] for row in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_when_every_personal_source_fails_the_list_is_a_counted_fallback(api_client: APIClient, shop: Any) -> None:
    fallbacks.fallback_reset()

    body = _get(api_client, {"scene": "home", "customer": "nobody-yet", "n": 5})

    assert body["source"] == "fallback" and body["model_version"] is None
    assert len(body["items"]) == 5
    assert fallbacks.fallback_counts()[fallbacks.REASON_NO_DEFAULT] == 1


def test_complementary_items_come_from_purchase_sequences(api_client: APIClient, shop: Any) -> None:
    start = timezone.now() - dt.timedelta(days=2)
    for i in range(4):  # four customers buy sku-2, then sku-5 within the hour
        ingest(f"buyer-{i}", [sku(2), sku(5)], type_="purchase", start=start + dt.timedelta(hours=i))
    ingest("buyer-x", [sku(2), sku(9)], type_="purchase", start=start)
    complements_refresh()
    Scene.objects.create(slug="cart", name="Cart")

    body = _get(api_client, {"scene": "cart", "customer": "shopper", "cart": sku(2), "n": 4})

    assert body["source"] == "complementary"
    assert _ids(body)[:2] == [sku(5), sku(9)]
    assert sku(2) not in _ids(body)
    assert body["items"][0]["reasons"][0]["type"] == "complementary"
    assert body["items"][0]["reasons"][1] == {"type": "complements", "items": [sku(2)]}


def test_the_served_log_names_the_strategy_and_each_items_source(api_client: APIClient, shop: Any) -> None:
    Scene.objects.create(slug="continue", name="Continue shopping", strategy=["recently_viewed", "popular"])
    ingest("c-log", [sku(3), sku(6)])
    body = _get(api_client, {"scene": "continue", "customer": "c-log", "n": 4})
    served_log_drain()

    row = ServedRecommendation.objects.get(recommendation_id=body["recommendation_id"])
    assert row.strategy == "recently_viewed,popular"
    assert row.source == "recently_viewed"
    assert row.experiment_id is None and row.variant_id is None
    assert [item["source"] for item in row.items] == ["recently_viewed"] * 2 + ["popular_fallback"] * 2


def test_a_later_page_of_a_list_keeps_its_strategy(api_client: APIClient, shop: Any) -> None:
    Scene.objects.create(slug="continue", name="Continue shopping", strategy=["recently_viewed", "popular"])
    ingest("c-page", [sku(3), sku(6)])
    first = _get(api_client, {"scene": "continue", "customer": "c-page", "n": 2})

    second = _get(
        api_client,
        {
            "scene": "continue",
            "customer": "c-page",
            "n": 2,
            "offset": 2,
            "recommendation_id": first["recommendation_id"],
        },
    )

    assert second["recommendation_id"] == first["recommendation_id"]
    assert second["strategy"] == ["recently_viewed", "popular"] and second["source"] == "recently_viewed"
    assert not set(_ids(first)) & set(_ids(second))


def test_bad_query_parameters_get_a_400_naming_them(api_client: APIClient, shop: Any) -> None:
    for params, field in [
        ({"scene": "home", "n": "0"}, "n"),
        ({"scene": "home", "offset": "-1"}, "offset"),
        ({"scene": "home", "cart": ",".join(f"x{i}" for i in range(60))}, "cart"),
    ]:
        response = api_client.get(URL, params)
        assert response.status_code == 400, (params, response.content)
        assert field in response.json()["extra"]["fields"]


# --- experiments on the hot path ------------------------------------------------------------------


@pytest.fixture
def popular_experiment(shop: Any) -> Any:
    experiments_forget_local()
    experiment = experiment_create(
        name="model vs popular",
        scenes=["home"],
        variants=[{"name": "control", "weight": 50}, {"name": "popular", "weight": 50, "strategy": ["popular"]}],
        status="running",
    )
    yield experiment
    experiments_forget_local()


def test_a_strategy_variant_serves_its_sources_and_the_response_names_the_variant(
    api_client: APIClient, popular_experiment: Any
) -> None:
    customers = [f"visitor-{i}" for i in range(60)]
    bodies = {c: _get(api_client, {"scene": "home", "customer": c, "n": 3}) for c in customers}

    variants = Counter(body["variant"]["name"] for body in bodies.values())
    assert set(variants) == {"control", "popular"} and min(variants.values()) >= 15
    for body in bodies.values():
        assert body["experiment"] == {"id": popular_experiment.pk, "name": "model vs popular"}
        if body["variant"]["name"] == "popular":
            assert body["source"] == "popular" and body["strategy"] == ["popular"]
            assert body["items"][0]["reasons"][0]["type"] == "popular"
        else:  # control: the scene as it is (no model version here, so its fallback)
            assert body["strategy"] == ["model", "popular"] and body["source"] == "fallback"
    # Sticky: the same customer gets the same variant again.
    again = {c: _get(api_client, {"scene": "home", "customer": c, "n": 3})["variant"]["name"] for c in customers[:20]}
    assert again == {c: bodies[c]["variant"]["name"] for c in customers[:20]}

    served_log_drain()
    rows = ServedRecommendation.objects.filter(scene="home")
    assert {row.experiment_id for row in rows} == {popular_experiment.pk}
    names = dict(popular_experiment.variants.values_list("id", "name"))
    by_id = {row.recommendation_id: names[row.variant_id] for row in rows}
    assert all(by_id[b["recommendation_id"]] == b["variant"]["name"] for b in bodies.values())
    assert all(row.strategy == ("popular" if names[row.variant_id] == "popular" else "model,popular") for row in rows)


def test_outside_an_experiment_the_response_says_null(api_client: APIClient, popular_experiment: Any) -> None:
    body = _get(api_client, {"scene": "product_detail", "customer": "visitor-1", "item": sku(2)})

    assert body["experiment"] is None and body["variant"] is None


def test_a_scene_settings_variant_applies_its_settings(api_client: APIClient, shop: Any) -> None:
    experiments_forget_local()
    experiment_create(
        name="category cap",
        scenes=["home"],
        variants=[
            {"name": "control", "weight": 1},
            {"name": "capped", "weight": 1, "scene_settings": {"max_per_category": 1}},
        ],
        status="running",
    )
    try:
        bodies = [_get(api_client, {"scene": "home", "customer": f"visitor-{i}", "n": 6}) for i in range(12)]
    finally:
        experiments_forget_local()

    by_variant: dict[str, list[dict[str, Any]]] = {"control": [], "capped": []}
    for body in bodies:
        by_variant[body["variant"]["name"]].append(body)
    assert by_variant["control"] and by_variant["capped"]
    # Two categories under a cap of one: one item per category; the control fills its six.
    assert all(len(b["items"]) == 2 == len({r["category"] for r in b["items"]}) for b in by_variant["capped"])
    assert all(len(b["items"]) == 6 for b in by_variant["control"])
