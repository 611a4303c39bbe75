"""PostgreSQL stopped or restarting: ingestion (DRF) and the admin (plain Django) answer a JSON 503 with
Retry-After instead of an HTML 500, and a client that retries a batch gets it stored exactly once.

The outage is real to the code under test: the connection is closed and pointed at a port where nothing
listens, so the next query fails to connect exactly as with a stopped server (connection refused)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from recadmin.events.models import Event
from recadmin.modelops.torchserve import free_port
from tests.factories import ItemFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@contextmanager
def database_down() -> Iterator[None]:
    saved = connection.settings_dict["HOST"], connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", str(free_port())
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = saved


def _batch() -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"outage-{i}",
            "customer": f"c-{i}",
            "item": "SKU-1",
            "type": "view",
            "occurred_at": "2026-11-24T10:00:00Z",
        }
        for i in range(5)
    ]


def test_ingestion_gets_a_json_503_with_retry_after_and_retries_store_once(make_api_client: Any) -> None:
    ItemFactory(shop_id="SKU-1")
    client = make_api_client("ingest")

    with database_down():
        down = client.post("/api/v1/events", _batch(), format="json")
    assert down.status_code == 503
    assert down["Content-Type"] == "application/json"
    assert int(down["Retry-After"]) > 0
    assert down.json()["extra"]["service"] == "database"

    retried = client.post("/api/v1/events", _batch(), format="json")
    again = client.post("/api/v1/events", _batch(), format="json")
    assert retried.status_code == 200 and retried.json()["stored"] == 5
    assert again.status_code == 200 and again.json()["duplicates"] == 5
    assert Event.objects.filter(event_id__startswith="outage-").count() == 5


def test_a_known_key_still_gets_a_503_when_the_database_fails_after_authentication(make_api_client: Any) -> None:
    ItemFactory(shop_id="SKU-1")
    client = make_api_client("ingest")
    assert client.get("/api/v1/items").status_code == 200  # the key is now cached: auth needs no database
    with database_down():
        down = client.put("/api/v1/items/SKU-2", {"title": "New"}, format="json")
    assert down.status_code == 503 and "Retry-After" in down
    assert down.json()["message"].startswith("The database is unavailable")


def test_a_plain_django_view_gets_a_json_503_too() -> None:
    with database_down():
        down = Client().post("/admin/login/", {"username": "a", "password": "b"})
    assert down.status_code == 503
    assert down["Content-Type"] == "application/json" and "Retry-After" in down
