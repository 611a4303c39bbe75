"""A small shop the serving tests share, and a real model served by the real TorchServe.

The model is trained once per session (tests/fixtures/torchserve.py: a real tiny model on the
synthetic sequences over items sku-000..sku-039), packaged once with the project's archive builder,
and registered in the session's TorchServe when a test needs it (again after a test stopped it or
another area's fixture unregistered it). Each test gets the catalog and the default ModelVersion
row in its own database transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from recadmin.catalog.models import Category, Item
from recadmin.modelops.models import ModelKind, ModelVersion, ModelVersionStatus
from recadmin.modelops.selectors import default_cache_key
from recadmin.rules.models import Scene
from tests.factories import CategoryFactory, ItemFactory
from tests.fixtures.torchserve import TorchServeInstance, synthetic_sequences

MODEL_NAME = "recommender"
MODEL_VERSION = 1
NUM_ITEMS = 40


def sku(i: int) -> str:
    return f"sku-{i:03d}"


@pytest.fixture(scope="session")
def serving_archive(trained_checkpoint: Path, torchserve_session: TorchServeInstance) -> Path:
    from recadmin.modelops.archive import archive_build

    built = archive_build(
        checkpoint_dir=trained_checkpoint,
        name=MODEL_NAME,
        version=str(MODEL_VERSION),
        model_store=torchserve_session.model_store,
        overwrite=True,
        # Batching delay costs latency on every single request; these tests send one at a time.
        max_batch_delay=1,
    )
    return Path(built.path)


def ensure_registered(instance: TorchServeInstance, archive: Path) -> None:
    instance.ensure_running()
    client = instance.client
    loaded = {(s.name) for s in client.list_models()}
    if MODEL_NAME in loaded and any(v.is_ready for v in client.describe(MODEL_NAME)):
        return
    client.register(archive.name, model_name=MODEL_NAME, initial_workers=1)
    client.wait_until_ready(MODEL_NAME, timeout=60)
    # A new worker's first answers are slow (lazy initialisation): warm it up so the tests measure
    # the served path, not the start-up, against the 150 ms budget.
    for _ in range(3):
        client.predict(MODEL_NAME, {"history": [sku(0)], "k": 10}, timeout=30)


@pytest.fixture
def shop(db: None) -> dict[str, Any]:
    """Categories beauty > {skin, hair}; items sku-000..039 (even: skin, odd: hair), scenes."""
    beauty = CategoryFactory(slug="beauty", name="Beauty")
    skin = CategoryFactory(slug="skin", name="Skin", parent=beauty)
    hair = CategoryFactory(slug="hair", name="Hair", parent=beauty)
    items = [
        ItemFactory(
            shop_id=sku(i),
            title=f"Product {i}",
            category=skin if i % 2 == 0 else hair,
            brand="acme" if i % 3 == 0 else "globex",
        )
        for i in range(NUM_ITEMS)
    ]
    home = Scene.objects.create(slug="home", name="Home", candidate_multiplier=5)
    detail = Scene.objects.create(slug="product_detail", name="Product page", fallback="category")
    return {"beauty": beauty, "skin": skin, "hair": hair, "items": items, "home": home, "detail": detail}


def ingest(customer: str, items: list[str], *, type_: str = "view", start: dt.datetime | None = None) -> None:
    """Send events through the ingestion service (which also updates the Redis history)."""
    from recadmin.events.services import events_ingest

    start = start or timezone.now() - dt.timedelta(hours=2)
    payload = [
        {
            "customer": customer,
            "item": item,
            "type": type_,
            "occurred_at": (start + dt.timedelta(seconds=i)).isoformat(),
            "event_id": f"{customer}-{item}-{type_}-{start.timestamp() + i}",
        }
        for i, item in enumerate(items)
    ]
    result = events_ingest(payload=payload)
    assert not result.errors, result.errors


@pytest.fixture
def shop_with_events(shop: dict[str, Any]) -> dict[str, Any]:
    """A few customers' sequences from the model's own training data, as ingested events."""
    sequences = synthetic_sequences()
    for customer in list(sequences)[:6]:
        ingest(customer, sequences[customer][:6])
    shop["sequences"] = sequences
    return shop


@pytest.fixture
def served_model(
    shop_with_events: dict[str, Any], torchserve_session: TorchServeInstance, serving_archive: Path, settings: Any
) -> Iterator[ModelVersion]:
    """The session's TorchServe serving the tiny model as the default version of `recommender`."""
    for name, value in torchserve_session.settings().items():
        setattr(settings, name, value)
    # These tests check what is served, not how fast: a loaded CI machine must not turn a model
    # answer into a fallback. The budget itself is tested with its own setting (test_fallback).
    settings.SERVING_TIME_BUDGET_MS = 3000
    ensure_registered(torchserve_session, serving_archive)
    version = ModelVersion.objects.create(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        kind=ModelKind.POP,
        archive_path=str(serving_archive),
        status=ModelVersionStatus.DEFAULT,
        promoted_at=timezone.now(),
    )
    from django.core.cache import cache

    cache.delete(default_cache_key(MODEL_NAME))
    yield version
    # A test that stopped TorchServe leaves it for the next one to restart (ensure_registered).


def item_titles() -> dict[str, str]:
    return dict(Item.objects.values_list("shop_id", "title"))


def category(slug: str) -> Category:
    return Category.objects.get(slug=slug)
