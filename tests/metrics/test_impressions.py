"""The ranker's impressions export from hand-made served pages and attributions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from recadmin.metrics.models import Attribution
from recadmin.modelops.registry import impressions_export_get
from recadmin.serving.models import ServedRecommendation
from tests.factories import CategoryFactory, CustomerFactory, EventFactory, ItemFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)  # a Friday


def _page(
    rid: str, items: list[str], *, at: dt.datetime, customer: str = "c1", scene: str = "home"
) -> ServedRecommendation:
    entries = [
        {
            "item": shop_id,
            "position": i + 1,
            "score": round(0.9 - i / 10, 2),
            "rules": [],
            "source": "model" if i else "pinned",
        }
        for i, shop_id in enumerate(items)
    ]
    return ServedRecommendation.objects.create(
        recommendation_id=rid,
        customer_shop_id=customer,
        scene=scene,
        source="model",
        items=entries,
        n_items=len(entries),
        created_at=at,
    )


def _attribute(page: ServedRecommendation, item: Any, type_: str, n: int) -> None:
    Attribution.objects.create(
        event_id=n,
        dedup_key=f"{type_}:{n}",
        type=type_,
        method="direct",
        served_id=page.pk,
        recommendation_id=page.recommendation_id,
        served_hour=page.created_at,
        position=1,
        item_id=item.pk,
        customer_shop_id=page.customer_shop_id,
        occurred_at=page.created_at + dt.timedelta(minutes=1),
    )


@pytest.fixture
def shop() -> dict[str, Any]:
    shoes = CategoryFactory(name="Shoes", slug="shoes")
    hats = CategoryFactory(name="Hats", slug="hats")
    items = {
        "A": ItemFactory(shop_id="A", category=shoes, brand="acme", price=Decimal("10.00"), stock_quantity=3),
        "B": ItemFactory(shop_id="B", category=shoes, brand="globex", price=Decimal("50.00"), stock_quantity=0),
        "C": ItemFactory(shop_id="C", category=hats, brand="acme", price=Decimal("20.00"), stock_quantity=7),
    }
    c1 = CustomerFactory(shop_id="c1")
    # History before the pages: two shoe views (one on a phone), one after them on a tablet.
    EventFactory(customer=c1, item=items["A"], occurred_at=T0 - dt.timedelta(days=3), context={"device": "phone"})
    EventFactory(customer=c1, item=items["B"], occurred_at=T0 - dt.timedelta(days=2), context={})
    EventFactory(customer=c1, item=items["C"], occurred_at=T0 + dt.timedelta(hours=1), context={"device": "tablet"})
    return items


def test_every_item_shown_is_one_impression_labelled_from_its_attributions(shop: dict[str, Any]) -> None:
    first = _page("r1", ["A", "B", "C"], at=T0)
    second = _page("r2", ["C", "A"], at=T0 + dt.timedelta(hours=2), scene="cart")
    _attribute(first, shop["B"], "click", 1)
    _attribute(first, shop["B"], "purchase", 2)
    _attribute(first, shop["C"], "purchase", 3)  # a purchase without a click on the list: not this impression's
    _attribute(second, shop["C"], "click", 4)

    table = impressions_export_get()(since=T0 - dt.timedelta(hours=1), until=T0 + dt.timedelta(days=1))

    assert len(table) == 5
    assert table.item == ["A", "B", "C", "C", "A"]
    assert table.scene == ["home", "home", "home", "cart", "cart"]
    assert table.position.tolist() == [1, 2, 3, 1, 2]
    assert np.allclose(table.retrieval_score, [0.9, 0.8, 0.7, 0.9, 0.8])
    assert table.source == ["pinned", "model", "model", "pinned", "model"]
    assert table.clicked.tolist() == [False, True, False, True, False]
    assert table.purchased.tolist() == [False, True, False, False, False]
    assert table.timestamp.tolist() == [T0.timestamp()] * 3 + [(T0 + dt.timedelta(hours=2)).timestamp()] * 2
    # The device of the last event before each page: the phone, then the tablet an hour later.
    assert table.device == ["phone"] * 3 + ["tablet"] * 2


def test_the_device_is_read_by_servings_rule_where_a_number_names_none(shop: dict[str, Any]) -> None:
    from recadmin.events.selectors import customer_last_device

    EventFactory(
        customer=CustomerFactory(shop_id="c2"), item=shop["A"], occurred_at=T0 - dt.timedelta(hours=1),
        context={"device": 7},
    )  # fmt: skip
    _page("r1", ["A"], at=T0, customer="c2")

    table = impressions_export_get()(since=T0 - dt.timedelta(hours=2))

    assert table.device == [""] == [customer_last_device("c2", before=T0)]


def test_customer_profiles_use_only_events_before_the_page(shop: dict[str, Any]) -> None:
    page = _page("r1", ["A"], at=T0)
    table = impressions_export_get()(since=T0 - dt.timedelta(hours=1))

    assert table.customer == [f"c1@{page.pk}"]
    profile = table.customers[f"c1@{page.pk}"]
    assert profile.activity == 2  # the hat view after the page is not known yet
    assert profile.category_affinity == {"shoes": 1.0}
    assert profile.brand_affinity == {"acme": 0.5, "globex": 0.5}
    # The last event before the page was two days before it.
    assert profile.recency_days == pytest.approx(2.0)
    # Shoes' median price is 30: one of the two shoes seen (A at 10) is below it.
    assert profile.price_sensitivity == 0.5
    item = table.items["A"]
    assert (item.category, item.brand, item.price, item.stock) == ("shoes", "acme", 10.0, 3.0)
    assert item.popularity == 1.0  # one event in the 30 days before the first page


def test_a_profile_reads_only_the_newest_history_length_events(shop: dict[str, Any], settings: Any) -> None:
    settings.HISTORY_LENGTH = 1  # serving holds this many events per customer
    page = _page("r1", ["A"], at=T0)
    profile = impressions_export_get()(since=T0 - dt.timedelta(hours=1)).customers[f"c1@{page.pk}"]

    assert profile.activity == 1 and profile.brand_affinity == {"globex": 1.0}
    assert profile.price_sensitivity == 0.0  # B at 50 is above the shoes' median


def test_scenes_and_period_filter_the_pages(shop: dict[str, Any]) -> None:
    _page("r1", ["A", "B"], at=T0, scene="home")
    _page("r2", ["C"], at=T0 + dt.timedelta(hours=2), scene="cart")
    _page("r3", ["C"], at=T0 + dt.timedelta(days=5), scene="cart")

    assert impressions_export_get()(scenes=["cart"]).item == ["C", "C"]
    assert impressions_export_get()(until=T0 + dt.timedelta(days=1)).item == ["A", "B", "C"]
    assert len(impressions_export_get()(since=T0 + dt.timedelta(days=10))) == 0
