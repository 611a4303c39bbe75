from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from recadmin.catalog.models import Customer
from recadmin.events.models import Event
from tests.factories import CustomerFactory, EventFactory, ItemFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/events"


def _event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"e-{i}",
        "customer": "C-1",
        "item": "SKU-1",
        "type": "click",
        "occurred_at": (timezone.now() - dt.timedelta(minutes=i)).isoformat(),
        **overrides,
    }


@pytest.fixture
def item() -> Any:
    return ItemFactory(shop_id="SKU-1")


def test_it_answers_401_without_a_key() -> None:
    response = APIClient().post(URL, [_event()], format="json")
    assert response.status_code == 401
    assert response.json()["message"]


def test_it_answers_401_with_a_wrong_key() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer nope")
    assert client.post(URL, [_event()], format="json").status_code == 401


@pytest.mark.parametrize("scope", ["recommend", "manage"])
def test_it_answers_403_without_the_ingest_scope(make_api_client: Callable[..., APIClient], scope: str) -> None:
    response = make_api_client(scope).post(URL, [_event()], format="json")
    assert response.status_code == 403
    assert response.json()["extra"]["required_scope"] == "ingest"


def test_a_batch_is_stored_and_unknown_customers_created(make_api_client: Callable[..., APIClient], item: Any) -> None:
    client = make_api_client("ingest")
    response = client.post(URL, [_event(i, customer=f"new-{i}") for i in range(3)], format="json")
    assert response.status_code == 200
    assert response.json() == {"stored": 3, "duplicates": 0, "errors": []}
    assert Customer.objects.filter(shop_id__startswith="new-").count() == 3
    stored = Event.objects.get(event_id="e-1")
    assert (stored.customer.shop_id, stored.item.shop_id, stored.type) == ("new-1", "SKU-1", "click")


def test_a_single_event_object_is_accepted(api_client: APIClient, item: Any) -> None:
    body = _event(value=4, type="rating", scene="home", context={"device": "mobile"}, recommendation_id="r-1")
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 200
    event = Event.objects.get()
    assert (event.value, event.scene, event.context, event.recommendation_id) == (
        4.0,
        "home",
        {"device": "mobile"},
        "r-1",
    )


def test_an_events_envelope_is_accepted(api_client: APIClient, item: Any) -> None:
    response = api_client.post(URL, {"events": [_event(1), _event(2)]}, format="json")
    assert response.json()["stored"] == 2


def test_resending_a_batch_stores_nothing_twice(api_client: APIClient, item: Any) -> None:
    batch = [_event(i) for i in range(5)]
    api_client.post(URL, batch, format="json")
    response = api_client.post(URL, batch, format="json")
    assert response.status_code == 200
    assert response.json() == {"stored": 0, "duplicates": 5, "errors": []}
    assert Event.objects.count() == 5


def test_events_without_ids_are_deduplicated_by_content(api_client: APIClient, item: Any) -> None:
    body = [{"customer": "C-1", "item": "SKU-1", "type": "view", "occurred_at": "2026-01-01T10:00:00Z"}]
    api_client.post(URL, body, format="json")
    assert api_client.post(URL, body, format="json").json()["duplicates"] == 1
    assert Event.objects.count() == 1


def test_duplicates_within_one_batch_are_counted(api_client: APIClient, item: Any) -> None:
    response = api_client.post(URL, [_event(1), _event(1), _event(2)], format="json")
    assert response.json() == {"stored": 2, "duplicates": 1, "errors": []}


def test_partial_success_stores_valid_rows_and_reports_the_others(api_client: APIClient, item: Any) -> None:
    EventFactory(event_id="e-0", item=item, customer=CustomerFactory(shop_id="C-1"))
    batch = [
        _event(0),  # duplicate
        _event(1, item="SKU-404"),  # unknown item
        _event(2),
        _event(3, type="like"),
        _event(4, occurred_at="1999-01-01T00:00:00Z"),
        _event(5, occurred_at=(timezone.now() + dt.timedelta(days=2)).isoformat()),
        _event(6, customer="c" * 129),
        _event(7, value="high"),
    ]
    response = api_client.post(URL, batch, format="json")
    assert response.status_code == 207
    body = response.json()
    assert (body["stored"], body["duplicates"]) == (1, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "item"),
        (3, "type"),
        (4, "occurred_at"),
        (5, "occurred_at"),
        (6, "customer"),
        (7, "value"),
    ]
    assert "SKU-404" in body["errors"][0]["message"]
    assert Event.objects.filter(event_id="e-2").exists()


def test_a_single_invalid_event_is_a_400_naming_the_field(api_client: APIClient, item: Any) -> None:
    response = api_client.post(URL, _event(type="like"), format="json")
    assert response.status_code == 400
    body = response.json()
    assert "type" in body["extra"]["fields"]
    assert body["errors"][0]["field"] == "type"


def test_an_unknown_field_is_a_400_naming_it_as_the_schema_says(api_client: APIClient, item: Any) -> None:
    response = api_client.post(URL, _event(colour="red"), format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) >= {"message", "extra"} and "colour" in body["extra"]["fields"]
    assert not Event.objects.exists()
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    assert schema["components"]["schemas"]["EventInputRequest"]["additionalProperties"] is False


def test_an_unknown_member_beside_the_events_list_is_a_400_naming_it(api_client: APIClient, item: Any) -> None:
    body = json.dumps({"events": [_event(1)], "sent_at": "now", "junk": list(range(1000))})
    response = api_client.post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()) >= {"message", "extra"} and list(response.json()["extra"]["fields"]) == ["sent_at"]
    assert not Event.objects.exists()


def test_a_batch_with_no_valid_row_is_a_400(api_client: APIClient, item: Any) -> None:
    response = api_client.post(URL, [_event(1, item="nope"), _event(2, type="x")], format="json")
    assert response.status_code == 400
    assert set(response.json()["extra"]["fields"]) == {"[0].item", "[1].type"}


def test_malformed_json_is_a_400(api_client: APIClient) -> None:
    response = api_client.post(URL, '[{"customer": "C-1",', content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()["extra"]["fields"]


@pytest.mark.parametrize("body", ["just a string", 42, []])
def test_a_body_that_is_not_events_is_a_400(api_client: APIClient, body: Any) -> None:
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert "events" in response.json()["extra"]["fields"]


def test_a_batch_over_the_limit_is_a_400(api_client: APIClient, item: Any, settings: Any) -> None:
    settings.EVENTS_MAX_BATCH = 3
    response = api_client.post(URL, [_event(i) for i in range(4)], format="json")
    assert response.status_code == 400
    assert "events" in response.json()["extra"]["fields"]
    assert not Event.objects.exists()


def test_the_default_limit_is_10000(api_client: APIClient) -> None:
    response = api_client.post(URL, [{}] * 10_001, format="json")
    assert response.status_code == 400
    assert "10000" in response.json()["message"]


def test_event_types_are_configurable(api_client: APIClient, item: Any, settings: Any) -> None:
    settings.EVENT_TYPE_WEIGHTS = {"view": 1.0, "wishlist": 3.0}
    assert api_client.post(URL, _event(1, type="wishlist"), format="json").status_code == 200
    assert api_client.post(URL, _event(2, type="click"), format="json").status_code == 400


def test_events_on_a_deactivated_item_are_still_accepted(api_client: APIClient) -> None:
    ItemFactory(shop_id="OLD", is_active=False)
    assert api_client.post(URL, _event(1, item="OLD"), format="json").json()["stored"] == 1


def test_schema_documents_the_events_endpoint() -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/events"]["post"]
    assert "ingest" in operation["description"]
    assert {"200", "207", "400"} <= set(operation["responses"])


def test_the_schema_documents_each_body_form_the_api_takes(api_client: APIClient, item: Any) -> None:
    """One event, a list, or {"events": [...]}: what the schema allows the API stores, and a body
    the schema refuses (a member beside `events`) the API refuses too."""
    from jsonschema import Draft202012Validator

    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    body_schema = schema["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**body_schema, "components": schema["components"]})
    forms = {"one": _event(1), "list": [_event(2)], "wrapped": {"events": [_event(3)]}}
    for form, body in forms.items():
        assert validator.is_valid(body), form
        response = api_client.post(URL, body, format="json")
        assert (response.status_code, response.json()["stored"]) == (200, 1), form
    refused = {"events": [_event(4)], "sent_at": "now"}
    assert not validator.is_valid(refused)
    assert api_client.post(URL, refused, format="json").status_code == 400
    assert Event.objects.count() == 3


def test_context_and_ids_with_special_characters_round_trip(api_client: APIClient) -> None:
    ItemFactory(shop_id="SKU\t1\\ü")
    context = {"page": "/p/crème\\brûlée", "note": "tab\there\nnewline", "n": 1}
    body = _event(1, item="SKU\t1\\ü", customer="kund€", scene="home", context=context, event_id="é\\1")
    assert api_client.post(URL, body, format="json").json()["stored"] == 1
    event = Event.objects.select_related("item", "customer").get()
    assert (event.context, event.item.shop_id, event.customer.shop_id, event.event_id) == (
        context,
        "SKU\t1\\ü",
        "kund€",
        "é\\1",
    )


# --- values the database cannot store: one bad row never sinks a batch ------------------------------


def _raw(rows: list[Any]) -> str:
    return json.dumps(rows)  # ensure_ascii: lone surrogates travel as \ud800 escapes, as clients send them


@pytest.mark.parametrize(
    "bad",
    [
        {"item": "SKU-\x001"},
        {"customer": "C\x00"},
        {"event_id": "e-\ud800"},
        {"scene": "home\x00"},
        {"recommendation_id": "r-\udfff"},
        {"context": {"page": "/p/\x00"}},
        {"context": {"k\x00": 1}},
        {"context": {"deep": [["\ud83d"]]}},
        {"type": "view\x00"},
        {"value": 10**400},
        {"context": {"n": 10**30}},
    ],
)
def test_one_row_with_a_nul_or_a_lone_surrogate_is_reported_and_the_others_stored(
    make_api_client: Callable[..., APIClient], item: Any, bad: dict[str, Any]
) -> None:
    rows = [_event(i) for i in range(100)]
    rows[37] = {**rows[37], **bad}
    response = make_api_client("ingest").post(URL, _raw(rows), content_type="application/json")
    assert response.status_code == 207, response.content
    body = response.json()
    assert body["stored"] == 99
    assert [e["index"] for e in body["errors"]] == [37]
    assert body["errors"][0]["field"] == next(iter(bad))
    assert Event.objects.count() == 99


def test_a_single_event_with_a_nul_is_a_400_naming_the_field(
    make_api_client: Callable[..., APIClient], item: Any
) -> None:
    response = make_api_client("ingest").post(
        URL, _raw([_event(0, item="SKU\x00")])[1:-1], content_type="application/json"
    )
    assert response.status_code == 400
    assert "item" in response.json()["extra"]["fields"]


def test_bad_rows_keep_their_indexes_next_to_other_row_errors(
    make_api_client: Callable[..., APIClient], item: Any
) -> None:
    rows = [_event(0), _event(1, item="SKU-\x00"), _event(2, item="unknown"), _event(3)]
    response = make_api_client("ingest").post(URL, _raw(rows), content_type="application/json")
    assert response.status_code == 207
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "item"), (2, "item")]
    assert response.json()["stored"] == 2
