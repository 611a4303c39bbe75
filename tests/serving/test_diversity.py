"""Diversity from the scene's settings: the category cap, and MMR over the model's item embeddings."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.rules.services import scene_update
from recadmin.serving.embeddings import embeddings_export, embeddings_get

pytestmark = [pytest.mark.django_db, pytest.mark.torchserve]

URL = "/api/v1/recommendations"


def test_no_category_exceeds_the_scenes_cap(api_client: APIClient, served_model: Any, shop: Any) -> None:
    scene_update(scene=shop["home"], data={"max_per_category": 2})

    body = api_client.get(URL, {"customer": "customer-000", "scene": "home", "n": 4}).json()

    assert body["source"] == "model"
    counts = Counter(row["category"] for row in body["items"])
    assert len(body["items"]) == 4 and max(counts.values()) <= 2


def test_item_embeddings_are_exported_from_the_archive_for_mmr(served_model: Any) -> None:
    exported = embeddings_export(version_id=served_model.pk)

    vectors = embeddings_get(version_id=served_model.pk, shop_ids=["sku-000", "sku-001", "nope"])

    assert exported == 40
    assert set(vectors) == {"sku-000", "sku-001"}
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-2 for v in vectors.values())  # unit vectors


def test_a_scene_with_mmr_serves_a_model_list_and_exports_vectors_on_first_use(
    api_client: APIClient, served_model: Any, shop: Any
) -> None:
    scene_update(scene=shop["home"], data={"mmr_enabled": True, "mmr_lambda": 0.5, "max_per_category": 3})

    first = api_client.get(URL, {"customer": "customer-001", "scene": "home", "n": 6})
    second = api_client.get(URL, {"customer": "customer-001", "scene": "home", "n": 6})

    assert first.status_code == 200 and second.status_code == 200
    assert second.json()["source"] == "model"
    # The first request found no vectors and had them exported (in-process in tests): they are there now.
    assert embeddings_get(version_id=served_model.pk, shop_ids=["sku-000"])
    assert max(Counter(row["category"] for row in second.json()["items"]).values()) <= 3
