"""The recommendations endpoint when the history cache has no entry for the customer: the database
answers (once), through a real TorchServe. Run with REDIS_URL for Redis, without for the local cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from recadmin.events.history import history_clear
from recadmin.events.models import Event
from recadmin.serving import fallbacks

pytestmark = [pytest.mark.django_db, pytest.mark.torchserve]

URL = "/api/v1/recommendations"


def _ids(body: dict[str, Any]) -> list[str]:
    return [row["item"] for row in body["items"]]


def _get(api_client: APIClient, params: dict[str, Any]) -> dict[str, Any]:
    response = api_client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


def _event_reads(queries: CaptureQueriesContext) -> int:
    return sum(Event._meta.db_table in q["sql"] for q in queries.captured_queries)


def test_a_customer_whose_cache_entry_was_deleted_gets_the_model_list_of_their_database_history(
    api_client: APIClient, served_model: Any
) -> None:
    params: dict[str, Any] = {"customer": "customer-001", "scene": "home", "n": 10}
    warm = _get(api_client, params)
    history_clear(["customer-001"])  # Redis flushed, TTL expired, another process's local memory...

    cold = _get(api_client, params)

    assert warm["source"] == "model"
    assert cold["source"] == "model", cold
    assert _ids(cold) == _ids(warm)
    # And it was written back: the next request reads no events from the database.
    with CaptureQueriesContext(connection) as queries:
        again = _get(api_client, params)
    assert _ids(again) == _ids(warm)
    assert _event_reads(queries) == 0


def test_a_warm_request_reads_no_events_from_the_database(api_client: APIClient, served_model: Any) -> None:
    params: dict[str, Any] = {"customer": "customer-003", "scene": "home", "n": 5}
    _get(api_client, params)

    with CaptureQueriesContext(connection) as queries:
        body = _get(api_client, params)

    assert body["source"] == "model"
    assert _event_reads(queries) == 0


def test_an_unknown_customers_repeated_requests_query_the_database_once(
    api_client: APIClient, served_model: Any
) -> None:
    # Another stranger first: the trending list the fallback serves is computed (from events) once.
    _get(api_client, {"customer": "someone-else", "scene": "home", "n": 5})

    with CaptureQueriesContext(connection) as queries:
        bodies = [_get(api_client, {"customer": "stranger", "scene": "home", "n": 5}) for _ in range(3)]

    assert [b["source"] for b in bodies] == ["fallback"] * 3
    assert fallbacks.fallback_counts()[fallbacks.REASON_COLD_START] == 4
    assert _event_reads(queries) == 1


def test_a_first_click_after_the_empty_marker_changes_the_next_list(api_client: APIClient, served_model: Any) -> None:
    before = _get(api_client, {"customer": "first-timer", "scene": "home", "n": 10})
    assert before["source"] == "fallback"
    clicked = before["items"][0]["item"]

    response = api_client.post(
        "/api/v1/events",
        [{"customer": "first-timer", "item": clicked, "type": "click", "event_id": "first-click"}],
        format="json",
    )
    assert response.status_code in (200, 201, 207), response.content
    after = _get(api_client, {"customer": "first-timer", "scene": "home", "n": 10})

    assert after["source"] == "model"
    assert clicked not in _ids(after)
    assert _ids(after) != _ids(before)
