from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import override_settings
from django.utils import timezone

from recadmin.modelops.loader import events_export
from tests.factories import CategoryFactory, CustomerFactory, EventFactory, ItemFactory

pytestmark = pytest.mark.django_db


def test_it_exports_events_sorted_per_customer_by_time_with_type_weights() -> None:
    base = timezone.now() - dt.timedelta(days=1)
    alice, bob = CustomerFactory(shop_id="alice"), CustomerFactory(shop_id="bob")
    a, b, c = ItemFactory(shop_id="a"), ItemFactory(shop_id="b"), ItemFactory(shop_id="c")
    EventFactory(customer=bob, item=c, type="view", occurred_at=base + dt.timedelta(minutes=5))
    EventFactory(customer=alice, item=b, type="purchase", occurred_at=base + dt.timedelta(minutes=2))
    EventFactory(customer=alice, item=a, type="view", occurred_at=base + dt.timedelta(minutes=1))
    EventFactory(customer=bob, item=a, type="view", occurred_at=base + dt.timedelta(minutes=3))

    with override_settings(EVENT_TYPE_WEIGHTS={"view": 1.0, "purchase": 5.0}):
        exported = events_export()

    customers = [exported.customer_shop_ids[int(pk)] for pk in exported.customer]
    items = [exported.item_shop_ids[int(pk)] for pk in exported.item]
    assert customers == ["alice", "alice", "bob", "bob"]
    assert items == ["a", "b", "a", "c"]
    assert exported.weights.tolist() == [1.0, 5.0, 1.0, 1.0]
    assert np.all(np.diff(exported.timestamp[:2]) > 0)
    assert exported.timestamp[0] == int((base + dt.timedelta(minutes=1)).timestamp())


def test_it_drops_event_types_without_a_weight() -> None:
    EventFactory(type="view")
    EventFactory(type="hover")
    with override_settings(EVENT_TYPE_WEIGHTS={"view": 1.0, "hover": 0.0}):
        exported = events_export()
    assert len(exported) == 1
    assert exported.type_names == ["view"]


def test_it_includes_untouched_active_items_with_their_category_and_brand() -> None:
    skin = CategoryFactory(slug="skin", name="Skin")
    ItemFactory(shop_id="new-cream", category=skin, brand="acme")
    ItemFactory(shop_id="gone", is_active=False)
    EventFactory(item=ItemFactory(shop_id="seen"))
    exported = events_export()
    assert set(exported.item_shop_ids.values()) == {"new-cream", "seen"}
    assert exported.item_attributes["new-cream"] == {"category": "/skin/", "brand": "acme"}


def test_it_returns_empty_arrays_when_there_are_no_events() -> None:
    exported = events_export()
    assert len(exported) == 0
    assert exported.num_customers == 0


def test_it_exports_only_the_requested_time_window() -> None:
    now = timezone.now()
    EventFactory(occurred_at=now - dt.timedelta(days=10))
    EventFactory(occurred_at=now - dt.timedelta(days=1))
    exported = events_export(since=now - dt.timedelta(days=2))
    assert len(exported) == 1
