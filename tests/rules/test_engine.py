"""Hand-computed cases of the rules engine, one behaviour each."""

from __future__ import annotations

import ast
import datetime as dt
import json
from pathlib import Path

import pytest

from recadmin.rules import engine
from recadmin.rules.engine import Candidate, CompiledRule, Context, RuleSet, SceneSettings, apply_rules

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SCENE = SceneSettings(slug="home")


def c(item_id: str, score: float, category: str = "skincare", **kw: object) -> Candidate:
    paths = {"skincare": ("beauty", "skincare"), "haircare": ("beauty", "haircare"), "kitchen": ("home", "kitchen")}
    return Candidate(item_id=item_id, score=score, category=category, category_path=paths[category], **kw)  # type: ignore[arg-type]


def ids(ranking: engine.Ranking) -> list[str]:
    return [item.item_id for item in ranking.items]


def run(candidates: list[Candidate], *rules: CompiledRule, scene: SceneSettings = SCENE, n: int = 10,
        offset: int = 0, context: Context | None = None) -> engine.Ranking:  # fmt: skip
    return apply_rules(candidates, RuleSet("home", rules), scene, context or Context(now=NOW), n=n, offset=offset)


def test_the_engine_module_imports_nothing_from_django() -> None:
    source = Path(engine.__file__).read_text()
    imported = [node.module or "" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)] + [
        alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import) for alias in node.names
    ]
    assert not [name for name in imported if name.startswith(("django", "rest_framework"))]
    conditions = Path(engine.__file__).with_name("conditions.py").read_text()
    assert "django" not in conditions


def test_it_orders_by_model_score_and_explains_it() -> None:
    ranking = run([c("a", 0.2), c("b", 0.9), c("c", 0.5)])
    assert ids(ranking) == ["b", "c", "a"]
    assert ranking.items[0].reasons == ({"type": "model", "score": 0.9},)


def test_a_multiplying_boost_raises_negative_scores_too() -> None:
    boost = CompiledRule(id=1, name="b", kind="boost", condition={"field": "item", "op": "in", "value": ["a", "n"]},
                         weight=2.0)  # fmt: skip
    ranking = run([c("a", 3.0), c("n", -4.0), c("x", -3.0)], boost)
    scores = {item.item_id: item.score for item in ranking.items}
    assert scores == {"a": 6.0, "n": -2.0, "x": -3.0}
    assert ids(ranking) == ["a", "n", "x"]


def test_a_multiplying_bury_lowers_negative_scores_too() -> None:
    bury = CompiledRule(id=1, name="b", kind="bury", condition={"field": "item", "op": "eq", "value": "n"},
                        weight=2.0)  # fmt: skip
    ranking = run([c("n", -1.0), c("x", -1.5)], bury)
    assert {item.item_id: item.score for item in ranking.items} == {"n": -2.0, "x": -1.5}


def test_boosts_and_buries_stack_in_priority_order() -> None:
    everything = {"field": "active", "op": "eq", "value": True}
    add = CompiledRule(id=1, name="add", kind="boost", condition=everything, weight=1.0, weight_mode="add", priority=1)
    times = CompiledRule(id=2, name="times", kind="boost", condition=everything, weight=3.0, priority=5)
    ranking = run([c("a", 2.0)], add, times)
    # priority 5 first: 2 * 3 = 6, then + 1 = 7 (the other order would give 9)
    assert ranking.items[0].score == 7.0
    assert [r.get("rule_name") for r in ranking.items[0].reasons[1:]] == ["times", "add"]
    assert ranking.items[0].reasons[1]["before"] == 2.0 and ranking.items[0].reasons[1]["after"] == 6.0


def test_an_adding_bury_moves_an_item_below_others() -> None:
    bury = CompiledRule(id=4, name="less acme", kind="bury", condition={"field": "brand", "op": "eq", "value": "ACME"},
                        weight=0.5, weight_mode="add")  # fmt: skip
    ranking = run([c("a", 1.0, brand="acme"), c("b", 0.8, brand="globex")], bury)
    assert ids(ranking) == ["b", "a"]
    assert ranking.items[1].score == pytest.approx(0.5)
    assert ranking.items[1].reasons[-1]["type"] == "buried"


def test_several_include_filters_must_all_hold_and_exclude_filters_drop() -> None:
    beauty = CompiledRule(id=1, name="beauty", kind="filter", filter_mode="include",
                          condition={"field": "category", "op": "in_subtree", "value": "beauty"})  # fmt: skip
    cheap = CompiledRule(id=2, name="cheap", kind="filter", filter_mode="include",
                         condition={"field": "price", "op": "lte", "value": 20})  # fmt: skip
    no_stockouts = CompiledRule(id=3, name="stock", kind="filter", condition={"field": "in_stock", "op": "eq",
                                                                              "value": False})  # fmt: skip
    candidates = [
        c("ok", 1.0, price=10.0),
        c("pricey", 0.9, price=30.0),
        c("kitchen", 0.8, "kitchen", price=5.0),
        c("noprice", 0.7),
        c("out", 0.6, price=5.0, in_stock=False),
    ]
    ranking = run(candidates, beauty, cheap, no_stockouts)
    assert ids(ranking) == ["ok"]
    assert dict(ranking.removed) == {"rule:1": 1, "rule:2": 2, "rule:3": 1}


def test_scene_exclusions_drop_the_current_item_and_recent_purchases_only() -> None:
    scene = SceneSettings(slug="home", exclude_purchased_days=30, exclude_current_item=True)
    context = Context(
        now=NOW,
        current_item="cur",
        purchases={"recent": NOW - dt.timedelta(days=29), "old": NOW - dt.timedelta(days=31)},
    )
    candidates = [c("cur", 1.0), c("recent", 0.9), c("old", 0.8), c("inactive", 0.7, active=False), c("x", 0.1)]
    ranking = run(candidates, scene=scene, context=context)
    assert ids(ranking) == ["old", "x"]
    assert dict(ranking.removed) == {"scene:current_item": 1, "scene:purchased": 1, "inactive": 1}


def test_pins_take_positions_by_priority_and_pinned_extras_come_from_the_context() -> None:
    strong = CompiledRule(id=1, name="strong", kind="pin", position=2, pinned_items=("p1", "p2"), priority=10)
    weak = CompiledRule(id=2, name="weak", kind="pin", position=2, pinned_items=("extra",), priority=0)
    context = Context(now=NOW, extra_candidates=(c("extra", 0.0, origin="pinned"),))
    candidates = [c("a", 0.9), c("b", 0.8), c("p1", 0.1), c("p2", 0.05), c("d", 0.7)]
    ranking = run(candidates, strong, weak, context=context)
    # strong claims 2 and 3; weak wanted 2 and moves to the next free position, 4
    assert ids(ranking) == ["a", "p1", "p2", "extra", "b", "d"]
    assert ranking.items[3].reasons[-1] == {"type": "pinned", "rule": 2, "rule_name": "weak", "position": 4}


def test_a_pinned_item_that_a_filter_removes_is_reported_not_shown() -> None:
    pin = CompiledRule(id=1, name="pin", kind="pin", position=1, pinned_items=("out", "ghost"))
    stock = CompiledRule(id=2, name="stock", kind="filter", condition={"field": "in_stock", "op": "eq", "value": False})
    ranking = run([c("a", 1.0), c("out", 0.5, in_stock=False)], pin, stock)
    assert ids(ranking) == ["a"]
    assert [(s["item"], s["reason"]) for s in ranking.skipped_pins] == [
        ("out", "rule:2"),
        ("ghost", "unknown item (no metadata)"),
    ]


def test_the_cap_counts_pins_and_the_list_stops_when_nothing_fits() -> None:
    pin = CompiledRule(id=1, name="pin", kind="pin", position=1, pinned_items=("s3",))
    scene = SceneSettings(slug="home", max_per_category=2)
    candidates = [c("s1", 0.9), c("s2", 0.8), c("s3", 0.1), c("h1", 0.5, "haircare"), c("k1", 0.4, "kitchen")]
    ranking = run(candidates, pin, scene=scene)
    assert ids(ranking) == ["s3", "s1", "h1", "k1"]
    assert ranking.capped == 1  # s2: skincare is full once the pin and s1 are placed
    assert not ranking.has_more


def test_mmr_prefers_an_unlike_item_over_a_near_duplicate() -> None:
    scene = SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=0.5)
    candidates = [
        c("a", 1.0, embedding=(1.0, 0.0)),
        c("a-twin", 0.9, embedding=(1.0, 0.0)),
        c("other", 0.5, embedding=(0.0, 1.0)),
    ]
    # relevance a=1, twin=0.8, other=0. After a: twin 0.5*0.8 - 0.5*1 = -0.1, other 0 - 0 = 0.
    assert ids(run(candidates, scene=scene)) == ["a", "other", "a-twin"]
    assert ids(run(candidates, scene=SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=1.0))) == [
        "a",
        "a-twin",
        "other",
    ]


def test_mmr_without_embeddings_is_score_order() -> None:
    scene = SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=0.1)
    assert ids(run([c("a", 0.1), c("b", 0.3), c("z", 0.2)], scene=scene)) == ["b", "z", "a"]


def test_pagination_slices_one_list_and_reports_more() -> None:
    candidates = [c(f"i{k}", 1.0 - k / 10) for k in range(7)]
    first = run(candidates, n=3)
    second = run(candidates, n=3, offset=3)
    last = run(candidates, n=3, offset=6)
    assert ids(first) == ["i0", "i1", "i2"] and first.has_more
    assert ids(second) == ["i3", "i4", "i5"] and [i.position for i in second.items] == [4, 5, 6]
    assert ids(last) == ["i6"] and not last.has_more


def test_ties_break_on_input_order_and_nan_scores_sink() -> None:
    ranking = run([c("first", 0.5), c("nan", float("nan")), c("second", 0.5)])
    assert ids(ranking) == ["first", "second", "nan"]


def test_duplicates_keep_the_best_score() -> None:
    ranking = run([c("a", 0.1), c("b", 0.5), c("a", 0.9)])
    assert ids(ranking) == ["a", "b"]
    assert ranking.items[0].score == 0.9
    assert ranking.removed["duplicate"] == 1


def test_the_compiled_rule_set_round_trips_through_json() -> None:
    rules = RuleSet(
        "home",
        (
            CompiledRule(id=1, name="pin", kind="pin", position=2, pinned_items=("a", "b"), valid_from=1.5),
            CompiledRule(2, "f", "filter", condition={"all": [{"field": "brand", "op": "eq", "value": "x"}]}),
        ),
        version="v1",
    )
    assert RuleSet.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules
    settings = SceneSettings(slug="cart", max_per_category=2, mmr_enabled=True)
    assert SceneSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_the_validity_window_is_half_open() -> None:
    rule = CompiledRule(id=1, name="r", kind="boost", valid_from=NOW.timestamp(), valid_until=NOW.timestamp() + 60)
    assert rule.is_active(NOW)
    assert not rule.is_active(NOW - dt.timedelta(seconds=1))
    assert not rule.is_active(NOW + dt.timedelta(seconds=60))


def test_it_asks_the_model_for_multiplier_times_the_page() -> None:
    assert SceneSettings(slug="x", candidate_multiplier=4).candidates_wanted(10, offset=20) == 120


def test_negative_n_or_offset_is_refused() -> None:
    with pytest.raises(ValueError):
        run([c("a", 1.0)], n=-1)
    with pytest.raises(ValueError):
        run([c("a", 1.0)], offset=-1)


def test_cached_dicts_from_another_release_still_load() -> None:
    data = SceneSettings(slug="cart").to_dict() | {"added_in_a_later_release": 1}
    assert SceneSettings.from_dict(data) == SceneSettings(slug="cart")
    rules = RuleSet("home", (CompiledRule(1, "b", "boost"),)).to_dict()
    rules["rules"][0]["new_field"] = "x"
    assert RuleSet.from_dict(rules).rules[0] == CompiledRule(1, "b", "boost")


def test_numpy_embeddings_rank_exactly_like_tuples() -> None:
    import numpy as np

    scene = SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=0.6, max_per_category=2)
    vectors = [(1.0, 0.0, 0.2), (0.9, 0.1, 0.2), (0.0, 1.0, 0.0), (0.5, 0.5, 0.5), (1.0, 0.0, 0.2)]
    cats = ["skincare", "skincare", "haircare", "kitchen", "skincare"]
    as_tuples = [c(f"i{k}", 1.0 - k / 10, cats[k], embedding=v) for k, v in enumerate(vectors)]
    # Serving passes cached float64 arrays (not exactly unit after float16 storage).
    as_arrays = [
        c(f"i{k}", 1.0 - k / 10, cats[k], embedding=np.asarray(v, dtype=np.float16).astype(np.float64))
        for k, v in enumerate(vectors)
    ]
    rounded = [c(f"i{k}", 1.0 - k / 10, cats[k], embedding=tuple(map(float, a.embedding)))  # type: ignore[union-attr]
               for k, a in enumerate(as_arrays)]  # fmt: skip
    assert run(as_arrays, scene=scene).to_dict() == run(rounded, scene=scene).to_dict()
    exact = [c(f"i{k}", 1.0 - k / 10, cats[k], embedding=np.asarray(v)) for k, v in enumerate(vectors)]
    assert run(exact, scene=scene).to_dict() == run(as_tuples, scene=scene).to_dict()


def test_missing_or_empty_numpy_embeddings_are_no_vector() -> None:
    import numpy as np

    scene = SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=0.5)
    with_arrays = [
        c("a", 1.0, embedding=np.array([1.0, 0.0])),
        c("b", 0.9, embedding=None),
        c("twin", 0.8, embedding=np.array([1.0, 0.0])),
        c("empty", 0.7, embedding=np.array([])),
        c("other", 0.1, embedding=np.array([0.0, 1.0])),
    ]
    with_tuples = [
        c(x.item_id, x.score, embedding=None if x.embedding is None else tuple(x.embedding))  # type: ignore[arg-type]
        for x in with_arrays
    ]
    assert run(with_arrays, scene=scene).to_dict() == run(with_tuples, scene=scene).to_dict()
    # No usable vectors at all: score order, not an "ambiguous truth value" error.
    bare = [c("a", 0.2, embedding=np.array([])), c("b", 0.9, embedding=None)]
    assert ids(run(bare, scene=scene)) == ["b", "a"]


def test_a_pinned_numpy_vector_counts_for_mmr() -> None:
    import numpy as np

    pin = CompiledRule(id=1, name="pin", kind="pin", position=1, pinned_items=("p",))
    scene = SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=0.5)
    candidates = [
        c("p", 0.0, embedding=np.array([2.0, 0.0])),  # not unit: normalised like any other
        c("near", 1.0, embedding=np.array([1.0, 0.0])),
        c("far", 0.9, embedding=np.array([0.0, 3.0])),
    ]
    # near: 0.5*1 - 0.5*1 = 0; far: 0.5*0 - 0.5*0 = 0 -> a tie: the better-ranked one (near) wins...
    assert ids(run(candidates, pin, scene=scene)) == ["p", "near", "far"]
    # ...and once similarity weighs more, far goes first: near 0.4*1 - 0.6*1 = -0.2 < far 0.
    assert ids(run(candidates, pin, scene=SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=0.4))) == [
        "p",
        "far",
        "near",
    ]


def test_mmr_counts_a_negative_similarity_once_something_is_placed() -> None:
    scene = SceneSettings(slug="home", mmr_enabled=True, mmr_lambda=0.5)
    candidates = [
        c("a", 1.0, embedding=(1.0, 0.0)),
        c("opposite", 0.5, embedding=(-1.0, 0.0)),
        c("orthogonal", 0.6, embedding=(0.0, 1.0)),
    ]
    # relevance a=1, orthogonal=0.2, opposite=0. After a: opposite 0 + 0.5*1 = 0.5 beats
    # orthogonal 0.1 - 0 = 0.1 (before anything is placed the similarity is 0, not -1).
    assert ids(run(candidates, scene=scene)) == ["a", "opposite", "orthogonal"]


def test_the_category_cap_skips_only_what_is_still_available() -> None:
    pin = CompiledRule(id=1, name="pin", kind="pin", position=3, pinned_items=("s4",))
    scene = SceneSettings(slug="home", max_per_category=2, mmr_enabled=True, mmr_lambda=0.9)
    candidates = [c(f"s{k}", 1.0 - k / 10, embedding=(1.0, k / 10)) for k in range(5)]
    candidates.append(c("h", 0.1, "haircare", embedding=(0.0, 1.0)))
    ranking = run(candidates, pin, scene=scene)
    assert ids(ranking) == ["s0", "s1", "s4", "h"]
    assert ranking.capped == 2  # s2 and s3; s4 is a pin and over the cap
    assert not ranking.has_more


def test_candidate_keeps_its_constructor_and_dataclass_behaviour() -> None:
    import dataclasses

    positional = Candidate("a", 0.5, "skincare", ("beauty", "skincare"), "acme", 9.5, False, True, {"k": 1},
                           (1.0,), "popular")  # fmt: skip
    keywords = Candidate(item_id="a", score=0.5, category="skincare", category_path=("beauty", "skincare"),
                         brand="acme", price=9.5, in_stock=False, active=True, attributes={"k": 1},
                         embedding=(1.0,), origin="popular")  # fmt: skip
    assert positional == keywords
    assert repr(positional).startswith("Candidate(item_id='a', score=0.5, category='skincare'")
    assert dataclasses.asdict(keywords)["attributes"] == {"k": 1}
    assert dataclasses.replace(keywords, score=0.7).score == 0.7
    assert [f.name for f in dataclasses.fields(Candidate)][-2:] == ["embedding", "origin"]
    first, second = Candidate("x", 1.0), Candidate("x", 1.0)
    assert first.attributes == {} and first.attributes is not second.attributes
    assert (first.category, first.category_path, first.brand, first.price) == (None, (), "", None)
    assert (first.in_stock, first.active, first.embedding, first.origin) == (True, True, None, "model")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.score = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Candidate(item_id="x")  # type: ignore[call-arg]


def test_a_scored_copy_is_the_same_item_with_its_own_score_origin_and_embedding() -> None:
    import dataclasses

    template = Candidate(item_id="a", score=0.0, category="skincare", category_path=("beauty", "skincare"),
                         brand="acme", price=9.5, in_stock=False, active=True, attributes={"k": 1})  # fmt: skip

    copy = template.scored(0.7, "similar", (1.0, 0.0))

    assert copy == dataclasses.replace(template, score=0.7, origin="similar", embedding=(1.0, 0.0))
    assert (template.score, template.origin, template.embedding) == (0.0, "model", None)
    assert template.scored(0.1, "model") != copy and template.scored(0.1, "model").embedding is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.score = 2.0  # type: ignore[misc]
