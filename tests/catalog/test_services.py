from __future__ import annotations

from decimal import Decimal

import pytest

from recadmin.catalog import services
from recadmin.catalog.models import Category, Customer, Item
from recadmin.core.errors import Conflict, ValidationError
from recadmin.events.models import Event
from tests.factories import CategoryFactory, CustomerFactory, EventFactory, ItemFactory

pytestmark = pytest.mark.django_db


def test_category_update_moves_the_whole_subtree() -> None:
    beauty = services.category_create(name="Beauty", slug="beauty")
    hair = services.category_create(name="Hair", slug="hair", parent=beauty)
    services.category_create(name="Oils", slug="oils", parent=hair)
    care = services.category_create(name="Care", slug="care")
    services.category_update(category=hair, parent=care)
    oils = Category.objects.get(slug="oils")
    assert oils.path == "/care/hair/oils/"
    assert oils.depth == 2


def test_category_rebuild_paths_recomputes_paths_and_depths_from_the_parents() -> None:
    beauty = services.category_create(name="Beauty", slug="beauty")
    hair = services.category_create(name="Hair", slug="hair", parent=beauty)
    services.category_create(name="Oils", slug="oils", parent=hair)
    # A raw edit that bypasses the services: the parent moves, the paths below it do not.
    Category.objects.filter(pk=hair.pk).update(parent=None)

    assert services.category_rebuild_paths() == 2
    rows = {c.slug: (c.path, c.depth) for c in Category.objects.all()}
    assert rows == {"beauty": ("/beauty/", 0), "hair": ("/hair/", 0), "oils": ("/hair/oils/", 1)}
    assert services.category_rebuild_paths() == 0


def test_category_update_moving_to_the_root_lowers_the_depth_of_the_subtree() -> None:
    beauty = services.category_create(name="Beauty", slug="beauty")
    hair = services.category_create(name="Hair", slug="hair", parent=beauty)
    services.category_create(name="Oils", slug="oils", parent=hair)
    services.category_create(name="Argan", slug="argan", parent=Category.objects.get(slug="oils"))
    services.category_update(category=hair, parent=None)
    depths = dict(Category.objects.values_list("slug", "depth"))
    assert depths == {"beauty": 0, "hair": 0, "oils": 1, "argan": 2}


def test_category_update_renaming_a_slug_rewrites_descendant_paths() -> None:
    beauty = services.category_create(name="Beauty", slug="beauty")
    services.category_create(name="Hair", slug="hair", parent=beauty)
    services.category_update(category=beauty, slug="cosmetics")
    assert Category.objects.get(slug="hair").path == "/cosmetics/hair/"


def test_category_cannot_move_below_itself() -> None:
    beauty = services.category_create(name="Beauty", slug="beauty")
    hair = services.category_create(name="Hair", slug="hair", parent=beauty)
    with pytest.raises(ValidationError):
        services.category_update(category=beauty, parent=hair)


def test_item_create_refuses_an_existing_shop_id() -> None:
    ItemFactory(shop_id="SKU-1")
    with pytest.raises(Conflict):
        services.item_create(shop_id="SKU-1", data={"title": "again"})


def test_item_upsert_updates_only_the_fields_given() -> None:
    ItemFactory(shop_id="SKU-1", title="Old", brand="acme")
    item, created = services.item_upsert(shop_id="SKU-1", data={"title": "New"})
    assert not created
    item.refresh_from_db()
    assert (item.title, item.brand) == ("New", "acme")


def test_item_upsert_derives_in_stock_from_quantity() -> None:
    item, created = services.item_upsert(shop_id="SKU-2", data={"title": "T", "stock_quantity": 0})
    assert created and item.in_stock is False


def test_item_upsert_rejects_an_unknown_category_naming_the_field() -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.item_upsert(shop_id="SKU-3", data={"category": "nope"})
    assert "category" in excinfo.value.extra["fields"]


def test_item_deactivate_keeps_the_items_events() -> None:
    event = EventFactory()
    services.item_deactivate(item=event.item)
    event.item.refresh_from_db()
    assert event.item.is_active is False
    assert Event.objects.filter(pk=event.pk).exists()


def test_items_bulk_upsert_creates_updates_and_reports_bad_rows() -> None:
    CategoryFactory(slug="hair")
    ItemFactory(shop_id="A", price=Decimal("5"))
    result = services.items_bulk_upsert(
        rows=[
            {"shop_id": "A", "price": "7.50"},
            {"shop_id": "B", "category": "hair", "title": "Brush"},
            {"shop_id": "C", "category": "unknown"},
            {"title": "no id"},
            {"shop_id": "D", "brand": "no title"},
        ]
    )
    assert (result.created, result.updated) == (1, 1)
    assert [(e["index"], e["field"]) for e in result.errors] == [(2, "category"), (3, "shop_id"), (4, "title")]
    assert not Item.objects.filter(shop_id="D").exists()
    assert Item.objects.get(shop_id="A").price == Decimal("7.50")
    assert Item.objects.get(shop_id="B").category.slug == "hair"
    assert not Item.objects.filter(shop_id="C").exists()


def test_customers_ensure_creates_missing_customers_once() -> None:
    CustomerFactory(shop_id="known")
    ids = services.customers_ensure(shop_ids=["known", "new-1", "new-2"])
    again = services.customers_ensure(shop_ids=["new-1"])
    assert set(ids) == {"known", "new-1", "new-2"}
    assert again["new-1"] == ids["new-1"]
    assert Customer.objects.count() == 3


def test_customer_update_merges_attributes() -> None:
    customer = CustomerFactory(attributes={"segment": "new", "country": "DE"})
    services.customer_update(customer=customer, attributes={"segment": "vip"})
    customer.refresh_from_db()
    assert customer.attributes == {"segment": "vip", "country": "DE"}


def test_customers_bulk_upsert_replaces_given_attributes() -> None:
    CustomerFactory(shop_id="c1", attributes={"a": 1})
    result = services.customers_bulk_upsert(rows=[{"shop_id": "c1", "attributes": {"b": 2}}, {"shop_id": "c2"}])
    assert (result.created, result.updated) == (1, 1)
    assert Customer.objects.get(shop_id="c1").attributes == {"b": 2}
