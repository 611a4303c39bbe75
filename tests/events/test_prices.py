"""A purchase's price: sent per unit, or the catalog price at ingestion time; bad prices name the field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from recadmin.catalog.models import Item
from recadmin.events.models import PRICE_MAX, Event
from recadmin.events.services import events_ingest
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/events"


def _event(i: int, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"p-{i}",
        "customer": "C-1",
        "item": "SKU-1",
        "type": "purchase",
        "occurred_at": (timezone.now() - dt.timedelta(minutes=i)).isoformat(),
        **overrides,
    }


@pytest.fixture
def item() -> Item:
    return ItemFactory(shop_id="SKU-1", price=Decimal("19.90"))


def test_a_sent_price_is_stored_and_a_missing_one_is_the_catalog_price_at_ingestion(
    item: Item, make_api_client: Callable[..., APIClient]
) -> None:
    client = make_api_client("ingest")
    response = client.post(URL, [_event(1, price=7.5, value=2), _event(2), _event(3, type="click")], format="json")
    assert response.status_code == 200, response.content
    Item.objects.filter(pk=item.pk).update(price=Decimal("25.00"))  # a later price change...
    client.post(URL, [_event(4)], format="json")
    prices = dict(Event.objects.values_list("event_id", "price"))
    # ...does not rewrite what was recorded; clicks carry no price.
    assert prices == {"p-1": Decimal("7.50"), "p-2": Decimal("19.90"), "p-3": None, "p-4": Decimal("25.00")}
    assert Event.objects.get(event_id="p-1").value == 2


def test_an_item_without_a_catalog_price_leaves_it_empty(item: Item) -> None:
    ItemFactory(shop_id="SKU-2", price=None)
    result = events_ingest(payload=[_event(1, item="SKU-2"), _event(2, price=0)], record_history=False)
    assert result.stored == 2
    assert dict(Event.objects.values_list("event_id", "price")) == {"p-1": None, "p-2": Decimal("0.00")}


def test_the_conflict_safe_path_stores_prices_too(item: Item) -> None:
    events_ingest(payload=[_event(1, price=3)], record_history=False)
    result = events_ingest(payload=[_event(1, price=3), _event(2)], record_history=False)  # one resent
    assert (result.stored, result.duplicates) == (1, 1)
    assert Event.objects.get(event_id="p-2").price == Decimal("19.90")
    assert connection.vendor in {"postgresql", "sqlite"}


@pytest.mark.parametrize(
    ("price", "message"),
    [
        (-1, "negative"),
        (-0.01, "negative"),
        ("12", "number"),
        ("", "number"),
        (True, "number"),
        (1e12, "At most"),
        (float("inf"), "number"),
    ],
)
def test_a_bad_price_is_a_400_naming_the_field(
    price: Any, message: str, item: Item, make_api_client: Callable[..., APIClient]
) -> None:
    if price == float("inf"):
        result = events_ingest(payload=[_event(1, price=price)], record_history=False)
        assert result.errors[0]["field"] == "price" and message in result.errors[0]["message"]
        return
    response = make_api_client("ingest").post(URL, _event(1, price=price), format="json")
    assert response.status_code == 400, response.content
    assert "price" in response.json()["extra"]["fields"]
    assert message in response.json()["extra"]["fields"]["price"][0]


def test_the_schema_documents_the_price_the_ingestion_takes() -> None:
    """A JSON number from 0 to PRICE_MAX, or null: what event_validate takes (no decimal string, no
    negative), so that what the schema allows is stored and what it refuses is a 400 above."""
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    price = schema["components"]["schemas"]["EventInputRequest"]["properties"]["price"]
    assert set(price["type"]) == {"number", "null"}
    assert (price["minimum"], price["maximum"]) == (0, PRICE_MAX)
    assert "pattern" not in price


def test_the_documented_bounds_of_a_price_are_stored(item: Item, make_api_client: Callable[..., APIClient]) -> None:
    rows = [_event(1, price=0), _event(2, price=PRICE_MAX), _event(3, price=None), _event(4, price=12.5)]
    response = make_api_client("ingest").post(URL, rows, format="json")
    assert response.json() == {"stored": 4, "duplicates": 0, "errors": []}
    prices = dict(Event.objects.values_list("event_id", "price"))
    # A purchase sent without a price (null) records the catalog's.
    assert prices == {"p-1": Decimal(0), "p-2": Decimal(PRICE_MAX), "p-3": Decimal("19.90"), "p-4": Decimal("12.5")}
