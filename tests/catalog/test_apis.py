from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from recadmin.catalog.models import Customer, Item
from recadmin.events.models import Event
from tests.factories import CategoryFactory, CustomerFactory, EventFactory, ItemFactory

pytestmark = pytest.mark.django_db


# --- auth and scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/items", "/api/v1/customers", "/api/v1/items/x", "/api/v1/customers/x"])
def test_it_answers_401_without_a_key(url: str) -> None:
    response = APIClient().get(url)
    assert response.status_code == 401
    assert "message" in response.json()


def test_any_valid_key_may_read_items(make_api_client: Callable[..., APIClient]) -> None:
    ItemFactory(shop_id="SKU-1")
    response = make_api_client("recommend").get("/api/v1/items")
    assert response.status_code == 200
    assert [row["shop_id"] for row in response.json()["results"]] == ["SKU-1"]


def test_a_recommend_key_may_not_write_items(make_api_client: Callable[..., APIClient]) -> None:
    response = make_api_client("recommend").post("/api/v1/items", {"shop_id": "SKU-1"}, format="json")
    assert response.status_code == 403
    assert response.json()["extra"]["required_scopes"] == ["ingest", "manage"]


def test_a_recommend_key_may_not_read_customers(make_api_client: Callable[..., APIClient]) -> None:
    assert make_api_client("recommend").get("/api/v1/customers").status_code == 403


@pytest.mark.parametrize("scope", ["ingest", "manage"])
def test_ingest_or_manage_keys_may_write(make_api_client: Callable[..., APIClient], scope: str) -> None:
    response = make_api_client(scope).post("/api/v1/items", {"shop_id": f"SKU-{scope}", "title": "T"}, format="json")
    assert response.status_code == 201


# --- items -----------------------------------------------------------------------------------------


def test_item_create_returns_the_item(api_client: APIClient) -> None:
    CategoryFactory(slug="hair")
    body = {"shop_id": "SKU-9", "title": "Oil", "category": "hair", "price": "12.90", "stock_quantity": 3}
    response = api_client.post("/api/v1/items", body, format="json")
    assert response.status_code == 201
    data = response.json()
    assert (data["category"], data["price"], data["in_stock"]) == ("hair", "12.90", True)


def test_item_create_conflicts_on_an_existing_shop_id(api_client: APIClient) -> None:
    ItemFactory(shop_id="SKU-9")
    response = api_client.post("/api/v1/items", {"shop_id": "SKU-9", "title": "Oil"}, format="json")
    assert response.status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"shop_id": "A", "price": "-1"}, "price"),
        ({"shop_id": "A", "stock_quantity": -2}, "stock_quantity"),
        ({"shop_id": "A", "stock_quantity": "many"}, "stock_quantity"),
        ({"shop_id": "A", "in_stock": "perhaps"}, "in_stock"),
        ({"shop_id": "A", "title": "x" * 501}, "title"),
        ({"shop_id": "x" * 129}, "shop_id"),
        ({"shop_id": "A", "attributes": [1, 2]}, "attributes"),
        ({"title": "no id"}, "shop_id"),
        ({"shop_id": "A", "title": "T", "category": "unknown"}, "category"),
        ({"shop_id": "A"}, "title"),
        ({"shop_id": "A", "title": "  "}, "title"),
    ],
)
def test_item_create_rejects_bad_input_naming_the_field(api_client: APIClient, body: dict, field: str) -> None:
    response = api_client.post("/api/v1/items", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]
    assert not Item.objects.exists()


def test_malformed_json_gets_a_400(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/items", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()["extra"]["fields"]


def test_item_put_creates_then_updates(api_client: APIClient) -> None:
    first = api_client.put("/api/v1/items/SKU-5", {"title": "One", "brand": "acme"}, format="json")
    second = api_client.put("/api/v1/items/SKU-5", {"title": "Two"}, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    item = Item.objects.get(shop_id="SKU-5")
    assert (item.title, item.brand) == ("Two", "acme")


def test_item_put_accepts_a_shop_id_with_slashes(api_client: APIClient) -> None:
    assert api_client.put("/api/v1/items/shoes/red/42", {"title": "Red"}, format="json").status_code == 201
    assert api_client.get("/api/v1/items/shoes/red/42").json()["title"] == "Red"


def test_item_patch_changes_only_given_fields(api_client: APIClient) -> None:
    ItemFactory(shop_id="SKU-1", title="Keep", price=Decimal("10.00"))
    response = api_client.patch("/api/v1/items/SKU-1", {"price": "8.00"}, format="json")
    assert response.status_code == 200
    item = Item.objects.get(shop_id="SKU-1")
    assert (item.title, item.price) == ("Keep", Decimal("8.00"))


def test_item_patch_of_a_missing_item_is_404(api_client: APIClient) -> None:
    assert api_client.patch("/api/v1/items/none", {"price": "1"}, format="json").status_code == 404


def test_item_delete_deactivates_and_keeps_events(api_client: APIClient) -> None:
    event = EventFactory(item=ItemFactory(shop_id="SKU-1"))
    response = api_client.delete("/api/v1/items/SKU-1")
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert Item.objects.get(shop_id="SKU-1").is_active is False
    assert Event.objects.filter(pk=event.pk).exists()


def test_items_bulk_upsert_reports_rows_and_stores_the_valid_ones(api_client: APIClient) -> None:
    ItemFactory(shop_id="A")
    rows = [
        {"shop_id": "A", "title": "renamed"},
        {"shop_id": "B", "title": "B"},
        {"shop_id": "C", "price": "-3"},
        "junk",
    ]
    response = api_client.put("/api/v1/items", rows, format="json")
    assert response.status_code == 207
    body = response.json()
    assert (body["created"], body["updated"]) == (1, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(2, "price"), (3, "non_field_errors")]
    assert set(Item.objects.values_list("shop_id", flat=True)) == {"A", "B"}


def test_items_bulk_upsert_all_valid_is_200(api_client: APIClient) -> None:
    rows = [{"shop_id": "A", "title": "A"}, {"shop_id": "B", "title": "B"}]
    response = api_client.put("/api/v1/items", {"items": rows}, format="json")
    assert response.status_code == 200
    assert response.json() == {"created": 2, "updated": 0, "errors": []}


def test_items_bulk_upsert_needs_a_title_for_each_new_item_row(api_client: APIClient) -> None:
    ItemFactory(shop_id="OLD", title="Kept")
    rows = [
        {"shop_id": "NEW-1", "title": "Fine"},
        {"shop_id": "NEW-2"},  # new, no title: rejected
        {"shop_id": "OLD", "price": "4.00"},  # existing: a partial update needs no title
        {"shop_id": "NEW-3", "title": "   "},  # blank is no title
        {"shop_id": "NEW-4", "price": "1.00"},  # a later row of the same id brings the title
        {"shop_id": "NEW-4", "title": "Late title"},
    ]
    response = api_client.put("/api/v1/items", rows, format="json")
    assert response.status_code == 207
    body = response.json()
    assert (body["created"], body["updated"]) == (2, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "title"), (3, "title")]
    assert set(Item.objects.values_list("shop_id", flat=True)) == {"OLD", "NEW-1", "NEW-4"}
    assert Item.objects.get(shop_id="OLD").title == "Kept"


def test_items_bulk_upsert_of_empty_rows_creates_nothing(api_client: APIClient) -> None:
    response = api_client.put("/api/v1/items", [{"shop_id": "X"}, {"shop_id": "Y", "title": None}], format="json")
    assert response.status_code == 207
    assert response.json()["created"] == 0
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "title"), (1, "title")]
    assert not Item.objects.exists()


def test_items_bulk_upsert_over_the_limit_is_400(api_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recadmin.catalog.apis.BULK_MAX_ROWS", 2)
    response = api_client.put("/api/v1/items", [{"shop_id": str(i)} for i in range(3)], format="json")
    assert response.status_code == 400
    assert "items" in response.json()["extra"]["fields"]


def test_items_list_filters_by_category_subtree(api_client: APIClient) -> None:
    root = CategoryFactory(slug="beauty")
    hair = CategoryFactory(slug="hair", parent=root)
    ItemFactory(shop_id="in-root", category=root)
    ItemFactory(shop_id="in-child", category=hair)
    ItemFactory(shop_id="elsewhere", category=CategoryFactory(slug="books"))
    response = api_client.get("/api/v1/items", {"category": "beauty"})
    assert {r["shop_id"] for r in response.json()["results"]} == {"in-root", "in-child"}
    assert api_client.get("/api/v1/items", {"category": "nope"}).json()["results"] == []


def test_items_list_filters_by_brand_stock_and_update_time(api_client: APIClient) -> None:
    ItemFactory(shop_id="a", brand="acme", in_stock=True)
    ItemFactory(shop_id="b", brand="acme", in_stock=False)
    old = ItemFactory(shop_id="c", brand="globex")
    Item.objects.filter(pk=old.pk).update(updated_at=timezone.now() - dt.timedelta(days=3))
    assert [
        r["shop_id"] for r in api_client.get("/api/v1/items", {"brand": "acme", "in_stock": "true"}).json()["results"]
    ] == ["a"]
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert {r["shop_id"] for r in api_client.get("/api/v1/items", {"updated_since": since}).json()["results"]} == {
        "a",
        "b",
    }


def test_items_list_rejects_a_bad_filter_value(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/items", {"updated_since": "yesterday"})
    assert response.status_code == 400
    assert "updated_since" in response.json()["extra"]["fields"]


def test_items_list_pages_with_a_cursor(api_client: APIClient) -> None:
    for i in range(5):
        ItemFactory(shop_id=f"p{i}")
    seen: list[str] = []
    url: str | None = "/api/v1/items?limit=2"
    while url:
        body = api_client.get(url).json()
        seen += [r["shop_id"] for r in body["results"]]
        url = body["next"]
    assert sorted(seen) == [f"p{i}" for i in range(5)]
    assert len(seen) == 5


# --- customers -------------------------------------------------------------------------------------


def test_customer_create_and_conflict(api_client: APIClient) -> None:
    body = {"shop_id": "C-1", "attributes": {"segment": "new"}}
    assert api_client.post("/api/v1/customers", body, format="json").status_code == 201
    assert api_client.post("/api/v1/customers", body, format="json").status_code == 409


def test_customer_put_patch_get_delete(api_client: APIClient) -> None:
    assert api_client.put("/api/v1/customers/C-2", {"attributes": {"a": 1}}, format="json").status_code == 201
    assert api_client.patch("/api/v1/customers/C-2", {"attributes": {"b": 2}}, format="json").status_code == 200
    assert api_client.get("/api/v1/customers/C-2").json()["attributes"] == {"a": 1, "b": 2}
    assert api_client.delete("/api/v1/customers/C-2").status_code == 204
    assert not Customer.objects.filter(shop_id="C-2").exists()


def test_customer_attributes_must_be_an_object(api_client: APIClient) -> None:
    response = api_client.put("/api/v1/customers/C-3", {"attributes": "vip"}, format="json")
    assert response.status_code == 400
    assert "attributes" in response.json()["extra"]["fields"]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/api/v1/customers", {"shop_id": "C-4", "attributes": {"seg\x00ment": "vip"}}),
        ("put", "/api/v1/customers/C-4", {"attributes": {"seg\x00ment": "vip"}}),
        ("patch", "/api/v1/customers/C-4", {"attributes": {"ok": 1, "nested": {"seg\x00ment": "vip"}}}),
    ],
)
def test_a_nul_in_a_customer_attribute_key_is_a_400_naming_the_field(
    api_client: APIClient, method: str, url: str, body: dict[str, Any]
) -> None:
    if method == "patch":
        CustomerFactory(shop_id="C-4", attributes={"segment": "new"})
    response = getattr(api_client, method)(url, body, format="json")
    assert response.status_code == 400, response.content
    answer = response.json()
    assert "NUL" in answer["message"]
    [field] = answer["extra"]["fields"]
    assert field.startswith("attributes.") and "\x00" in field
    stored = list(Customer.objects.values_list("attributes", flat=True))
    assert stored == ([{"segment": "new"}] if method == "patch" else [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"shop_id": "C-5", "attributes": {"seg\\ud800ment": "vip"}}', "attributes.seg\\ud800ment"),
        ('{"shop_id": "C-5", "\\udfff": 1}', "\\udfff"),
    ],
)
def test_a_lone_surrogate_in_a_customer_key_is_a_400_naming_it_escaped(
    api_client: APIClient, body: str, field: str
) -> None:
    """The name could not be encoded in the answer as sent: it is shown escaped (never a 500)."""
    response = api_client.post("/api/v1/customers", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()["extra"]["fields"]) == [field]
    assert "surrogate" in response.json()["message"]
    assert not Customer.objects.exists()


def test_the_customer_schema_refuses_nul_in_attribute_keys_and_values() -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    for name in ("CustomerInputRequest", "CustomerFieldsRequest", "PatchedCustomerFieldsRequest"):
        attributes = components[name]["properties"]["attributes"]
        assert re.search(attributes["propertyNames"]["pattern"], "segment")
        assert not re.search(attributes["propertyNames"]["pattern"], "seg\x00ment")
        assert attributes["additionalProperties"] == {"$ref": "#/components/schemas/StorableJson"}
    storable = {branch["type"]: branch for branch in components["StorableJson"]["anyOf"]}
    assert not re.search(storable["string"]["pattern"], "v\x00ip")
    assert storable["object"]["propertyNames"] == attributes["propertyNames"]


def test_customers_bulk_upsert_and_list(api_client: APIClient) -> None:
    CustomerFactory(shop_id="old")
    response = api_client.put(
        "/api/v1/customers", [{"shop_id": "old"}, {"shop_id": "new"}, {"shop_id": ""}], format="json"
    )
    assert response.status_code == 207
    assert (response.json()["created"], response.json()["errors"][0]["index"]) == (1, 2)
    listed = api_client.get("/api/v1/customers").json()["results"]
    assert {r["shop_id"] for r in listed} == {"old", "new"}


def test_schema_documents_the_catalog_endpoints() -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    assert "/api/v1/items" in schema["paths"]
    assert "/api/v1/customers/{shop_id}" in schema["paths"]
    assert "ingest" in schema["paths"]["/api/v1/items"]["put"]["description"]


# --- bounds ----------------------------------------------------------------------------------------


def test_a_stock_quantity_past_the_databases_integer_is_a_400(api_client: APIClient) -> None:
    ItemFactory(shop_id="SKU-1042")
    response = api_client.put("/api/v1/items/SKU-1042", {"stock_quantity": 421863077458081231142912}, format="json")
    assert response.status_code == 400
    assert "stock_quantity" in response.json()["extra"]["fields"]
    assert api_client.put("/api/v1/items/SKU-1042", {"stock_quantity": 2**31 - 1}, format="json").status_code == 200


def test_an_upsert_creating_an_item_needs_a_title(make_api_client: Callable[..., APIClient]) -> None:
    client = make_api_client("ingest")
    response = client.put("/api/v1/items/SKU-NEW", {}, format="json")
    assert response.status_code == 400
    assert "title" in response.json()["extra"]["fields"]
    assert not Item.objects.filter(shop_id="SKU-NEW").exists()
    assert client.put("/api/v1/items/SKU-NEW", {"title": "Oil"}, format="json").status_code == 201
    assert client.put("/api/v1/items/SKU-NEW", {}, format="json").status_code == 200  # updating: nothing to change


@pytest.mark.parametrize(
    "bad", [{"title": "a\x00"}, {"attributes": {"k": "\x00"}}, {"brand": "\ud800"}, {"attributes": {"n": 10**25}}]
)
def test_text_the_database_cannot_store_is_a_400_for_one_item(api_client: APIClient, bad: dict) -> None:
    import json

    body = json.dumps({"shop_id": "SKU-9", "title": "T", **bad})
    response = api_client.post("/api/v1/items", body, content_type="application/json")
    assert response.status_code == 400
    assert next(iter(bad)) in response.json()["extra"]["fields"]


def test_a_bad_row_in_a_bulk_upsert_is_reported_and_the_others_stored(api_client: APIClient) -> None:
    import json

    rows = [{"shop_id": f"SKU-{i}", "title": f"T{i}"} for i in range(10)]
    rows[4]["attributes"] = {"x": "\x00"}
    rows[6]["shop_id"] = "SKU-\ud800"
    response = api_client.put("/api/v1/items", json.dumps(rows), content_type="application/json")
    assert response.status_code == 207
    assert [e["index"] for e in response.json()["errors"]] == [4, 6]
    assert Item.objects.count() == 8


def test_a_customer_row_holding_a_nul_is_reported_and_the_others_stored(api_client: APIClient) -> None:
    import json

    rows = [{"shop_id": f"C-{i}", "attributes": {"segment": "new"}} for i in range(5)]
    rows[3]["attributes"] = {"segment": "v\x00ip"}
    response = api_client.put("/api/v1/customers", json.dumps(rows), content_type="application/json")
    assert response.status_code == 207, response.content
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(3, "attributes")]
    assert sorted(Customer.objects.values_list("shop_id", flat=True)) == ["C-0", "C-1", "C-2", "C-4"]
