"""The rule builder's rows become the API's JSON condition (and back), and the match count is the
engine's own answer over the catalog."""

from __future__ import annotations

import pytest

from recadmin.rules.builder import Row, condition_from_rows, condition_match_count, rows_from_condition
from recadmin.rules.conditions import ConditionError, validate_condition
from tests.rules.factories import CategoryFactory, ItemFactory


def test_one_row_is_a_single_leaf() -> None:
    condition = condition_from_rows("all", [Row("brand", "eq", " Kano ")])
    assert condition == {"field": "brand", "op": "eq", "value": "Kano"}


def test_several_rows_are_joined_by_all_or_any_with_typed_values() -> None:
    rows = [
        Row("category", "in_subtree", "skincare"),
        Row("price", "between", "10-50"),
        Row("brand", "in", "acme, globex"),
        Row("in_stock", "eq", "yes"),
        Row("attributes.vegan", "eq", "true"),
        Row("attributes.size", "in", "38, 39, M"),
        Row("price", "lt", "19.5"),
    ]
    condition = condition_from_rows("any", rows)
    assert condition == {
        "any": [
            {"field": "category", "op": "in_subtree", "value": "skincare"},
            {"field": "price", "op": "between", "value": [10, 50]},
            {"field": "brand", "op": "in", "value": ["acme", "globex"]},
            {"field": "in_stock", "op": "eq", "value": True},
            {"field": "attributes.vegan", "op": "eq", "value": True},
            {"field": "attributes.size", "op": "in", "value": [38, 39, "M"]},
            {"field": "price", "op": "lt", "value": 19.5},
        ]
    }
    validate_condition(condition)


def test_empty_rows_are_skipped_and_no_rows_is_an_empty_condition() -> None:
    assert condition_from_rows("all", [Row("", "", "")]) == {}
    assert condition_from_rows("all", [Row("", "", ""), Row("in_stock", "eq", "no")]) == {
        "field": "in_stock",
        "op": "eq",
        "value": False,
    }


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (Row("price", "between", "50-10"), "row 1: price min 50 is above max 10"),
        (Row("price", "gt", "cheap"), "row 1: expected a number"),
        (Row("brand", "lt", "x"), "row 1: operator 'lt' does not apply to 'brand'"),
        (Row("attributes.", "eq", "x"), "row 1: name the attribute"),
        (Row("in_stock", "eq", "maybe"), "row 1: expected yes or no"),
    ],
)
def test_a_bad_row_is_refused_naming_the_row(row: Row, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        condition_from_rows("all", [row])
    assert message in str(caught.value)


def test_rows_round_trip_through_the_json_condition() -> None:
    condition = {
        "all": [
            {"field": "price", "op": "between", "value": [10, 50]},
            {"field": "brand", "op": "in", "value": ["acme", "globex"]},
            {"field": "in_stock", "op": "eq", "value": False},
        ]
    }
    shown = rows_from_condition(condition)
    assert shown is not None
    match, rows = shown
    assert match == "all" and [r.value for r in rows] == ["10-50", "acme, globex", "no"]
    assert condition_from_rows(match, rows) == condition


def test_a_nested_or_negated_condition_is_left_to_the_json_box() -> None:
    assert rows_from_condition({"not": {"field": "in_stock", "op": "eq", "value": True}}) is None
    nested = {"all": [{"any": [{"field": "brand", "op": "eq", "value": "a"}]}]}
    assert rows_from_condition(nested) is None


@pytest.mark.django_db
def test_the_match_count_uses_the_engine_semantics_over_active_items() -> None:
    root = CategoryFactory(slug="beauty")
    child = CategoryFactory(slug="skincare", parent=root)
    ItemFactory(shop_id="a-1", brand="Kano", category=child, price=20)
    ItemFactory(shop_id="a-2", brand="kano", category=root, price=80)
    ItemFactory(shop_id="a-3", brand="Other", category=child, price=20)
    ItemFactory(shop_id="a-4", brand="Kano", category=child, price=20, is_active=False)

    by_brand = condition_match_count({"field": "brand", "op": "eq", "value": "KANO"})
    assert by_brand == {"count": 2, "total": 3, "sample": ["a-1", "a-2"]}
    subtree = condition_match_count(
        {
            "all": [
                {"field": "category", "op": "in_subtree", "value": "beauty"},
                {"field": "price", "op": "lt", "value": 50},
            ]
        }
    )
    assert subtree["count"] == 2 and subtree["sample"] == ["a-1", "a-3"]
