"""Registry fixtures: real archives (from the TorchServe fixture's trained checkpoint) registered in
the real session TorchServe, with matching ModelVersion rows."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from recadmin.modelops.models import ModelVersion, ModelVersionStatus
from tests.fixtures.torchserve import TorchServeInstance

# Archives are built once per session and copied per test: torch-model-archiver takes seconds.
_ARCHIVE_CACHE: dict[str, Path] = {}


@pytest.fixture(scope="session")
def archive_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archives")


@pytest.fixture
def make_version(
    torchserve_settings: TorchServeInstance, trained_checkpoint: Path, archive_cache_dir: Path, db: None
) -> Callable[..., ModelVersion]:
    """make_version(version, ndcg=..., status="registered"|"default"|"built"|...) -> a ModelVersion
    whose archive is in the test TorchServe's model store and which is registered there when its
    status says so (and made TorchServe's default for "default")."""
    import shutil

    from recadmin.modelops.archive import archive_build

    client = torchserve_settings.client

    def factory(
        version: int,
        *,
        ndcg: float = 0.1,
        status: str = ModelVersionStatus.REGISTERED,
        name: str = "recommender",
        promoted_minutes_ago: int | None = None,
        **fields: Any,
    ) -> ModelVersion:
        key = f"{name}-{version}"
        if key not in _ARCHIVE_CACHE:
            built = archive_build(
                checkpoint_dir=trained_checkpoint, name=name, version=str(version), model_store=archive_cache_dir
            )
            _ARCHIVE_CACHE[key] = built.path
        target = torchserve_settings.model_store / _ARCHIVE_CACHE[key].name
        shutil.copyfile(_ARCHIVE_CACHE[key], target)
        from recadmin.modelops.services import file_sha256

        promoted_at = None
        if status == ModelVersionStatus.DEFAULT:
            promoted_at = timezone.now()
        if promoted_minutes_ago is not None:
            promoted_at = timezone.now() - dt.timedelta(minutes=promoted_minutes_ago)
        row = ModelVersion.objects.create(
            name=name,
            version=version,
            kind="pop",
            archive_path=str(target),
            sha256=file_sha256(target),
            valid_metrics={"NDCG@10": ndcg, "HR@10": ndcg * 2},
            test_metrics={"NDCG@10": ndcg * 0.9},
            num_events=720,
            num_users=60,
            num_items=40,
            status=status,
            promoted_at=promoted_at,
            **fields,
        )
        if status in (ModelVersionStatus.REGISTERED, ModelVersionStatus.DEFAULT):
            client.register(target, model_name=name, initial_workers=1)
            if status == ModelVersionStatus.DEFAULT:
                client.set_default(name, str(version))
        return row

    return factory


@pytest.fixture
def make_shop(db: None) -> Callable[..., None]:
    return shop_events


def shop_events(*, customers: int = 40, items: int = 30, length: int = 10, seed: int = 0, days: int = 30) -> None:
    """A small generated shop with learnable behaviour: customers walk the catalogue in order
    (item i is usually followed by i+1), spread over `days` so a time-based hold-out exists."""
    from recadmin.catalog.models import Customer, Item
    from recadmin.events.models import Event
    from tests.factories import CategoryFactory

    rng = random.Random(seed)
    categories = [CategoryFactory(slug=f"cat-{i}", name=f"Cat {i}") for i in range(3)]
    item_rows = Item.objects.bulk_create(
        [
            Item(shop_id=f"sku-{i:03d}", title=f"Item {i}", category=categories[i % 3], brand=f"brand-{i % 4}")
            for i in range(items)
        ]
    )
    customer_rows = Customer.objects.bulk_create([Customer(shop_id=f"c-{u:03d}") for u in range(customers)])
    start = timezone.now() - dt.timedelta(days=days)
    events = []
    n = 0
    for customer in customer_rows:
        item = rng.randrange(items)
        for _ in range(length):
            when = start + dt.timedelta(seconds=rng.uniform(0, days * 86400))
            events.append((customer, item_rows[item], when))
            item = (item + 1) % items if rng.random() < 0.85 else rng.randrange(items)
    # Each customer's events in time order follow the walk.
    by_customer: dict[int, list[Any]] = {}
    for customer, item, when in events:
        by_customer.setdefault(customer.pk, []).append((customer, item, when))
    rows = []
    for walk in by_customer.values():
        times = sorted(when for _, _, when in walk)
        for (customer, item, _), when in zip(walk, times, strict=True):
            n += 1
            kind = "purchase" if rng.random() < 0.1 else "view"
            rows.append(Event(customer=customer, item=item, type=kind, occurred_at=when, event_id=f"e{n}"))
    Event.objects.bulk_create(rows)
