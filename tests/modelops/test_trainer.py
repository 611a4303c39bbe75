"""The adapter from the database export to training's dataset and split."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.test import override_settings
from django.utils import timezone

from recadmin.modelops.loader import events_export
from recadmin.modelops.trainer import dataset_from_arrays, split_for
from tests.factories import CategoryFactory, CustomerFactory, EventFactory, ItemFactory

pytestmark = pytest.mark.django_db


def test_the_dataset_speaks_shop_ids_and_indexes_untouched_items_with_attributes() -> None:
    shoes = CategoryFactory(slug="shoes", name="Shoes")
    running = CategoryFactory(slug="running", name="Running", parent=shoes)
    alice = CustomerFactory(shop_id="alice")
    a, b = ItemFactory(shop_id="a", category=running, brand="acme"), ItemFactory(shop_id="b")
    ItemFactory(shop_id="never-seen", category=running, brand="acme")
    start = timezone.now() - dt.timedelta(days=1)
    EventFactory(customer=alice, item=b, type="purchase", occurred_at=start + dt.timedelta(minutes=2))
    EventFactory(customer=alice, item=a, type="view", occurred_at=start)

    with override_settings(EVENT_TYPE_WEIGHTS={"view": 1.0, "purchase": 4.0}):
        dataset = dataset_from_arrays(events_export())

    assert dataset.user_ids == ["alice"]
    assert dataset.item_index.ids_of(dataset.sequence(0)) == ["a", "b"]
    assert dataset.weights.tolist() == [1.0, 4.0]
    assert "never-seen" in dataset.item_index
    unseen = dataset.item_index.index("never-seen")
    tokens = set(dataset.attribute_index.ids_of(dataset.item_attributes(unseen)))
    assert {"category=shoes", "category=shoes/running", "brand=acme"} <= tokens


def test_the_hold_out_is_by_time_when_customers_span_it(make_shop: Callable[..., None]) -> None:
    make_shop(customers=60)
    split = split_for(dataset_from_arrays(events_export()), {})
    assert split.kind == "time"
    assert len(split.valid) >= 20 and len(split.test) >= 20
    assert split.info["valid_cutoff"] < split.info["test_cutoff"]


def test_it_falls_back_to_leave_one_out_when_time_does_not_separate_histories() -> None:
    # Customers one after another (as imported files often are): nobody straddles a cut-off.
    start = timezone.now() - dt.timedelta(days=100)
    items = [ItemFactory(shop_id=f"i{n}") for n in range(8)]
    minute = 0
    for c in range(30):
        customer = CustomerFactory(shop_id=f"c{c}")
        for step in range(5):
            minute += 1
            when = start + dt.timedelta(minutes=minute)
            EventFactory(customer=customer, item=items[(c + step) % 8], occurred_at=when)

    split = split_for(dataset_from_arrays(events_export()), {})

    assert split.kind == "loo"
    assert "used leave-one-out" in split.info["fallback"]
    assert len(split.test) == 30


def test_the_progress_label_shows_the_time_budget_when_it_ends_training_before_max_epochs() -> None:
    from recadmin.modelops.trainer import EpochBudget

    budget = EpochBudget(max_epochs=200, max_seconds=840.0, patience=5)
    # 10 epochs in 210 s: 40 epochs fit in 14 minutes, far fewer than 200.
    label = budget.label(epoch=11, completed=10, elapsed=210.0)
    assert "/200" not in label
    assert "epoch 11 of about 40" in label and "14.0 min" in label and "10.5 min left" in label


def test_the_progress_label_shows_epochs_when_they_end_training_first() -> None:
    from recadmin.modelops.trainer import EpochBudget

    budget = EpochBudget(max_epochs=20, max_seconds=840.0, patience=5)
    assert budget.label(epoch=11, completed=10, elapsed=10.0) == "training epoch 11/20"


@pytest.mark.parametrize(
    ("epochs", "elapsed", "expected"),
    [
        (16, 64.0, "stopped early at epoch 16 of 200: no better validation NDCG@10 for 5 epochs, kept epoch 11"),
        (40, 830.0, "stopped at epoch 40 of 200: the time budget of 14.0 min was reached, kept epoch 11"),
        (200, 500.0, "trained all 200 epochs, kept epoch 11"),
    ],
)
def test_how_training_ended_is_said(epochs: int, elapsed: float, expected: str) -> None:
    from recadmin.modelops.trainer import EpochBudget

    budget = EpochBudget(max_epochs=200, max_seconds=840.0, patience=5)
    assert budget.stopped(epochs=epochs, elapsed=elapsed, best_epoch=11) == expected
