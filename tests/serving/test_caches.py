"""Caches of the hot path: item metadata (invalidated by catalog writes), trending lists, the log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from recadmin.catalog.models import Item
from recadmin.catalog.services import category_update, item_update, items_bulk_upsert
from recadmin.serving.items import items_metadata
from recadmin.serving.models import ServedRecommendation
from recadmin.serving.popular import popular_compute, popular_get
from recadmin.serving.served_log import served_log_backlog, served_log_drain, served_log_push
from tests.factories import CategoryFactory, EventFactory, ItemFactory

pytestmark = [pytest.mark.django_db(transaction=False)]


def test_item_metadata_is_read_once_then_served_from_the_cache(shop: Any) -> None:
    ids = [f"sku-{i:03d}" for i in range(30)]
    first = items_metadata(ids)

    with CaptureQueriesContext(connection) as queries:
        second = items_metadata(ids)

    assert len(first) == 30 and first == second
    assert len(queries) == 0


def test_item_writes_through_the_catalog_services_invalidate_the_cache(
    shop: Any, django_capture_on_commit_callbacks: Any
) -> None:
    items_metadata(["sku-001", "sku-002"])
    with django_capture_on_commit_callbacks(execute=True):
        item_update(item=Item.objects.get(shop_id="sku-001"), data={"title": "Renamed"})
    with django_capture_on_commit_callbacks(execute=True):
        items_bulk_upsert(rows=[{"shop_id": "sku-002", "price": "99.00", "in_stock": False}])

    fresh = items_metadata(["sku-001", "sku-002"])

    assert fresh["sku-001"]["title"] == "Renamed"
    assert fresh["sku-002"]["price"] == 99.0 and fresh["sku-002"]["in_stock"] is False


def test_a_category_move_invalidates_every_cached_path(shop: Any, django_capture_on_commit_callbacks: Any) -> None:
    items_metadata(["sku-000"])
    other = CategoryFactory(slug="other-root")
    with django_capture_on_commit_callbacks(execute=True):
        category_update(category=shop["skin"], parent=other)

    assert items_metadata(["sku-000"])["sku-000"]["category_path"] == "/other-root/skin/"


def test_unknown_items_are_left_out(shop: Any) -> None:
    assert set(items_metadata(["sku-001", "nope"])) == {"sku-001"}


def test_trending_decays_with_age_and_counts_event_weights(db: None) -> None:
    cat = CategoryFactory(slug="c")
    old, recent, bought = ItemFactory(category=cat), ItemFactory(category=cat), ItemFactory(category=cat)
    now = timezone.now()
    for _ in range(10):
        EventFactory(item=old, occurred_at=now - dt.timedelta(days=20))
    for _ in range(4):
        EventFactory(item=recent, occurred_at=now - dt.timedelta(hours=1))
    EventFactory(item=bought, type="purchase", occurred_at=now - dt.timedelta(hours=1))

    ranked = popular_compute(now=now)["*"]

    order = [item for item, _ in ranked]
    # 10 views 20 days ago (half-life 7 days: ~1.4) < 4 recent views < 1 recent purchase (weight 8).
    assert order[:3] == [bought.shop_id, recent.shop_id, old.shop_id]


def test_trending_is_cached_and_built_on_demand(shop_with_events: Any) -> None:
    first = popular_get(category="skin")
    with CaptureQueriesContext(connection) as queries:
        again = popular_get(category="skin")

    assert first and first == again
    assert len(queries) == 0


def test_inactive_items_never_trend(shop_with_events: Any) -> None:
    Item.objects.filter(shop_id__in=[i for i, _ in popular_compute()["*"][:3]]).update(is_active=False)
    ranked = [i for i, _ in popular_compute()["*"]]

    assert not set(ranked) & set(Item.objects.filter(is_active=False).values_list("shop_id", flat=True))


def test_the_served_log_buffers_then_drains_in_bulk(db: None) -> None:
    for i in range(3):
        served_log_push(
            record={
                "recommendation_id": f"r{i}",
                "scene": "home",
                "source": "model",
                "items": [{"item": "a", "position": 1, "score": 1.0}],
            }
        )
    assert served_log_backlog() == 3

    with CaptureQueriesContext(connection) as queries:
        written = served_log_drain()

    assert written == 3 and served_log_backlog() == 0
    assert ServedRecommendation.objects.count() == 3
    assert sum("INSERT" in q["sql"] for q in queries.captured_queries) == 1


def test_the_drain_skips_pages_already_written_and_sets_malformed_records_aside(db: None) -> None:
    from recadmin.catalog.models import Customer
    from recadmin.serving import served_log

    customer = Customer.objects.create(shop_id="c-drain")
    record = {"recommendation_id": "again", "customer": "c-drain", "scene": "home", "source": "model",
              "strategy": "model,popular", "items": [{"item": "a", "position": 0, "rules": [3]}],
              "created_at": "2026-01-02T03:04:05+00:00"}  # fmt: skip
    served_log_push(record=record)
    served_log_drain()
    # A batch put back after a failure comes again; the page is not written twice.
    served_log_push(record=record)
    served_log_push(record={"recommendation_id": "cold", "customer": "c-unknown", "items": []})
    served_log._local_buffer.append("{not json")
    served_log._local_buffer.append('["not", "an", "object"]')
    served_log._local_buffer.append('{"no": "recommendation_id"}')
    served_log_drain()

    assert served_log_backlog() == 0
    assert ServedRecommendation.objects.filter(recommendation_id="again").count() == 1
    page = ServedRecommendation.objects.get(recommendation_id="again")
    assert page.customer_id == customer.pk
    assert (page.customer_shop_id, page.scene, page.strategy, page.n_items) == ("c-drain", "home", "model,popular", 1)
    assert page.items == [{"item": "a", "position": 0, "rules": [3]}]
    assert page.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
    cold = ServedRecommendation.objects.get(recommendation_id="cold")
    assert (cold.customer_id, cold.customer_shop_id, cold.endpoint) == (None, "c-unknown", "recommendations")
    assert ServedRecommendation.objects.count() == 2
    count, latest = served_log.served_log_rejected()
    assert count == 3
    assert [entry["record"] for entry in latest] == [
        '{"no": "recommendation_id"}',
        '["not", "an", "object"]',
        "{not json",
    ]
    assert latest[0]["error"].startswith("KeyError") and latest[1]["error"].startswith("ValueError: not a JSON object")


def test_the_served_log_keeps_numbers_as_numbers_and_reads_an_earlier_releases_records(db: None) -> None:
    import json

    import numpy as np

    from recadmin.serving import served_log

    class Score(float):  # what a model layer may hand over: a float subclass
        pass

    served_log_push(
        record={
            "recommendation_id": "typed",
            "latency_ms": np.float32(2.5),
            "items": [
                {"item": "a", "position": 1, "score": Score(0.25), "retrieval_score": np.float64(0.5)},
                {"item": "b", "position": 2, "score": float("nan"), "retrieval_score": np.int64(3)},
            ],
        }
    )
    # An earlier release queued its records with json.dumps, which writes NaN as a bare literal.
    served_log._local_buffer.append(
        json.dumps({"recommendation_id": "older", "items": [{"item": "c", "position": 1, "score": float("nan")}]})
    )
    served_log_drain()

    typed = ServedRecommendation.objects.get(recommendation_id="typed")
    assert typed.items == [
        {"item": "a", "position": 1, "score": 0.25, "retrieval_score": 0.5},
        {"item": "b", "position": 2, "score": None, "retrieval_score": 3},
    ]
    assert typed.latency_ms == 2.5
    older = ServedRecommendation.objects.get(recommendation_id="older")
    assert older.items == [{"item": "c", "position": 1, "score": None}]


@pytest.mark.postgres
def test_a_record_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_is_written(db: None) -> None:
    from recadmin.serving.served_log import served_log_rejected

    for i in range(7):
        # Scene names are at most 64 characters: PostgreSQL refuses the third record's.
        scene = "x" * 65 if i == 2 else "home"
        served_log_push(record={"recommendation_id": f"p{i}", "scene": scene, "source": "model", "items": []})

    written = served_log_drain()

    assert written == 6 and served_log_backlog() == 0
    assert set(ServedRecommendation.objects.values_list("recommendation_id", flat=True)) == {
        f"p{i}" for i in range(7) if i != 2
    }
    count, latest = served_log_rejected()
    assert count == 1
    assert '"recommendation_id":"p2"' in latest[0]["record"]
    assert latest[0]["error"].startswith("StringDataRightTruncation")
    # The log goes on: the next pages are written.
    served_log_push(record={"recommendation_id": "after", "scene": "home", "source": "model", "items": []})
    assert served_log_drain() == 1


@pytest.mark.postgres
def test_set_aside_records_go_back_to_the_log_once_the_cause_is_fixed(db: None) -> None:
    from django.db import connection as db_connection

    from recadmin.serving.served_log import served_log_rejected, served_log_retry_rejected

    for name, scene in (("fits-later", "x" * 80), ("still-too-long", "y" * 200), ("malformed", None)):
        record = {"recommendation_id": name, "scene": scene, "source": "model", "items": []}
        served_log_push(record=record if scene else {"no": "recommendation_id"})
    served_log_drain()
    assert served_log_rejected()[0] == 3 and not ServedRecommendation.objects.exists()

    # The operator widens the column (DDL is transactional: the test's rollback undoes it).
    with db_connection.cursor() as cursor:
        table = ServedRecommendation._meta.db_table
        cursor.execute(f"ALTER TABLE {table} ALTER COLUMN scene TYPE varchar(100)")
    sent = served_log_retry_rejected()
    assert sent == 3 and served_log_rejected()[0] == 0 and served_log_backlog() == 3

    assert served_log_drain() == 1
    assert list(ServedRecommendation.objects.values_list("recommendation_id", "scene")) == [("fits-later", "x" * 80)]
    count, latest = served_log_rejected()
    assert count == 2
    assert {entry["error"].split(":")[0] for entry in latest} == {"StringDataRightTruncation", "KeyError"}
    assert served_log_retry_rejected() == 2 and served_log_retry_rejected() == 0


def test_the_drain_puts_the_batch_back_when_the_database_fails(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    from recadmin.serving import served_log

    for i in range(3):
        served_log_push(record={"recommendation_id": f"q{i}", "scene": "home", "source": "model", "items": []})

    def down(rows: Any) -> None:
        raise OperationalError("the database is restarting")

    monkeypatch.setattr(served_log, "_insert", down)
    with pytest.raises(OperationalError):
        served_log_drain()

    assert served_log_backlog() == 3 and served_log.served_log_rejected()[0] == 0
    monkeypatch.undo()
    assert served_log_drain() == 3


@pytest.mark.redis
def test_the_served_log_goes_through_redis_when_configured(db: None) -> None:
    from django_redis import get_redis_connection

    served_log_push(record={"recommendation_id": "via-redis", "source": "fallback", "items": []})
    from recadmin.serving.served_log import _list_key

    assert get_redis_connection("default").llen(_list_key()) == 1
    served_log_drain()
    assert ServedRecommendation.objects.filter(recommendation_id="via-redis", source="fallback").exists()


def test_an_item_saved_outside_the_services_invalidates_too(shop: Any, django_capture_on_commit_callbacks: Any) -> None:
    items_metadata(["sku-003"])
    item = Item.objects.get(shop_id="sku-003")
    item.title = "Edited in the admin form"
    with django_capture_on_commit_callbacks(execute=True):
        item.save()

    assert items_metadata(["sku-003"])["sku-003"]["title"] == "Edited in the admin form"


def test_the_category_check_is_answered_by_the_hot_state_read(shop: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.cache import cache

    from recadmin.core.errors import ValidationError
    from recadmin.serving.services import validate_category
    from recadmin.serving.state import hot_state

    assert validate_category("skin") == "skin"  # cached from here on
    with pytest.raises(ValidationError):
        validate_category("no-such-category")
    state = hot_state(category="skin")
    assert state.category_known is True
    unknown = hot_state(category="no-such-category")
    assert unknown.category_known is False

    def no_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the category check read the cache again")

    monkeypatch.setattr(cache, "get", no_read)
    with CaptureQueriesContext(connection) as queries:
        assert validate_category("skin", state=state) == "skin"
        with pytest.raises(ValidationError):
            validate_category("no-such-category", state=unknown)
    assert len(queries) == 0
