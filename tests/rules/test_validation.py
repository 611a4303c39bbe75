"""The one validator: every way a rule can be inert or malformed is refused, naming the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError

from recadmin.core.errors import ValidationError
from recadmin.rules.conditions import ConditionError, compile_condition, validate_condition
from recadmin.rules.engine import Candidate
from recadmin.rules.models import BusinessRule
from recadmin.rules.validation import RuleSpec, rule_validate
from tests.rules.factories import CategoryFactory, ItemFactory, SceneFactory

pytestmark = pytest.mark.django_db

SKINCARE = {"field": "category", "op": "in_subtree", "value": "skincare"}


@pytest.fixture(autouse=True)
def _categories() -> None:
    beauty = CategoryFactory(slug="beauty", name="Beauty")
    CategoryFactory(slug="skincare", name="Skincare", parent=beauty)


def _spec(**overrides: Any) -> RuleSpec:
    values: dict[str, Any] = {"name": "r", "kind": "boost", "condition": SKINCARE, "weight": 1.5, "scenes": ["x"]}
    values.update(overrides)
    return RuleSpec(**values)


def _refusal(spec: RuleSpec) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        rule_validate(spec)
    return caught.value


BAD_CONDITIONS = [
    ({"field": "colour", "op": "eq", "value": "red"}, "field", "unknown field 'colour'"),
    ({"field": "price", "op": "contains", "value": 3}, "op", "operator 'contains' does not apply to 'price'"),
    ({"field": "price", "op": "lt", "value": "cheap"}, "value", "expected a number"),
    ({"field": "price", "op": "between", "value": [50, 10]}, "value", "price min 50 is above max 10"),
    ({"field": "price", "op": "between", "value": [10]}, "value", "expected [min, max]"),
    ({"field": "price", "op": "gt", "value": -1}, "value", "never negative"),
    ({"field": "in_stock", "op": "eq", "value": "yes"}, "value", "expected true or false"),
    ({"field": "brand", "op": "in", "value": []}, "value", "the list is empty"),
    ({"field": "brand", "op": "in", "value": ["a", 3]}, "value[1]", "expected non-empty strings"),
    ({"field": "attributes.", "op": "eq", "value": "x"}, "field", "name the attribute"),
    ({"field": "attributes.color", "op": "eq", "value": {"a": 1}}, "value", "expected a string, number or boolean"),
    ({"field": "brand", "op": "eq"}, "value", "this key is required"),
    ({"field": "brand", "value": "x"}, "op", "this key is required"),
    ({"field": "brand", "op": "eq", "value": "x", "extra": 1}, "", "unknown key(s) ['extra']"),
    ({"all": []}, "all", "expected a non-empty list"),
    ({"all": [SKINCARE], "any": [SKINCARE]}, "", "must be the only key"),
    (["not", "an", "object"], "", "expected an object"),
]


@pytest.mark.parametrize(("condition", "where", "message"), BAD_CONDITIONS)
def test_it_refuses_a_condition_that_cannot_match_naming_where(condition: Any, where: str, message: str) -> None:
    error = _refusal(_spec(condition={"all": [SKINCARE, condition]}))
    text = error.extra["fields"]["condition"][0]
    assert message in text
    assert text.startswith(f"all[1].{where}" if where else "all[1]")
    assert error.message.startswith("condition: ")


def test_it_refuses_an_unknown_category_slug() -> None:
    error = _refusal(_spec(condition={"field": "category", "op": "in_subtree", "value": ["skincare", "nope"]}))
    assert error.extra["fields"]["condition"] == ["unknown category slug(s): nope"]


def test_it_accepts_every_documented_operator() -> None:
    condition = {
        "all": [
            {"field": "category", "op": "in_subtree", "value": ["beauty"]},
            {"field": "category", "op": "eq", "value": "skincare"},
            {"field": "category", "op": "in", "value": ["skincare"]},
            {"field": "brand", "op": "ne", "value": "x"},
            {"field": "brand", "op": "not_in", "value": ["x"]},
            {"field": "price", "op": "between", "value": [0, 0]},
            {"field": "active", "op": "eq", "value": True},
            {"field": "item", "op": "in", "value": ["sku-1"]},
            {"any": [{"field": "attributes.tags", "op": "in", "value": ["vegan", 1, True]}]},
            {"not": {"field": "attributes.sale", "op": "exists", "value": True}},
        ]
    }
    rule_validate(_spec(condition=condition))


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"kind": "pin", "condition": {}, "weight": None, "position": None, "pinned_items": ["i"]}, "position",
         "needs a position"),
        ({"kind": "pin", "condition": {}, "weight": None, "position": 1, "pinned_items": []}, "pinned_items",
         "at least one item"),
        ({"kind": "pin", "condition": SKINCARE, "weight": None, "position": 1, "pinned_items": ["i"]}, "condition",
         "takes no condition"),
        ({"kind": "boost", "weight": None}, "weight", "needs a weight"),
        ({"kind": "boost", "weight": 0.5}, "weight", "above 1"),
        ({"kind": "bury", "weight": -1, "weight_mode": "add"}, "weight", "above 0"),
        ({"kind": "filter", "weight": 2.0}, "weight", "only boosts and buries"),
        ({"kind": "filter", "weight": None, "filter_mode": "sometimes"}, "filter_mode", "'include' or 'exclude'"),
        ({"kind": "boost", "weight_mode": "pow"}, "weight_mode", "'multiply' or 'add'"),
        ({"kind": "filter", "weight": None, "condition": {}}, "condition", "a condition is required"),
        ({"kind": "boost", "position": 3}, "position", "only pins"),
        ({"kind": "teleport"}, "kind", "unknown kind"),
        ({"name": "  "}, "name", "a name is required"),
        ({"scenes": []}, "scenes", "at least one scene"),
        (
            {"valid_from": dt.datetime(2026, 2, 1, tzinfo=dt.UTC), "valid_until": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},  # noqa: E501
            "valid_until",
            "after valid_from",
        ),
    ],
)  # fmt: skip
def test_it_refuses_an_inert_rule_naming_the_field(overrides: dict[str, Any], field: str, message: str) -> None:
    error = _refusal(_spec(**overrides))
    assert message in " ".join(error.extra["fields"][field])
    # The summary names the first offending field.
    assert error.message.startswith(f"{next(iter(error.extra['fields']))}: ")


def test_all_scenes_needs_no_scene_list() -> None:
    rule_validate(_spec(scenes=[], all_scenes=True))


def test_the_model_clean_uses_the_same_validator() -> None:
    condition = {"field": "price", "op": "between", "value": [9, 1]}
    rule = BusinessRule(name="x", kind="boost", weight=2.0, condition=condition)
    with pytest.raises(DjangoValidationError) as caught:
        rule.full_clean()
    assert "price min 9 is above max 1" in caught.value.message_dict["condition"][0]


def test_the_model_clean_accepts_a_valid_pin_before_its_items_exist() -> None:
    SceneFactory(slug="home")
    ItemFactory(shop_id="sku-1")
    BusinessRule(name="pin", kind="pin", position=1, condition={}).full_clean()


def test_conditions_match_as_documented() -> None:
    item = Candidate(
        item_id="sku-1", score=0.0, category="skincare", category_path=("beauty", "skincare"), brand="Acme",
        price=12.5, in_stock=True, active=True, attributes={"tags": ["vegan", "new"], "size": 50},
    )  # fmt: skip
    matches = {
        "subtree of the root": {"field": "category", "op": "in_subtree", "value": "beauty"},
        "brand folds case": {"field": "brand", "op": "eq", "value": "ACME"},
        "price inclusive": {"field": "price", "op": "between", "value": [12.5, 13]},
        "list attribute contains": {"field": "attributes.tags", "op": "eq", "value": "vegan"},
        "attribute in": {"field": "attributes.size", "op": "in", "value": [30, 50]},
        "not": {"not": {"field": "in_stock", "op": "eq", "value": False}},
        "any": {"any": [{"field": "item", "op": "eq", "value": "x"}, {"field": "item", "op": "eq", "value": "sku-1"}]},
    }
    misses = {
        "exact category is not the parent": {"field": "category", "op": "eq", "value": "beauty"},
        "price bound exclusive": {"field": "price", "op": "lt", "value": 12.5},
        "missing attribute": {"field": "attributes.color", "op": "exists", "value": True},
        "brand not in": {"field": "brand", "op": "not_in", "value": ["acme"]},
    }
    for name, condition in {**matches, **misses}.items():
        validate_condition(condition)
        assert compile_condition(condition)(item) is (name in matches), name
    no_price = Candidate(item_id="x", score=0.0, price=None)
    assert compile_condition({"field": "price", "op": "lt", "value": 100})(no_price) is False


def test_a_condition_error_carries_its_path() -> None:
    with pytest.raises(ConditionError) as caught:
        validate_condition({"any": [SKINCARE, {"not": {"field": "price", "op": "lt", "value": None}}]})
    assert caught.value.path == "any[1].not.value"
