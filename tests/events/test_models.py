from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from recadmin.events.models import Event
from tests.factories import EventFactory, ItemFactory

pytestmark = pytest.mark.django_db


def test_event_id_is_unique() -> None:
    event = EventFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        EventFactory(event_id=event.event_id)


def test_an_item_with_events_cannot_be_deleted_outright() -> None:
    from django.db.models import ProtectedError

    event = EventFactory()
    with pytest.raises(ProtectedError):
        event.item.delete()


def test_deleting_a_customer_erases_their_events() -> None:
    event = EventFactory()
    event.customer.delete()
    assert not Event.objects.filter(pk=event.pk).exists()


def test_indexes_for_latest_per_customer_and_item_time_window_exist() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Event._meta.db_table)
    columns = {tuple(c["columns"]) for c in constraints.values() if c["index"]}
    assert ("customer_id", "occurred_at") in columns
    assert ("item_id", "occurred_at") in columns


def test_occurred_at_is_timezone_aware() -> None:
    event = EventFactory(item=ItemFactory())
    event.refresh_from_db()
    assert event.occurred_at.tzinfo is not None
