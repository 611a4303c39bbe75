"""The typed history read serving composes: a cache that cannot answer never makes a customer new."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from recadmin.catalog.models import Customer
from recadmin.events import selectors
from recadmin.events.history import history_clear
from recadmin.events.models import Event
from recadmin.events.selectors import HistoryPrefetch, customer_history
from tests.factories import ItemFactory

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def bought(db: None) -> list[str]:
    customer = Customer.objects.create(shop_id="c-db")
    items = [ItemFactory(shop_id=f"i-{i}") for i in range(3)]
    start = timezone.now() - dt.timedelta(hours=1)
    for i, item in enumerate(items):
        Event.objects.create(
            event_id=f"e-{i}",
            customer=customer,
            item=item,
            type="purchase" if i == 2 else "view",
            occurred_at=start + dt.timedelta(minutes=i),
        )
    history_clear(["c-db"])
    return [item.shop_id for item in items]


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise ConnectionError("Redis is down")


def test_a_failed_cache_read_is_answered_by_the_database_without_writing_back(
    bought: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "set_many", _refuse)
    monkeypatch.setattr(cache, "add", _refuse)
    monkeypatch.setattr("recadmin.events.history._record_script", _refuse)

    history = customer_history("c-db", 50, prefetched=HistoryPrefetch(customer="c-db", failed=True))

    assert history.read_from == "database"
    assert history.item_ids == bought  # oldest first
    assert set(history.purchases) == {"i-2"}


def test_when_the_cache_read_raises_the_database_answers(bought: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "history_get", _refuse)

    history = customer_history("c-db", 50)

    assert history.read_from == "database" and history.item_ids == bought


def test_a_warm_read_needs_no_database(bought: list[str], django_assert_num_queries: Any) -> None:
    customer_history("c-db", 50)  # cold: loaded and written back

    with django_assert_num_queries(0):
        history = customer_history("c-db", 50)

    assert history.read_from == "cache" and history.item_ids == bought


def test_recent_lists_distinct_items_of_the_types_asked_newest_first(bought: list[str]) -> None:
    history = customer_history("c-db", 50)

    assert history.recent(frozenset({"view"})) == ["i-1", "i-0"]
    assert history.recent() == ["i-2", "i-1", "i-0"]


def test_no_customer_has_no_history(db: None) -> None:
    assert customer_history("", 50).entries == ()


def _device_events(customer: str, devices: list[Any], *, start: dt.datetime) -> None:
    """Events one minute apart, oldest first, each with the given context.device (None: no device)."""
    from tests.factories import CustomerFactory, EventFactory

    owner = CustomerFactory(shop_id=customer)
    for i, device in enumerate(devices):
        context = {} if device is None else {"device": device}
        EventFactory(customer=owner, occurred_at=start + dt.timedelta(minutes=i), context=context)


@pytest.mark.parametrize(
    ("devices", "before_minutes", "expected"),
    [
        (["tablet", None, "phone", None, None], None, "phone"),  # the newest that names one
        (["tablet", None, "phone", None, None], 2, "tablet"),  # only events before `before` count
        (["tablet", *[None] * 20], None, ""),  # beyond the newest 20: none
        (["tablet", *[None] * 19], None, "tablet"),  # the 20th newest still counts
        ([7, "", None], None, ""),  # a number or an empty string names no device
        ([], None, ""),
    ],
)
def test_the_history_gives_the_device_the_database_query_gives(
    db: None, devices: list[Any], before_minutes: int | None, expected: str
) -> None:
    start = timezone.now() - dt.timedelta(hours=1)
    _device_events("c-dev", devices, start=start)
    before = start + dt.timedelta(minutes=before_minutes) if before_minutes is not None else timezone.now()

    history = customer_history("c-dev", 50)

    assert history.last_device(before=before) == selectors.customer_last_device("c-dev", before=before) == expected
