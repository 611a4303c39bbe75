"""Never down: TorchServe stopped, slow, or no default version gives 200 fallback lists, counted."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.modelops.models import ModelVersion, ModelVersionStatus
from recadmin.modelops.selectors import default_cache_key
from recadmin.serving import fallbacks
from tests.fixtures.torchserve import TorchServeInstance

pytestmark = [pytest.mark.django_db]

URL = "/api/v1/recommendations"


@pytest.mark.torchserve
def test_stopping_torchserve_mid_run_still_serves_fallback_lists(
    api_client: APIClient, served_model: Any, torchserve_session: TorchServeInstance
) -> None:
    before = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 5})
    assert before.status_code == 200 and before.json()["source"] == "model"

    torchserve_session.stop()
    responses = [
        api_client.get(URL, {"customer": f"customer-00{i}", "scene": "home", "n": 5, "item": "sku-004"})
        for i in range(4)
    ]
    similar = api_client.get("/api/v1/items/sku-004/similar", {"n": 5})

    for response in [*responses, similar]:
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["source"] == "fallback"
        assert body["model_version"] is None
        assert len(body["items"]) == 5
        assert body["items"][0]["reasons"][0]["type"] == "popular_fallback"
    # product_detail-style fallback: trending in the current item's category first.
    counts = fallbacks.fallback_counts()
    assert counts[fallbacks.REASON_TORCHSERVE_DOWN] == 5
    assert fallbacks.fallback_summary()["failures"] == 5


@pytest.mark.torchserve
def test_a_slow_model_falls_back_within_the_time_budget(
    api_client: APIClient, served_model: Any, settings: Any
) -> None:
    settings.SERVING_TIME_BUDGET_MS = 0  # nothing answers in 0 ms: every call is "too slow"

    response = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 5})

    assert response.status_code == 200
    assert response.json()["source"] == "fallback"
    assert fallbacks.fallback_counts()[fallbacks.REASON_TORCHSERVE_SLOW] == 1


def test_no_default_version_falls_back(api_client: APIClient, shop_with_events: Any) -> None:
    response = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 5})

    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "fallback" and len(body["items"]) == 5
    assert fallbacks.fallback_counts()[fallbacks.REASON_NO_DEFAULT] == 1


def test_a_fallback_list_is_counted_once_with_its_later_pages_not_counted(
    api_client: APIClient, shop_with_events: Any
) -> None:
    # Counted with the served-log write (one Redis round trip) or, without Redis, by the cache.
    first = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 2}).json()
    second = api_client.get(
        URL,
        {
            "customer": "customer-000",
            "scene": "home",
            "n": 2,
            "offset": 2,
            "recommendation_id": first["recommendation_id"],
        },
    ).json()

    assert first["source"] == second["source"] == "fallback"
    assert second["recommendation_id"] == first["recommendation_id"]
    assert fallbacks.fallback_counts()[fallbacks.REASON_NO_DEFAULT] == 1
    assert fallbacks.fallback_summary()["since"] is not None


def test_an_unreachable_torchserve_falls_back_without_a_5xx(
    api_client: APIClient, shop_with_events: Any, settings: Any
) -> None:
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
    ModelVersion.objects.create(name="recommender", version=7, kind="pop", status=ModelVersionStatus.DEFAULT)
    from django.core.cache import cache

    cache.delete(default_cache_key("recommender"))

    response = api_client.get(URL, {"customer": "customer-001", "scene": "home", "n": 3})

    assert response.status_code == 200
    assert response.json()["source"] == "fallback"
    assert fallbacks.fallback_counts()[fallbacks.REASON_TORCHSERVE_DOWN] == 1


def test_a_disabled_scene_serves_its_fallback(api_client: APIClient, shop_with_events: Any) -> None:
    home = shop_with_events["home"]
    from recadmin.rules.services import scene_update

    scene_update(scene=home, data={"enabled": False})

    body = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 3}).json()

    assert body["source"] == "fallback"
    assert fallbacks.fallback_counts()[fallbacks.REASON_SCENE_DISABLED] == 1


@pytest.mark.redis
def test_with_redis_unreachable_a_valid_request_still_gets_a_list(
    api_client: APIClient, shop_with_events: Any, settings: Any
) -> None:
    from recadmin.modelops.torchserve import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    caches = {"default": {**settings.CACHES["default"], "LOCATION": dead}}
    settings.CACHES = caches
    settings.REDIS_URL = dead

    response = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 4})

    assert response.status_code == 200, response.content
    assert len(response.json()["items"]) == 4


def test_a_ranking_bug_on_the_fallback_path_still_gets_a_list_not_a_500(
    api_client: APIClient, shop_with_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recadmin.rules import engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the rules engine")

    monkeypatch.setattr(engine, "apply_rules", broken)

    response = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 4})
    popular = api_client.get("/api/v1/popular", {"n": 4})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["source"] == "fallback" and len(body["items"]) == 4
    assert body["items"][0]["reasons"] == [
        {"type": "popular_fallback", "score": body["items"][0]["score"]},
        {"type": "rules_skipped"},
    ]
    assert [row["position"] for row in body["items"]] == [1, 2, 3, 4]
    assert popular.status_code == 200 and len(popular.json()["items"]) == 4
