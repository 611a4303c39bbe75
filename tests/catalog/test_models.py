from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from recadmin.catalog.models import Category, Item
from recadmin.catalog.selectors import category_subtree, category_subtree_ids
from tests.factories import CategoryFactory, ItemFactory

pytestmark = pytest.mark.django_db


def test_category_path_is_the_chain_of_slugs_from_the_root() -> None:
    root = CategoryFactory(slug="beauty")
    child = CategoryFactory(slug="hair-care", parent=root)
    leaf = CategoryFactory(slug="oils", parent=child)
    assert leaf.path == "/beauty/hair-care/oils/"
    assert leaf.depth == 2


def test_category_subtree_contains_descendants_only() -> None:
    root = CategoryFactory(slug="beauty")
    child = CategoryFactory(slug="hair", parent=root)
    CategoryFactory(slug="oils", parent=child)
    CategoryFactory(slug="beauty-tools")  # shares a prefix of the slug but not of the path
    assert set(category_subtree(category=root).values_list("slug", flat=True)) == {"beauty", "hair", "oils"}
    assert len(category_subtree_ids(slug="hair")) == 2
    assert category_subtree_ids(slug="missing") == []


def test_category_slug_is_unique() -> None:
    CategoryFactory(slug="books")
    with pytest.raises(IntegrityError), transaction.atomic():
        Category.objects.create(name="Books again", slug="books", path="/books/")


def test_item_shop_id_is_unique() -> None:
    ItemFactory(shop_id="SKU-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Item.objects.create(shop_id="SKU-1")


def test_database_refuses_a_negative_price() -> None:
    item = ItemFactory()
    item.price = Decimal("-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        item.save()


def test_database_refuses_a_negative_stock_quantity() -> None:
    item = ItemFactory()
    item.stock_quantity = -3
    with pytest.raises(IntegrityError), transaction.atomic():
        item.save()


def test_model_validation_names_the_negative_price() -> None:
    item = ItemFactory.build(price=Decimal("-0.01"), category=None)
    with pytest.raises(DjangoValidationError) as excinfo:
        item.full_clean()
    assert "price" in excinfo.value.message_dict


def test_item_price_may_be_unknown() -> None:
    item = ItemFactory(price=None)
    item.refresh_from_db()
    assert item.price is None
