"""Property-based tests of the pure rules engine (no database)."""

from __future__ import annotations

import datetime as dt

from hypothesis import assume, given, settings
from hypothesis import strategies as st

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
