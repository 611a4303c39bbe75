"""The warm-up a gunicorn worker runs before its first request (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recadmin.serving import state
from recadmin.serving.warmup import serving_warm_up

pytestmark = [pytest.mark.django_db]


def test_it_loads_the_scenes_and_trending_items_into_the_process(shop: Any, settings: Any) -> None:
    settings.TORCHSERVE_INFERENCE_URL = "http://127.0.0.1:9"  # nothing listens: that step is skipped
    state._bundles.clear()

    timings = serving_warm_up()

    assert {"urls", "database", "state_and_scenes", "trending", "torchserve", "total"} <= set(timings)
    assert {slug for _, slug in state._bundles} >= {"home", "product_detail"}
    from recadmin.catalog.metadata import _local

    assert "sku-000" in _local  # the trending items' metadata, in this process


def test_after_it_a_first_list_reads_no_scene_nor_item_from_the_database(shop: Any, api_client: Any) -> None:
    serving_warm_up()

    with CaptureQueriesContext(connection) as queries:
        response = api_client.get("/api/v1/recommendations", {"scene": "home", "n": 5})

    assert response.status_code == 200
    tables = " ".join(q["sql"] for q in queries.captured_queries)
    assert "rules_scene" not in tables and "catalog_item" not in tables


def test_it_can_be_turned_off(shop: Any, settings: Any) -> None:
    settings.SERVING_WARM_UP = False

    assert serving_warm_up() == {}
