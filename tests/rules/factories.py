"""factory_boy factories for scenes and business rules (items and categories from tests/factories.py)."""

from __future__ import annotations

from typing import Any

import factory

from recadmin.rules.models import BusinessRule, Scene
from tests.factories import CategoryFactory, ItemFactory

__all__ = ["BusinessRuleFactory", "CategoryFactory", "ItemFactory", "SceneFactory"]


class SceneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Scene
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"scene-{n}")
    name = factory.LazyAttribute(lambda scene: scene.slug.replace("-", " ").title())
    default_n = 10
    candidate_multiplier = 5
    max_per_category = None
    mmr_enabled = False
    mmr_lambda = 0.7
    fallback = "overall"
    exclude_purchased_days = None
    exclude_current_item = True
    enabled = True


class BusinessRuleFactory(factory.django.DjangoModelFactory):
    """A valid boost by default. `scenes=[...]` and `pinned_items=[...]` set the many-to-many fields."""

    class Meta:
        model = BusinessRule
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"rule {n}")
    kind = "boost"
    condition = factory.LazyFunction(lambda: {"field": "in_stock", "op": "eq", "value": True})
    filter_mode = "exclude"
    weight = 1.5
    weight_mode = "multiply"
    position = None
    all_scenes = False
    priority = 0
    enabled = True

    class Params:
        pin = factory.Trait(kind="pin", condition=factory.LazyFunction(dict), weight=None, position=1)
        exclude_filter = factory.Trait(kind="filter", weight=None, filter_mode="exclude")

    @factory.post_generation
    def scenes(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create and extracted:
            self.scenes.set(extracted)

    @factory.post_generation
    def pinned_items(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create and extracted:
            self.pinned_items.set(extracted)
