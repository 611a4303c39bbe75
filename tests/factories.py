"""factory_boy factories for the catalog and events. Other areas import these.

CategoryFactory keeps the materialised `path` in step with `parent`, as the services do.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone

from recadmin.catalog.models import Category, Customer, Item
from recadmin.events.models import Event


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        django_get_or_create = ("shop_id",)

    shop_id = factory.Sequence(lambda n: f"cust-{n}")
    attributes = factory.LazyFunction(dict)


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")
    parent = None

    @classmethod
    def _create(cls, model_class: type[Category], *args: Any, **kwargs: Any) -> Category:
        category = model_class(*args, **kwargs)
        category.path = category.compute_path()
        category.depth = category.path.count("/") - 2
        category.save()
        return category


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item
        django_get_or_create = ("shop_id",)

    shop_id = factory.Sequence(lambda n: f"sku-{n}")
    title = factory.Sequence(lambda n: f"Item {n}")
    category = factory.SubFactory(CategoryFactory)
    brand = factory.Iterator(["acme", "globex", "initech"])
    price = factory.Sequence(lambda n: Decimal(10 + n % 90) + Decimal("0.99"))
    currency = "USD"
    stock_quantity = 10
    in_stock = True
    is_active = True
    attributes = factory.LazyFunction(dict)


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    customer = factory.SubFactory(CustomerFactory)
    item = factory.SubFactory(ItemFactory)
    type = "view"
    value = None
    occurred_at = factory.Sequence(lambda n: timezone.now() - dt.timedelta(minutes=10_000 - n % 10_000))
    scene = ""
    context = factory.LazyFunction(dict)
    recommendation_id = None
    event_id = factory.Sequence(lambda n: f"evt-{n}")
