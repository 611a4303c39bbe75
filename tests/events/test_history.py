from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from recadmin.catalog.models import Customer
from recadmin.events.history import (
    HistoryEvent,
    history_clear,
    history_get,
    history_get_many,
    history_rebuild,
    history_record,
)
from recadmin.events.models import Event
from tests.factories import CustomerFactory, EventFactory, ItemFactory

# A read the cache cannot answer alone goes to the database, so every test may touch it.
pytestmark = pytest.mark.django_db


def _ev(customer: str, item: str, ts: float, type_: str = "view") -> HistoryEvent:
    return HistoryEvent(customer=customer, item=item, type=type_, ts=ts)


def test_history_is_newest_first_with_the_type_weight() -> None:
    history_record([_ev("h1", "a", 100.0, "view"), _ev("h1", "b", 300.0, "purchase"), _ev("h1", "c", 200.0, "click")])
    entries = history_get("h1")
    assert [e.item for e in entries] == ["b", "c", "a"]
    assert [e.weight for e in entries] == [8.0, 2.0, 1.0]
    assert entries[0].ts == 300.0


def test_history_keeps_only_the_newest_n(settings: Any) -> None:
    settings.HISTORY_LENGTH = 3
    history_record([_ev("h2", f"i{n}", float(n)) for n in range(10)])
    history_record([_ev("h2", "late-but-old", 0.5)])
    assert [e.item for e in history_get("h2")] == ["i9", "i8", "i7"]


def test_history_limit_and_unknown_customers() -> None:
    history_record([_ev("h3", f"i{n}", float(n)) for n in range(5)])
    assert len(history_get("h3", 2)) == 2
    assert history_get("nobody") == []


def test_recording_the_same_event_twice_adds_it_once() -> None:
    history_record([_ev("h4", "a", 1.0)])
    history_record([_ev("h4", "a", 1.0)])
    assert len(history_get("h4")) == 1


def test_item_ids_with_separators_survive() -> None:
    history_record([_ev("h5", "shoes|red|42", 1.0)])
    assert history_get("h5")[0].item == "shoes|red|42"


def test_the_device_is_kept_with_each_entry_even_with_separators_in_it_or_the_item() -> None:
    history_record(
        [
            HistoryEvent(customer="h5d", item="shoes|red|42", type="view", ts=1.0, device="web|v2 100%"),
            HistoryEvent(customer="h5d", item="b", type="click", ts=2.0, device="phone"),
            HistoryEvent(customer="h5d", item="c", type="view", ts=3.0),
        ]
    )
    entries = history_get("h5d")
    assert [(e.item, e.device) for e in entries] == [("c", ""), ("b", "phone"), ("shoes|red|42", "web|v2 100%")]


def test_a_history_loaded_from_the_database_carries_each_events_device() -> None:
    customer = CustomerFactory(shop_id="h-dev")
    now = timezone.now()
    contexts = [{"device": "tablet"}, {"device": 7}, {}, {"device": "phone"}]
    for i, context in enumerate(contexts):
        EventFactory(customer=customer, occurred_at=now - dt.timedelta(minutes=10 - i), context=context)

    entries = history_get("h-dev")  # no entry: loaded from the database, written back

    # Newest first; only a string names a device (customer_last_device's rule).
    assert [e.device for e in entries] == ["phone", "", "", "tablet"]
    assert [e.device for e in history_get("h-dev")] == ["phone", "", "", "tablet"]  # from the cache now


def test_history_get_many_reads_many_customers() -> None:
    history_record([_ev("m1", "a", 1.0), _ev("m2", "b", 2.0)])
    result = history_get_many(["m1", "m2", "m3"])
    assert [e.item for e in result["m1"]] == ["a"]
    assert [e.item for e in result["m2"]] == ["b"]
    assert result["m3"] == []


def test_history_clear_forgets_a_customer() -> None:
    history_record([_ev("h6", "a", 1.0)])
    history_clear(["h6"])
    assert history_get("h6") == []


@pytest.mark.django_db
def test_history_rebuild_restores_the_latest_events_from_the_database(settings: Any) -> None:
    settings.HISTORY_LENGTH = 2
    customer = CustomerFactory(shop_id="rb")
    now = timezone.now()
    for minutes, sku in [(30, "old"), (20, "mid"), (10, "new")]:
        EventFactory(customer=customer, item=ItemFactory(shop_id=sku), occurred_at=now - dt.timedelta(minutes=minutes))
    history_clear(["rb"])
    assert history_rebuild([Customer.objects.get(shop_id="rb").pk]) == 1
    assert [e.item for e in history_get("rb")] == ["new", "mid"]


@pytest.mark.django_db
def test_an_ingested_click_shows_up_in_history_at_once(api_client: APIClient) -> None:
    ItemFactory(shop_id="SKU-H")
    body = {"customer": "C-H", "item": "SKU-H", "type": "click", "event_id": "hist-1"}
    assert api_client.post("/api/v1/events", body, format="json").status_code == 200
    entries = history_get("C-H")
    assert [(e.item, e.type, e.weight) for e in entries] == [("SKU-H", "click", 2.0)]


@pytest.mark.redis
@pytest.mark.django_db
def test_an_ingested_click_is_in_redis_at_once(api_client: APIClient) -> None:
    from django_redis import get_redis_connection

    from recadmin.events.history import history_key

    ItemFactory(shop_id="SKU-R")
    body = {"customer": "C-R", "item": "SKU-R", "type": "click", "event_id": "hist-r"}
    assert api_client.post("/api/v1/events", body, format="json").status_code == 200
    # The click, and the marker saying the customer's older events were never loaded.
    members = get_redis_connection("default").zrevrange(history_key("C-R"), 0, -1)
    assert len(members) == 2 and members[0].endswith(b"|click|2.0||SKU-R") and members[1] == b"~partial"
    assert [(e.item, e.type) for e in history_get("C-R")] == [("SKU-R", "click")]


@pytest.mark.redis
def test_a_batch_for_many_customers_is_recorded_in_redis() -> None:
    history_record([_ev(f"many-{n % 300}", f"i{n}", float(n)) for n in range(1500)])
    result = history_get_many([f"many-{n}" for n in range(300)])
    assert all(len(entries) == 5 for entries in result.values())
    assert result["many-0"][0].item == "i1200"


# --- a cold cache: the database answers once --------------------------------------------------------


def _event_queries(queries: CaptureQueriesContext) -> int:
    return sum(Event._meta.db_table in q["sql"] for q in queries.captured_queries)


def _customer_with_events(shop_id: str, skus: list[str]) -> None:
    customer = CustomerFactory(shop_id=shop_id)
    now = timezone.now()
    for minutes, sku in zip(range(len(skus), 0, -1), skus, strict=True):
        item = ItemFactory(shop_id=sku)
        EventFactory(customer=customer, item=item, type="click", occurred_at=now - dt.timedelta(minutes=minutes))


def test_a_customer_whose_entry_is_gone_is_read_from_the_database_and_cached_again() -> None:
    _customer_with_events("cold-1", ["a", "b", "c"])
    history_clear(["cold-1"])

    with CaptureQueriesContext(connection) as first:
        entries = history_get("cold-1")
    with CaptureQueriesContext(connection) as second:
        again = history_get("cold-1")

    assert [(e.item, e.type, e.weight) for e in entries] == [
        ("c", "click", 2.0),
        ("b", "click", 2.0),
        ("a", "click", 2.0),
    ]
    assert again == entries
    assert len(first) == 1 and len(second) == 0


def test_the_database_read_keeps_only_the_newest_n(settings: Any) -> None:
    settings.HISTORY_LENGTH = 2
    _customer_with_events("cold-2", ["a", "b", "c"])
    history_clear(["cold-2"])

    assert [e.item for e in history_get("cold-2")] == ["c", "b"]


def test_an_unknown_customer_queries_the_database_once() -> None:
    with CaptureQueriesContext(connection) as queries:
        results = [history_get("ghost") for _ in range(3)]

    assert results == [[], [], []]
    assert len(queries) == 1


def test_an_event_after_the_empty_marker_counts_at_once_without_the_database() -> None:
    assert history_get("newbie") == []  # the database says: no events (marker cached)
    history_record([_ev("newbie", "first", 10.0, "click")])

    with CaptureQueriesContext(connection) as queries:
        entries = history_get("newbie")

    assert [e.item for e in entries] == ["first"]
    assert len(queries) == 0


def test_an_event_recorded_into_a_missing_entry_brings_the_older_ones_back() -> None:
    _customer_with_events("cold-3", ["a", "b"])
    history_clear(["cold-3"])  # e.g. Redis restarted
    customer = Customer.objects.get(shop_id="cold-3")
    when = timezone.now()
    EventFactory(customer=customer, item=ItemFactory(shop_id="new"), type="view", occurred_at=when)
    history_record([_ev("cold-3", "new", when.timestamp())])

    assert [e.item for e in history_get("cold-3")] == ["new", "b", "a"]
    with CaptureQueriesContext(connection) as queries:
        assert [e.item for e in history_get("cold-3")] == ["new", "b", "a"]
    assert len(queries) == 0


def test_an_event_not_yet_visible_in_the_database_is_not_lost_by_the_load() -> None:
    # Recorded into a missing entry while its transaction is not visible to the reader: kept.
    history_record([_ev("cold-4", "pending", 50.0)])
    assert [e.item for e in history_get("cold-4")] == ["pending"]


def test_history_get_many_loads_every_missing_customer_in_one_query() -> None:
    _customer_with_events("many-a", ["a1", "a2"])
    _customer_with_events("many-b", ["b1"])
    history_clear(["many-a", "many-b"])

    with CaptureQueriesContext(connection) as queries:
        result = history_get_many(["many-a", "many-b", "many-ghost"])

    assert [e.item for e in result["many-a"]] == ["a2", "a1"]
    assert [e.item for e in result["many-b"]] == ["b1"]
    assert result["many-ghost"] == []
    assert _event_queries(queries) == 1 and len(queries) == 1


def test_without_loading_a_missing_entry_reads_as_empty() -> None:
    _customer_with_events("cold-5", ["a"])
    history_clear(["cold-5"])
    with CaptureQueriesContext(connection) as queries:
        assert history_get_many(["cold-5"], load=False) == {"cold-5": []}
    assert len(queries) == 0


@pytest.mark.redis
def test_the_empty_marker_is_short_lived_in_redis() -> None:
    from django_redis import get_redis_connection

    from recadmin.events.history import EMPTY_TTL_SECONDS, history_key

    history_get("ghost-r")
    redis = get_redis_connection("default")

    assert redis.zrange(history_key("ghost-r"), 0, -1) == [b"~empty"]
    assert 0 < redis.ttl(history_key("ghost-r")) <= EMPTY_TTL_SECONDS
    history_record([_ev("ghost-r", "x", 5.0)])
    assert redis.zrange(history_key("ghost-r"), 0, -1) == [b"5.0|view|1.0||x"]
    assert redis.ttl(history_key("ghost-r")) > EMPTY_TTL_SECONDS
