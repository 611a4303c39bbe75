"""A rule in words, as the rule list and the dashboard say it."""

from __future__ import annotations

import datetime as dt

import pytest

from recadmin.rules.describe import condition_describe, rule_describe, rule_describe_instance
from tests.rules.factories import BusinessRuleFactory, ItemFactory, SceneFactory

NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)


def test_a_boost_says_what_where_and_until_when() -> None:
    text = rule_describe(
        kind="boost",
        condition={"field": "brand", "op": "eq", "value": "Kano"},
        weight=1.5,
        scenes=["home"],
        valid_until=dt.datetime(2026, 12, 31, tzinfo=dt.UTC),
        now=NOW,
    )
    assert text == "Boost brand Kano x1.5 on home, until 31 Dec"


def test_filters_buries_and_pins_in_words() -> None:
    hide = rule_describe(kind="filter", condition={"field": "in_stock", "op": "eq", "value": False}, all_scenes=True)
    assert hide == "Hide out of stock on all scenes"
    only = rule_describe(
        kind="filter",
        filter_mode="include",
        condition={"all": [{"field": "category", "op": "in_subtree", "value": "skincare"},
                           {"field": "price", "op": "between", "value": [10, 50]}]},
        scenes=["cart", "home"],
    )  # fmt: skip
    assert only == "Show only category skincare (with subcategories) and price 10-50 on cart, home"
    bury = rule_describe(
        kind="bury",
        condition={"field": "price", "op": "gt", "value": 100},
        weight=2,
        weight_mode="add",
        scenes=["home"],
    )
    assert bury == "Bury price over 100 -2 on home"
    pin = rule_describe(
        kind="pin", condition={}, position=2, pinned=["demo-sku-01999", "demo-sku-00001"], scenes=["home"]
    )
    assert pin == "Pin demo-sku-01999, demo-sku-00001 at position 2 on home"


def test_a_future_start_another_year_and_a_disabled_rule_are_said() -> None:
    text = rule_describe(
        kind="boost",
        condition={"not": {"field": "brand", "op": "in", "value": ["a", "b"]}},
        weight=3,
        scenes=["home"],
        valid_from=dt.datetime(2027, 1, 5, tzinfo=dt.UTC),
        enabled=False,
        now=NOW,
    )
    assert text == "Boost not brand a or b x3 on home, from 5 Jan 2027 (disabled)"
    assert condition_describe({"any": [{"field": "attributes.vegan", "op": "exists", "value": True},
                                       {"field": "attributes.color", "op": "ne", "value": "red"}]}) == (
        "(with vegan or color not red)"
    )  # fmt: skip


@pytest.mark.django_db
def test_a_saved_pin_is_described_by_the_shop_ids_of_its_items() -> None:
    home = SceneFactory(slug="home")
    rule = BusinessRuleFactory(
        pin=True, position=1, scenes=[home], pinned_items=[ItemFactory(shop_id="demo-sku-01999")]
    )
    assert rule_describe_instance(rule) == "Pin demo-sku-01999 at position 1 on home"
