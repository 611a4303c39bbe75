"""The TorchServe handler in-process, with TorchServe's own Context (as a worker builds it) around
a real trained checkpoint: single requests, batches, similar items and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from ts.context import Context
from ts.utils.util import PredictionException

from handlers.recommender_handler import RecommenderHandler
from tests.handlers import helpers
from tests.handlers.helpers import assert_same_answers, run
from training.checkpoint import load_checkpoint


def make_context(model_dir: Path, handler_settings: dict[str, Any] | None = None) -> Context:
    return helpers.make_context("recommender", model_dir, {"default_k": 5, "max_k": 30, **(handler_settings or {})})


@pytest.fixture(scope="module", params=["pop", "sasrec"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    """Every test runs on the popularity model and on SASRec (whose scores depend on history)."""
    name = "trained_checkpoint" if request.param == "pop" else "trained_sasrec_checkpoint"
    return Path(request.getfixturevalue(name))


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> Any:
    return load_checkpoint(model_dir)


@pytest.fixture
def context(model_dir: Path) -> Context:
    return make_context(model_dir)


@pytest.fixture
def handler(context: Context) -> RecommenderHandler:
    h = RecommenderHandler()
    h.initialize(context)
    return h


def test_it_reads_k_limits_from_the_model_yaml(handler: RecommenderHandler) -> None:
    assert handler.default_k == 5
    assert handler.max_k == 30


def test_a_history_gets_the_top_k_by_model_score_without_history_or_excluded(
    handler: RecommenderHandler, context: Context, loaded: Any
) -> None:
    history = ["sku-000", "sku-001", "sku-002"]
    [answer] = run(handler, context, {"history": history, "k": 10, "exclude": ["sku-003", "unknown"]})
    assert len(answer) == 10
    items = [a["item"] for a in answer]
    assert not set(items) & {"sku-000", "sku-001", "sku-002", "sku-003"}
    scores = [a["score"] for a in answer]
    assert scores == sorted(scores, reverse=True)
    # The same ranking the model gives, computed here by hand.
    index = loaded.item_index
    raw = loaded.model.score([[index.index(i) for i in history]])[0].clone()
    for banned in [0, *(index.index(i) for i in [*history, "sku-003"])]:
        raw[banned] = -math.inf
    expected_scores = torch.topk(raw, 10).values.tolist()
    assert scores == pytest.approx(expected_scores, abs=1e-5)


def test_without_k_it_answers_default_k_items(handler: RecommenderHandler, context: Context) -> None:
    [answer] = run(handler, context, {"history": ["sku-005"]})
    assert len(answer) == 5


def test_unknown_ids_are_skipped_and_an_all_unknown_history_scores_like_a_new_customer(
    handler: RecommenderHandler, context: Context
) -> None:
    known, mixed = run(handler, context, {"history": ["sku-004"], "k": 8}, {"history": ["nope", "sku-004", 17], "k": 8})
    assert_same_answers([known], [mixed])
    unknown, empty = run(handler, context, {"history": ["nope", "gone"], "k": 8}, {"history": [], "k": 8})
    assert_same_answers([unknown], [empty])
    assert len(empty) == 8


def test_json_text_and_bytes_bodies_are_accepted(handler: RecommenderHandler, context: Context) -> None:
    body = {"history": ["sku-001"], "k": 4}
    as_dict, as_text, as_bytes = run(handler, context, body, json.dumps(body), json.dumps(body).encode())
    assert as_dict == as_text == as_bytes


def test_k_beyond_the_catalogue_returns_every_remaining_item(handler: RecommenderHandler, context: Context) -> None:
    num_items = handler.num_items
    ctx = make_context(Path(context.system_properties["model_dir"]), {"max_k": 1000})
    h = RecommenderHandler()
    h.initialize(ctx)
    [answer] = run(h, ctx, {"history": ["sku-001", "sku-002"], "k": 1000, "exclude": ["sku-003"]})
    assert len(answer) <= num_items - 3
    assert len({a["item"] for a in answer}) == len(answer)
    assert all(math.isfinite(a["score"]) for a in answer)


def test_a_batch_is_scored_in_one_forward_pass_with_the_same_answers_as_single_requests(
    handler: RecommenderHandler, context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = [
        {"history": ["sku-001", "sku-002"], "k": 6},
        {"similar_to": "sku-010", "k": 4},
        {"history": [], "k": 3, "exclude": ["sku-000"]},
        {"history": ["sku-020"], "k": 7, "exclude": ["sku-021"]},
    ]
    singles = [run(handler, context, b)[0] for b in bodies]
    calls: list[int] = []
    real_score = handler.model.score

    def counting_score(histories: Any) -> torch.Tensor:
        calls.append(len(histories))
        return real_score(histories)

    monkeypatch.setattr(handler.model, "score", counting_score)
    batched = run(handler, context, *bodies)
    assert calls == [2]  # the two non-empty histories together, once (new customers: precomputed)
    assert_same_answers(batched, singles)


def test_similar_to_returns_nearest_items_by_cosine_of_item_embeddings(
    handler: RecommenderHandler, context: Context, loaded: Any
) -> None:
    [answer] = run(handler, context, {"similar_to": "sku-010", "k": 5, "exclude": ["sku-011"]})
    items = [a["item"] for a in answer]
    assert "sku-010" not in items and "sku-011" not in items
    emb = torch.nn.functional.normalize(loaded.model.item_embeddings().detach().float(), dim=1)
    anchor = loaded.item_index.index("sku-010")
    sims = emb @ emb[anchor]
    for a in answer:
        assert a["score"] == pytest.approx(float(sims[loaded.item_index.index(a["item"])]), abs=1e-5)
    scores = [a["score"] for a in answer]
    assert scores == sorted(scores, reverse=True)


def test_similar_to_an_unknown_item_is_an_empty_list(handler: RecommenderHandler, context: Context) -> None:
    assert run(handler, context, {"similar_to": "never-seen", "k": 5}) == [[]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ({}, "needs"),
        ({"history": None}, "needs"),
        ({"history": ["sku-001"], "k": 0}, '"k"'),
        ({"history": ["sku-001"], "k": "5"}, '"k"'),
        ({"history": ["sku-001"], "k": True}, '"k"'),
        ({"history": ["sku-001"], "k": 31}, "at most 30"),
        ({"history": "sku-001"}, '"history"'),
        ({"history": [["sku-001"]]}, '"history"'),
        ({"history": [], "exclude": "sku-001"}, '"exclude"'),
        ({"history": [], "similar_to": "sku-001"}, "either"),
        ({"similar_to": ["sku-001"]}, '"similar_to"'),
    ],
)
def test_bad_requests_are_rejected_with_400(
    handler: RecommenderHandler, context: Context, body: Any, message: str
) -> None:
    with pytest.raises(PredictionException) as exc_info:
        run(handler, context, body)
    assert exc_info.value.error_code == 400
    assert message in exc_info.value.message


def test_a_bad_request_in_a_batch_gets_its_own_400_and_the_others_are_answered(
    handler: RecommenderHandler, context: Context
) -> None:
    good, bad = run(handler, context, {"history": ["sku-001"], "k": 3}, {"history": ["sku-001"], "k": -1})
    assert len(good) == 3
    assert bad["code"] == 400 and '"k"' in bad["message"]
    assert context.get_response_status(0)[0] == 200
    assert context.get_response_status(1)[0] == 400


def test_a_new_item_without_events_is_served_from_its_attributes(tmp_path: Path) -> None:
    """The archive holds every catalog item, one nobody interacted with too: its representation is
    its attributes alone, so `similar_to` it gives its block's items and a history in its block
    recommends it ahead of every other block's items."""
    from tests.training.conftest import BLOCK_SIZE, planted_dataset
    from training.checkpoint import save_checkpoint
    from training.data import split_leave_one_out
    from training.models import build_model

    ds = planted_dataset()
    ds = ds.select(ds.items != ds.item_index.index("i5"))  # i5 (block 0) keeps its attribute only
    split = split_leave_one_out(ds)
    params = {"hidden": 32, "max_len": 10, "dropout": 0.1, "lr": 5e-3, "batch_size": 64, "max_epochs": 15}
    params["id_dropout"] = 0.1
    model = build_model("sasrec", ds.num_items, **params)
    model.fit(split.train, seed=0)
    save_checkpoint(model, tmp_path, item_index=ds.item_index)
    context = make_context(tmp_path)
    handler = RecommenderHandler()
    handler.initialize(context)

    def block(item: str) -> int:
        return (int(item[1:]) - 1) // BLOCK_SIZE

    [similar] = run(handler, context, {"similar_to": "i5", "k": 5})
    assert len(similar) == 5 and {block(a["item"]) for a in similar} == {0}
    [recommended] = run(handler, context, {"history": ["i1", "i2", "i3"], "k": BLOCK_SIZE})
    ranked = [a["item"] for a in recommended]
    assert "i5" in ranked
    assert all(block(item) == 0 for item in ranked[: ranked.index("i5")])
