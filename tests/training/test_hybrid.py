"""The hybrid retrieval model: SASRec, a content expert and EASE mixed in log-probabilities."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tests.training.conftest import BLOCK_SIZE, planted_dataset
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import IndexMap, split_leave_one_out
from training.metrics import evaluate
from training.models import build_model
from training.protocols import cold_items_split

QUICK = {"hidden": 32, "max_len": 10, "dropout": 0.1, "lr": 5e-3, "batch_size": 64, "max_epochs": 15, "patience": 5}


@pytest.fixture(scope="module")
def cold():
    """Planted data, cold-items protocol: a tenth of the items lose every event."""
    return cold_items_split(planted_dataset(), fraction=0.1, seed=3)


@pytest.fixture(scope="module")
def fitted(cold):
    model = build_model("hybrid", cold.split.full.num_items, **QUICK)
    report = model.fit(cold.split.train, valid=cold.split.valid, seed=0)
    return model, report


@pytest.fixture
def hybrid(fitted):
    return fitted[0]


def _figures(model, cold) -> dict[str, dict[str, float]]:
    n = cold.split.full.num_items
    return {
        "cold": evaluate(model, cold.split.test, num_items=n).full,
        "warm": evaluate(model, cold.warm_test, num_items=n).full,
    }


def test_hybrid_learns_the_planted_pattern_and_beats_popularity() -> None:
    split = split_leave_one_out(planted_dataset())
    model = build_model("hybrid", split.full.num_items, **QUICK)
    model.fit(split.train, valid=split.valid, seed=0)
    pop = build_model("pop", split.full.num_items)
    pop.fit(split.train)
    n = split.full.num_items
    learned = evaluate(model, split.test, num_items=n).full["NDCG@10"]
    assert learned > evaluate(pop, split.test, num_items=n).full["NDCG@10"] + 0.25
    # Order is learned, not just the block: the next item comes first.
    assert float((evaluate(model, split.test, num_items=n).ranks == 0).mean()) > 0.8


def test_hybrid_ranks_new_items_higher_than_before_and_keeps_the_warm_customers(fitted, cold) -> None:
    hybrid, report = fitted
    after = _figures(hybrid, cold)
    with hybrid.new_items_as_attributes() as changed:
        before = _figures(hybrid, cold)
    assert changed == int((cold.split.train.item_counts()[1:] == 0).sum())
    assert len(cold.split.test) >= 30
    pop = build_model("pop", cold.split.full.num_items)
    pop.fit(cold.split.train)
    popular = evaluate(pop, cold.split.test, num_items=cold.split.full.num_items).full
    # Here every block holds about one new item, so attributes alone already find its block (HR@10
    # 1 before and after); the experts put it higher in the list. Popularity never shows it.
    assert after["cold"]["NDCG@10"] > before["cold"]["NDCG@10"] + 0.1, (after["cold"], before["cold"])
    assert after["cold"]["HR@10"] > popular["HR@10"] + 0.5
    assert after["warm"]["NDCG@10"] >= before["warm"]["NDCG@10"] - 0.01, (after["warm"], before["warm"])
    # The mixing chosen on validation kept the other customers at the before figure there.
    chosen = report.history[-1]
    assert chosen["valid_NDCG@10_established"] >= chosen["valid_NDCG@10_established_before"]
    assert chosen["valid_NDCG@10_new"] > chosen["valid_NDCG@10_new_before"]


def test_with_the_experts_off_trained_items_score_the_main_models_log_probabilities(hybrid, cold) -> None:
    histories = [list(h) for h in cold.warm_test.histories[:8]]
    saved = {k: hybrid.params[k] for k in ("expert_weight", "ease_weight")}
    hybrid.params.update(expert_weight=0.0, ease_weight=0.0)
    try:
        scores = hybrid.score(histories)
    finally:
        hybrid.params.update(saved)
    trained = ~hybrid.is_new
    trained[0] = False
    # log p over the trained items: they sum to one, and their order is the main SASRec's.
    torch.testing.assert_close(torch.logsumexp(scores[:, trained], 1), torch.zeros(len(histories)))
    main = hybrid.main.score(histories)[:, trained]
    assert torch.equal(scores[:, trained].argsort(1, descending=True)[:, :5], main.argsort(1, descending=True)[:, :5])


def test_hybrid_checkpoint_round_trip_gives_equal_scores(hybrid, cold, tmp_path) -> None:
    histories = [*cold.warm_test.histories[:10], *cold.split.test.histories[:5], np.array([], dtype=np.int64)]
    before = hybrid.score(histories)
    save_checkpoint(hybrid, tmp_path, item_index=cold.split.full.item_index)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kind"] == "hybrid" and config["params"]["sasrec"]["num_attributes"] > 0
    loaded = load_checkpoint(tmp_path).model
    after = loaded.score(histories)
    assert after.shape == (len(histories), cold.split.full.num_items + 1)
    assert torch.isneginf(after[:, 0]).all() and not torch.isnan(after).any()
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(loaded.is_new, hybrid.is_new)


def test_similar_items_of_a_new_item_come_from_its_block(hybrid, cold) -> None:
    index = cold.split.full.item_index
    new_item = int(torch.nonzero(hybrid.is_new)[0])
    block = (int(index.id_of(new_item)[1:]) - 1) // BLOCK_SIZE
    _scores, items = hybrid.similar_items([new_item], k=5)
    blocks = [(int(index.id_of(int(i))[1:]) - 1) // BLOCK_SIZE for i in items[0]]
    assert blocks.count(block) >= 4, (block, blocks)


def test_hybrid_without_attributes_never_ranks_a_new_item_above_a_trained_one() -> None:
    ds = dataclasses.replace(
        planted_dataset(),
        attribute_index=IndexMap(),
        attr_offsets=np.zeros(1, dtype=np.int64),
        attr_ids=np.zeros(0, dtype=np.int64),
    )
    assert ds.num_attributes == 0
    cold = cold_items_split(ds, fraction=0.1, seed=3)
    model = build_model("hybrid", ds.num_items, **{**QUICK, "max_epochs": 3})
    model.fit(cold.split.train, valid=cold.split.valid, seed=0)
    scores = model.score([list(h) for h in cold.warm_test.histories[:5]])
    new = model.is_new.clone()
    trained = ~new
    trained[0] = False
    assert bool(new.any())
    assert (scores[:, new].max(1).values < scores[:, trained].min(1).values).all()
