"""Property-based tests of the pure rules engine (no database)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from recadmin.rules.conditions import compile_condition, compile_condition_batch
from recadmin.rules.engine import (
    Candidate,
    CompiledRule,
    Context,
    RuleSet,
    SceneSettings,
    apply_rules,
    raw_ranking,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
# Two small trees: root "beauty" (skincare, haircare) and root "home" (kitchen, garden).
TREE = {
    "skincare": ("beauty", "skincare"),
    "haircare": ("beauty", "haircare"),
    "kitchen": ("home", "kitchen"),
    "garden": ("home", "garden"),
}
BRANDS = ["acme", "globex", "initech"]

settings.register_profile("rules", deadline=None, max_examples=60)
settings.load_profile("rules")

scores = st.floats(min_value=-50, max_value=50, allow_nan=False, width=32)


@st.composite
def candidate_lists(draw: st.DrawFn, min_size: int = 0, max_size: int = 30, duplicates: bool = False) -> list:
    size = draw(st.integers(min_size, max_size))
    ids = [f"i{index}" for index in range(size)]
    if duplicates and size:
        ids += draw(st.lists(st.sampled_from(ids), max_size=5))
    result = []
    for item_id in ids:
        category = draw(st.sampled_from(sorted(TREE)))
        result.append(
            Candidate(
                item_id=item_id,
                score=draw(scores),
                category=category,
                category_path=TREE[category],
                brand=draw(st.sampled_from(BRANDS)),
                price=draw(st.one_of(st.none(), st.floats(0, 200, allow_nan=False))),
                in_stock=draw(st.booleans()),
                attributes={},
                embedding=tuple(draw(st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=3, max_size=3))),
            )
        )
    return result


def _scene(**overrides: object) -> SceneSettings:
    return SceneSettings(slug="home", **overrides)  # type: ignore[arg-type]


def _ids(ranking) -> list[str]:  # type: ignore[no-untyped-def]
    return [item.item_id for item in ranking.items]


@given(candidate_lists(), st.sampled_from(["beauty", "skincare", "kitchen", "home"]), st.booleans(), st.integers(1, 3))
def test_a_filtered_category_never_appears(candidates, slug, mmr, cap) -> None:  # type: ignore[no-untyped-def]
    condition = {"field": "category", "op": "in_subtree", "value": slug}
    rule = CompiledRule(id=1, name="no", kind="filter", condition=condition)
    ranking = apply_rules(
        candidates, RuleSet("home", (rule,)), _scene(mmr_enabled=mmr, max_per_category=cap), Context(now=NOW), n=50
    )
    assert all(slug not in item.candidate.category_path for item in ranking.items)
    removed = sum(1 for c in candidates if slug in c.category_path)
    assert ranking.removed.get("rule:1", 0) == removed


@given(candidate_lists(), st.sampled_from(sorted(TREE)))
def test_an_include_filter_keeps_only_matching_items(candidates, slug) -> None:  # type: ignore[no-untyped-def]
    rule = CompiledRule(
        id=1, name="only", kind="filter", filter_mode="include",
        condition={"field": "category", "op": "eq", "value": slug},
    )  # fmt: skip
    ranking = apply_rules(candidates, RuleSet("home", (rule,)), _scene(), Context(now=NOW), n=50)
    assert {item.category for item in ranking.items} <= {slug}
    assert len(ranking.items) == sum(1 for c in candidates if c.category == slug)


@given(candidate_lists(min_size=1), st.data(), st.integers(1, 40), st.booleans())
def test_a_pinned_item_is_at_its_position(candidates, data, position, mmr) -> None:  # type: ignore[no-untyped-def]
    pinned = data.draw(st.sampled_from([c.item_id for c in candidates]))
    rule = CompiledRule(id=7, name="pin", kind="pin", position=position, pinned_items=(pinned,))
    ranking = apply_rules(candidates, RuleSet("home", (rule,)), _scene(mmr_enabled=mmr), Context(now=NOW), n=100)
    ids = _ids(ranking)
    assert ids.index(pinned) + 1 == min(position, len(ids))
    placed = ranking.items[ids.index(pinned)]
    assert {"type": "pinned", "rule": 7, "rule_name": "pin", "position": placed.position} in placed.reasons


@given(candidate_lists(), st.integers(1, 4), st.booleans(), st.floats(0, 1))
def test_no_category_exceeds_its_cap(candidates, cap, mmr, lam) -> None:  # type: ignore[no-untyped-def]
    ranking = apply_rules(
        candidates, RuleSet("home"), _scene(max_per_category=cap, mmr_enabled=mmr, mmr_lambda=lam),
        Context(now=NOW), n=100,
    )  # fmt: skip
    counts: dict[str | None, int] = {}
    for item in ranking.items:
        counts[item.category] = counts.get(item.category, 0) + 1
    assert all(count <= cap for count in counts.values())
    # The cap removes only what it must: every category present fills up to the cap.
    for category in {c.category for c in candidates}:
        available = sum(1 for c in candidates if c.category == category)
        assert counts.get(category, 0) == min(cap, available)


@given(
    candidate_lists(duplicates=True),
    st.integers(0, 20),
    st.integers(0, 30),
    st.one_of(st.none(), st.integers(1, 3)),
    st.booleans(),
)
def test_n_and_offset_are_respected_and_pages_are_slices_of_one_list(candidates, n, offset, cap, mmr) -> None:  # type: ignore[no-untyped-def]
    scene = _scene(max_per_category=cap, mmr_enabled=mmr, mmr_lambda=0.5)
    pin = CompiledRule(id=3, name="pin", kind="pin", position=2, pinned_items=("i0",))
    rules = RuleSet("home", (pin,))
    page = apply_rules(candidates, rules, scene, Context(now=NOW), n=n, offset=offset)
    whole = apply_rules(candidates, rules, scene, Context(now=NOW), n=offset + n + 10)
    assert len(page.items) <= n
    assert _ids(page) == _ids(whole)[offset : offset + n]
    assert [item.position for item in page.items] == list(range(offset + 1, offset + 1 + len(page.items)))
    # The same inputs give the same page.
    assert _ids(apply_rules(candidates, rules, scene, Context(now=NOW), n=n, offset=offset)) == _ids(page)


@given(candidate_lists(duplicates=True), st.booleans(), st.one_of(st.none(), st.integers(1, 3)))
def test_no_item_appears_twice(candidates, mmr, cap) -> None:  # type: ignore[no-untyped-def]
    pins = (
        CompiledRule(id=1, name="a", kind="pin", position=1, pinned_items=("i0", "i1")),
        CompiledRule(id=2, name="b", kind="pin", position=2, pinned_items=("i1", "i2")),
    )
    ranking = apply_rules(
        candidates, RuleSet("home", pins), _scene(mmr_enabled=mmr, max_per_category=cap), Context(now=NOW), n=100
    )
    ids = _ids(ranking)
    assert len(ids) == len(set(ids))
    assert set(ids) <= {c.item_id for c in candidates}


@given(
    candidate_lists(),
    st.sampled_from(["filter", "boost", "bury", "pin"]),
    st.booleans(),
    st.booleans(),
)
def test_rules_outside_their_window_or_disabled_do_nothing(candidates, kind, expired, disabled) -> None:  # type: ignore[no-untyped-def]
    hour = 3600.0
    window = (NOW.timestamp() - 10 * hour, NOW.timestamp() - hour) if expired else (NOW.timestamp() + hour, None)
    rule = CompiledRule(
        id=1,
        name="inert",
        kind=kind,
        condition=None if kind == "pin" else {"field": "brand", "op": "eq", "value": "acme"},
        weight=3.0,
        position=1 if kind == "pin" else None,
        pinned_items=("i3",) if kind == "pin" else (),
        valid_from=None if disabled else window[0],
        valid_until=None if disabled else window[1],
        enabled=not disabled,
    )
    with_rule = apply_rules(candidates, RuleSet("home", (rule,)), _scene(), Context(now=NOW), n=50)
    without = apply_rules(candidates, RuleSet("home"), _scene(), Context(now=NOW), n=50)
    assert [(i.item_id, i.score, i.reasons) for i in with_rule.items] == [
        (i.item_id, i.score, i.reasons) for i in without.items
    ]
    assert with_rule.applied_rules == ()


@given(candidate_lists(min_size=1), st.data(), st.sampled_from(["multiply", "add"]), st.floats(1.01, 10))
def test_a_boost_never_moves_an_item_down_and_a_bury_never_up(candidates, data, mode, weight) -> None:  # type: ignore[no-untyped-def]
    target = data.draw(st.sampled_from([c.item_id for c in candidates]))
    condition = {"field": "item", "op": "eq", "value": target}
    baseline = _ids(apply_rules(candidates, RuleSet("home"), _scene(), Context(now=NOW), n=100))
    for kind, compare in (("boost", int.__le__), ("bury", int.__ge__)):
        rule = CompiledRule(id=1, name=kind, kind=kind, condition=condition, weight=weight, weight_mode=mode)
        ranking = apply_rules(candidates, RuleSet("home", (rule,)), _scene(), Context(now=NOW), n=100)
        assert compare(_ids(ranking).index(target), baseline.index(target))
        moved = ranking.items[_ids(ranking).index(target)]
        assert moved.reasons[-1]["type"] == ("boosted" if kind == "boost" else "buried")
        if kind == "boost":
            assert moved.score >= next(c.score for c in candidates if c.item_id == target)


@given(candidate_lists())
def test_mmr_with_lambda_one_keeps_the_model_order(candidates) -> None:  # type: ignore[no-untyped-def]
    assume(len({c.score for c in candidates}) == len(candidates))  # ties may break either way in MMR
    mmr = apply_rules(candidates, RuleSet("home"), _scene(mmr_enabled=True, mmr_lambda=1.0), Context(now=NOW), n=100)
    assert _ids(mmr) == [item.item_id for item in raw_ranking(candidates, n=100)]


@given(candidate_lists(duplicates=True), st.integers(0, 10), st.integers(0, 10))
def test_the_raw_ranking_is_the_model_order_without_duplicates(candidates, n, offset) -> None:  # type: ignore[no-untyped-def]
    raw = raw_ranking(candidates, n=n, offset=offset)
    best: dict[str, float] = {}
    for c in candidates:
        best[c.item_id] = max(best.get(c.item_id, c.score), c.score)
    ordered = sorted(best.items(), key=lambda pair: -pair[1])
    assert [item.score for item in raw] == [score for _, score in ordered][offset : offset + n]
    assert len({item.item_id for item in raw}) == len(raw)


# ---------------------------------------------------------------------------------------------
# The fast paths against their plain definitions.

tied_scores = st.one_of(st.sampled_from([0.0, 0.5, 1.0, -1.0]), scores)
unit_parts = st.sampled_from([0.0, 1.0, -1.0, 0.5])


@st.composite
def tie_heavy_candidates(draw: st.DrawFn) -> list:
    size = draw(st.integers(0, 25))
    vectors = draw(st.lists(st.tuples(unit_parts, unit_parts, unit_parts), min_size=1, max_size=4))
    result = []
    for index in range(size):
        category = draw(st.sampled_from(sorted(TREE)))
        result.append(
            Candidate(
                item_id=f"i{index}",
                score=draw(tied_scores),
                category=category,
                category_path=TREE[category],
                embedding=draw(st.sampled_from(vectors)),
            )
        )
    return result


def _reference_mmr_ids(candidates: list, cap: int | None, lam: float, n: int) -> list[str]:
    """The MMR list by its definition, recomputed from scratch at every position (similarities
    as `unit @ unit[placed]`, the product the engine uses, so ties compare the same floats)."""
    pool = sorted(enumerate(candidates), key=lambda pair: (-pair[1].score, pair[0]))
    pool = [candidate for _, candidate in pool]
    matrix = np.asarray([c.embedding for c in pool], dtype=np.float64).reshape(len(pool), 3)
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    unit = matrix / norms[:, None]
    values = np.array([c.score for c in pool], dtype=np.float64)
    span = values.max() - values.min() if len(pool) else 0.0
    relevance = (values - values.min()) / span if span > 0 else np.ones(len(pool))
    placed: list[int] = []
    counts: dict[str, int] = {}
    while len(placed) < n:
        best, best_value = None, -np.inf
        for index, candidate in enumerate(pool):
            if index in placed or (cap and counts.get(candidate.category, 0) >= cap):
                continue
            similarity = max((float((unit @ unit[other])[index]) for other in placed), default=0.0)
            value = lam * relevance[index] - (1 - lam) * similarity
            if best is None or value > best_value:
                best, best_value = index, value
        if best is None:
            break
        placed.append(best)
        counts[pool[best].category] = counts.get(pool[best].category, 0) + 1
    return [pool[index].item_id for index in placed]


@given(tie_heavy_candidates(), st.one_of(st.none(), st.integers(1, 3)), st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9]))
def test_mmr_follows_its_definition_ties_included(candidates, cap, lam) -> None:  # type: ignore[no-untyped-def]
    scene = _scene(mmr_enabled=True, mmr_lambda=lam, max_per_category=cap)
    ranking = apply_rules(candidates, RuleSet("home"), scene, Context(now=NOW), n=30)
    expected = _reference_mmr_ids(candidates, cap, lam, 30)
    assert _ids(ranking) == expected


@given(tie_heavy_candidates(), st.booleans(), st.one_of(st.none(), st.integers(1, 3)), st.integers(0, 5))
def test_numpy_embeddings_give_the_same_page_as_tuples(candidates, mmr, cap, offset) -> None:  # type: ignore[no-untyped-def]
    arrays = [dataclasses.replace(c, embedding=np.asarray(c.embedding, dtype=np.float64)) for c in candidates]
    pin = CompiledRule(id=9, name="pin", kind="pin", position=2, pinned_items=("i3",))
    scene = _scene(mmr_enabled=mmr, mmr_lambda=0.6, max_per_category=cap)
    as_tuples = apply_rules(candidates, RuleSet("home", (pin,)), scene, Context(now=NOW), n=10, offset=offset)
    as_arrays = apply_rules(arrays, RuleSet("home", (pin,)), scene, Context(now=NOW), n=10, offset=offset)
    assert as_arrays.to_dict() == as_tuples.to_dict()


def _leaf(field: str, ops: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(lambda op, value: {"field": field, "op": op, "value": value}, st.sampled_from(ops), values)


some_categories = st.lists(st.sampled_from(sorted(TREE)), min_size=1)
leaf_conditions = st.one_of(
    _leaf("category", ["in_subtree"], st.sampled_from(["beauty", "home", ["skincare", "garden"]])),
    _leaf("category", ["eq"], st.sampled_from(sorted(TREE))),
    _leaf("category", ["in"], some_categories),
    _leaf("brand", ["eq", "ne"], st.sampled_from(["ACME", "globex"])),
    _leaf("brand", ["in", "not_in"], st.lists(st.sampled_from(["Acme", "initech"]), min_size=1)),
    _leaf("price", ["lt", "lte", "gt", "gte", "eq"], st.sampled_from([0, 10, 50.5, 100])),
    _leaf("price", ["between"], st.sampled_from([[0, 10], [10, 100]])),
    _leaf("in_stock", ["eq"], st.booleans()),
    _leaf("active", ["eq"], st.booleans()),
    _leaf("item", ["eq"], st.sampled_from(["i0", "i1"])),
    _leaf("item", ["in"], st.lists(st.sampled_from(["i0", "i2", "i5"]), min_size=1)),
    _leaf("attributes.tag", ["eq", "ne"], st.sampled_from(["Red", "blue", 1])),
    _leaf("attributes.tag", ["in", "not_in"], st.just(["red", 2])),
    _leaf("attributes.size", ["exists"], st.booleans()),
)
conditions = st.recursive(
    leaf_conditions,
    lambda inner: st.one_of(
        st.builds(lambda parts: {"all": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"any": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda part: {"not": part}, inner),
    ),
    max_leaves=6,
)


@given(candidate_lists(), st.one_of(st.none(), conditions), st.data())
def test_batch_predicates_agree_with_the_per_item_predicate(candidates, condition, data) -> None:  # type: ignore[no-untyped-def]
    tags = st.sampled_from([{}, {"tag": "red"}, {"tag": ["Red", "blue"]}, {"tag": 1, "size": "s"}, {"size": None}])
    candidates = [dataclasses.replace(c, attributes=data.draw(tags)) for c in candidates]
    predicate = compile_condition(condition)
    assert compile_condition_batch(condition)(candidates) == [predicate(c) for c in candidates]
