"""Issue 11: similar items of a new item (no events, unknown to the model) are of its own category and
brand first, and every list's scores read in the list's order."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.rules.services import rule_create
from recadmin.serving.popular import popular_refresh
from tests.factories import CategoryFactory, ItemFactory
from tests.serving.conftest import ingest, sku

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def new_section(shop: dict[str, Any]) -> dict[str, Any]:
    """A new category (nails) with no events, while skin and hair items trend."""
    nails = CategoryFactory(slug="nails", name="Nails", parent=shop["beauty"])
    for i in range(4):
        ItemFactory(shop_id=f"nail-{i}", title=f"Nail {i}", category=nails, brand="kano" if i % 2 else "other")
    ItemFactory(shop_id="nail-new", title="New nail polish", category=nails, brand="kano")
    for c in range(3):
        ingest(f"c-{c}", [sku(i) for i in range(8)])
    popular_refresh()
    return shop


def _scores(body: dict[str, Any]) -> list[float]:
    return [row["score"] for row in body["items"]]


def test_a_new_items_similar_items_are_of_its_category_and_brand_first(api_client: APIClient, new_section: Any) -> None:
    response = api_client.get("/api/v1/items/nail-new/similar", {"n": 6, "scene": "product_detail"})

    assert response.status_code == 200, response.content
    body = response.json()
    ids = [row["item"] for row in body["items"]]
    assert ids[:4] == ["nail-3", "nail-1", "nail-2", "nail-0"]  # kano first, then the rest, newest first
    assert "nail-new" not in ids
    assert _scores(body) == sorted(_scores(body), reverse=True)


def test_a_pinned_item_does_not_break_the_score_order(api_client: APIClient, new_section: Any) -> None:
    rule_create(name="Feature", kind="pin", scenes=["home"], position=1, pinned_items=[sku(39)])

    body = api_client.get("/api/v1/recommendations", {"customer": "c-0", "scene": "home", "n": 6}).json()

    assert body["items"][0]["item"] == sku(39)
    assert _scores(body) == sorted(_scores(body), reverse=True)
    assert body["items"][0]["reasons"][0]["score"] == 0.0  # the reasons keep the item's own score
