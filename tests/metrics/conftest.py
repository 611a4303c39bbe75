"""Fixtures of the metrics tests: a small catalog, served pages written as the served log writes them,
events sent through the ingestion service."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from recadmin.catalog.models import Item
from recadmin.events.services import events_ingest
from recadmin.metrics.services import hour_of
from recadmin.serving.models import ServedRecommendation
from tests.factories import ItemFactory


@pytest.fixture
def t0() -> dt.datetime:
    """Five minutes into the hour two hours ago: a served hour in the past, events after it."""
    return hour_of(timezone.now()) - dt.timedelta(hours=2) + dt.timedelta(minutes=5)


@pytest.fixture
def items(db: None) -> dict[str, Item]:
    return {
        shop_id: ItemFactory(shop_id=shop_id, price=Decimal(price))
        for shop_id, price in (("A", "10.00"), ("B", "4.50"), ("C", "99.99"), ("D", "1.00"))
    }


@pytest.fixture
def serve(items: dict[str, Item]) -> Callable[..., ServedRecommendation]:
    def make(
        recommendation_id: str,
        item_ids: list[str],
        *,
        at: dt.datetime,
        customer: str = "c1",
        scene: str = "home",
        offset: int = 0,
        source: str = "model",
        rules: dict[str, list[int]] | None = None,
        **fields: Any,
    ) -> ServedRecommendation:
        entries = [
            {
                "item": shop_id,
                "position": offset + i,
                "score": 1.0 - i / 10,
                "rules": (rules or {}).get(shop_id, []),
                "source": source,
            }
            for i, shop_id in enumerate(item_ids)
        ]
        fields.setdefault("model_label", "recommender v1" if source == "model" else "")
        fields.setdefault("strategy", "model,popular")
        return ServedRecommendation.objects.create(
            recommendation_id=recommendation_id,
            offset=offset,
            customer_shop_id=customer,
            scene=scene,
            source=source,
            items=entries,
            n_items=len(entries),
            created_at=at,
            **fields,
        )

    return make


@pytest.fixture
def send() -> Callable[..., dict[str, Any]]:
    counter = {"n": 0}

    def make(
        type_: str,
        item: str,
        *,
        at: dt.datetime,
        customer: str = "c1",
        rec: str | None = None,
        event_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        counter["n"] += 1
        row = {
            "customer": customer,
            "item": item,
            "type": type_,
            "occurred_at": at.isoformat(),
            "event_id": event_id or f"e{counter['n']}",
            **extra,
        }
        if rec is not None:
            row["recommendation_id"] = rec
        result = events_ingest(payload=[row], record_history=False)
        assert not result.errors, result.errors
        return result.as_dict()

    return make
