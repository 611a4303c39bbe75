"""Property-based tests of the condition language (pure, no database)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from recadmin.rules.conditions import ConditionError, compile_condition, validate_condition
from recadmin.rules.engine import Candidate

settings.register_profile("conditions", deadline=None, max_examples=80)

SLUGS = ["beauty", "skincare", "haircare", "kitchen"]
text = st.sampled_from(["acme", "ACME", "globex", "red", "blue"])
scalar = st.one_of(text, st.integers(0, 5), st.booleans())

leaves = st.one_of(
    st.builds(lambda v: {"field": "category", "op": "in_subtree", "value": v}, st.sampled_from(SLUGS)),
    st.builds(lambda v: {"field": "category", "op": "in", "value": v}, st.lists(st.sampled_from(SLUGS), min_size=1)),
    st.builds(lambda op, v: {"field": "brand", "op": op, "value": v}, st.sampled_from(["eq", "ne"]), text),
    st.builds(
        lambda op, v: {"field": "brand", "op": op, "value": v},
        st.sampled_from(["in", "not_in"]),
        st.lists(text, min_size=1),
    ),
    st.builds(
        lambda op, v: {"field": "price", "op": op, "value": v},
        st.sampled_from(["lt", "lte", "gt", "gte"]),
        st.floats(0, 100),
    ),
    st.builds(
        lambda a, b: {"field": "price", "op": "between", "value": sorted([a, b])}, st.floats(0, 100), st.floats(0, 100)
    ),
    st.builds(lambda v: {"field": "in_stock", "op": "eq", "value": v}, st.booleans()),
    st.builds(lambda op, v: {"field": "attributes.color", "op": op, "value": v}, st.sampled_from(["eq", "ne"]), scalar),
    st.builds(lambda v: {"field": "attributes.tags", "op": "in", "value": v}, st.lists(scalar, min_size=1)),
    st.builds(lambda v: {"field": "attributes.color", "op": "exists", "value": v}, st.booleans()),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)
items = st.builds(
    lambda category, brand, price, stock, attrs: Candidate(
        item_id="x",
        score=0.0,
        category=category,
        category_path=("beauty", category) if category in ("skincare", "haircare") else ("home", category),
        brand=brand,
        price=price,
        in_stock=stock,
        attributes=attrs,
    ),
    st.sampled_from(["skincare", "haircare", "kitchen"]),
    text,
    st.one_of(st.none(), st.floats(0, 100)),
    st.booleans(),
    st.dictionaries(st.sampled_from(["color", "tags"]), st.one_of(scalar, st.lists(scalar, max_size=3)), max_size=2),
)


@settings(settings.get_profile("conditions"))
@given(conditions, items)
def test_every_valid_condition_compiles_and_not_negates_it(condition: dict[str, Any], item: Candidate) -> None:
    validate_condition(condition)
    result = compile_condition(condition)(item)
    assert isinstance(result, bool)
    assert compile_condition({"not": condition})(item) is (not result)
    assert compile_condition({"all": [condition, condition]})(item) is result
    assert compile_condition({"any": [condition, {"not": condition}]})(item) is True


@settings(settings.get_profile("conditions"))
@given(
    st.recursive(
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(["all", "any", "not", "field", "op", "value", "x"]), inner, max_size=3),
        ),
        max_leaves=8,
    )
)
def test_arbitrary_json_is_either_valid_or_refused_with_a_condition_error(blob: Any) -> None:
    try:
        validate_condition(blob)
    except ConditionError as exc:
        assert exc.message
    else:
        compile_condition(blob)
