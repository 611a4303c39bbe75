"""The sampled and cold-items protocols and the attribute baselines, on toy data computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from training.data import InteractionDataset, split_leave_one_out
from training.metrics import evaluate
from training.protocols import (
    AttributeOverlap,
    CategoryPopularity,
    cold_items_split,
    sample_negatives,
    with_sampled_negatives,
)


class ByIdScorer:
    """Scores an item by its shop id as a number: sign=+1 prefers higher ids, -1 lower ones."""

    def __init__(self, dataset: InteractionDataset, sign: float) -> None:
        ids = [0.0, *(float(i) for i in dataset.item_index.ids)]
        self.row = torch.tensor(ids) * sign

    def score(self, histories):
        out = self.row.repeat(len(histories), 1)
        out[:, 0] = float("-inf")
        return out


def _ids(dataset, indices) -> set[str]:
    return {dataset.item_index.id_of(int(i)) for i in indices}


# ---- sampled -------------------------------------------------------------------------------------
@pytest.fixture
def toy_sampled() -> InteractionDataset:
    events = {"a": ["1", "2", "3", "4"], "b": ["2", "3", "5"], "c": ["1", "6"]}
    users = [u for u, seq in events.items() for _ in seq]
    items = [i for seq in events.values() for i in seq]
    return InteractionDataset.from_events(users, items, list(range(len(items))), catalog=["7", "8"])


def test_sampled_negatives_are_distinct_unrated_items_and_repeat_with_the_seed(toy_sampled) -> None:
    split = with_sampled_negatives(split_leave_one_out(toy_sampled), count=3, seed=4)
    again = with_sampled_negatives(split_leave_one_out(toy_sampled), count=3, seed=4)
    seqs = toy_sampled.sequences()
    for eval_set, other in ((split.test, again.test), (split.valid, again.valid)):
        assert eval_set.negatives is not None and other.negatives is not None
        for user, negs, negs_again in zip(eval_set.users, eval_set.negatives, other.negatives, strict=True):
            assert len(negs) == len(set(negs.tolist())) == 3
            assert not set(negs.tolist()) & set(seqs[user].tolist())  # never a rated item, the target neither
            assert negs.tolist() == negs_again.tolist()
    assert [len(n) for n in split.valid.negatives] == [3, 3]  # a and b have a validation target


def test_sampled_protocol_ranks_the_target_among_its_negatives_by_hand(toy_sampled) -> None:
    # With count >= the unrated items, each user's negatives are all their unrated items:
    # a: target 4 vs {5,6,7,8}; b: target 5 vs {1,4,6,7,8}; c: target 6 vs {2,3,4,5,7,8}.
    split = with_sampled_negatives(split_leave_one_out(toy_sampled), count=10, seed=0)
    assert [_ids(toy_sampled, n) for n in split.test.negatives] == [
        {"5", "6", "7", "8"},
        {"1", "4", "6", "7", "8"},
        {"2", "3", "4", "5", "7", "8"},
    ]
    # Higher id = higher score: the target's rank is its number of negatives with a higher id: 4, 3, 2.
    sampled = evaluate(ByIdScorer(toy_sampled, 1.0), split.test, num_items=toy_sampled.num_items).sampled
    assert sampled["HR@1"] == 0.0
    assert sampled["HR@5"] == 1.0
    assert sampled["NDCG@5"] == pytest.approx((1 / math.log2(6) + 1 / math.log2(5) + 1 / math.log2(4)) / 3)
    assert sampled["MRR"] == pytest.approx((1 / 5 + 1 / 4 + 1 / 3) / 3)


def test_sample_negatives_takes_every_unrated_item_when_fewer_remain() -> None:
    rng = np.random.default_rng(0)
    out = sample_negatives(5, [np.array([1, 2, 3]), np.array([1, 2, 3, 4, 5])], 99, rng)
    assert sorted(out[0].tolist()) == [4, 5] and out[1].size == 0


# ---- cold items ----------------------------------------------------------------------------------
@pytest.fixture
def toy_cold() -> InteractionDataset:
    seqs = {
        "u1": ["1", "2", "3"],
        "u2": ["2", "3", "4"],
        "u3": ["4", "5", "6"],
        "u4": ["6", "7", "8"],
        "u5": ["8", "9", "10"],
        "u6": ["10", "1"],
    }
    return InteractionDataset.from_sequences(seqs)


def _events(dataset) -> dict[str, list[str]]:
    return {
        dataset.user_ids[u]: dataset.item_index.ids_of(dataset.sequence(u))
        for u in range(dataset.num_users)
        if len(dataset.sequence(u))
    }


def test_cold_items_split_by_hand(toy_cold) -> None:
    cold = cold_items_split(toy_cold, fraction=0.2, seed=5)
    split = cold.split
    # 2 of the 10 items, drawn with seed 5: "6" and "8"
    assert _ids(toy_cold, cold.cold_items) == {"6", "8"}
    assert cold_items_split(toy_cold, fraction=0.2, seed=5).cold_items.tolist() == cold.cold_items.tolist()
    # Training = leave-one-out training minus every event of 6 and 8 (u4's 6, u5's 8); u6 (two
    # events) is tested but not validated, so its first event trains.
    assert _events(split.train) == {"u1": ["1"], "u2": ["2"], "u3": ["4"], "u6": ["10"]}
    assert _events(split.refit) == {
        "u1": ["1", "2"],
        "u2": ["2", "3"],
        "u3": ["4", "5"],
        "u4": ["7"],
        "u5": ["9"],
        "u6": ["10"],
    }
    # Cold test: the users whose last item is cold, with their whole history (u4 saw the cold 6).
    users = [toy_cold.user_ids[u] for u in split.test.users]
    assert users == ["u3", "u4"]
    assert [toy_cold.item_index.ids_of(h) for h in split.test.histories] == [["4", "5"], ["6", "7"]]
    assert [toy_cold.user_ids[u] for u in cold.warm_test.users] == ["u1", "u2", "u5", "u6"]
    assert [toy_cold.user_ids[u] for u in split.valid.users] == ["u1", "u2", "u3", "u4", "u5"]
    # Full ranking, history masked, lower id first: u3's 6 has 1, 2, 3 above it (rank 3);
    # u4's 8 has 1..5 above it (rank 5).
    full = evaluate(ByIdScorer(toy_cold, -1.0), split.test, num_items=toy_cold.num_items).full
    assert full["HR@5"] == 0.5 and full["HR@10"] == 1.0
    assert full["NDCG@10"] == pytest.approx((1 / math.log2(5) + 1 / math.log2(7)) / 2)


# ---- baselines -----------------------------------------------------------------------------------
@pytest.fixture
def toy_attributes() -> InteractionDataset:
    attributes = {
        "a1": ["A", "x"],
        "a2": ["A", "x"],
        "a3": ["A", "y"],
        "a4": ["B", "y"],
        "a5": ["B", "z"],
        "a6": ["B"],
    }
    pop = {"a1": 1, "a2": 3, "a3": 2, "a4": 4, "a6": 5}  # a5 is new: no events
    users, items = [], []
    for item, count in pop.items():
        for n in range(count):
            users.append(f"u{n}")
            items.append(item)
    return InteractionDataset.from_events(users, items, item_attributes=attributes)


def _order(dataset, scorer, history: list[str]) -> list[str]:
    idx = dataset.item_index.lookup(history)
    scores = scorer.score([idx])[0]
    scores[torch.from_numpy(idx)] = float("-inf")
    ranked = torch.argsort(scores, descending=True, stable=True).tolist()
    return [dataset.item_index.id_of(i) for i in ranked if torch.isfinite(scores[i])]


def test_category_popularity_puts_the_narrowest_shared_group_first_then_popularity(toy_attributes) -> None:
    # Last item a1 (A: 3 items, x: 2 items): x first (a2), then the rest of A (a3), then by
    # popularity: a6 (5), a4 (4), a5 (0).
    assert _order(toy_attributes, CategoryPopularity(toy_attributes), ["a4", "a1"]) == ["a2", "a3", "a6", "a5"]
    assert _order(toy_attributes, CategoryPopularity(toy_attributes), ["a1"]) == ["a2", "a3", "a6", "a4", "a5"]


def test_attribute_overlap_sums_cosines_with_the_last_items_by_recency(toy_attributes) -> None:
    # query = unit(a1) + 0.5 unit(a4): a2 1.0, a3 0.5 + 0.25, a6 0.5 / sqrt(2), a5 0.25.
    scorer = AttributeOverlap(toy_attributes, last=5, decay=0.5)
    idx = toy_attributes.item_index.lookup(["a4", "a1", "a2", "a3", "a5", "a6"])
    scores = scorer.score([idx[:2]])[0]
    np.testing.assert_allclose(scores[idx[2:]].numpy(), [1.0, 0.75, 0.25, 0.5 / math.sqrt(2)], rtol=1e-6)
    assert _order(toy_attributes, scorer, ["a4", "a1"]) == ["a2", "a3", "a6", "a5"]


# ---- through the benchmark -----------------------------------------------------------------------
@pytest.mark.data
def test_benchmark_sampled_protocol_on_movielens(shared_data, tmp_path) -> None:
    from training.benchmark import main

    out = tmp_path / "out"
    argv = ["--format", "movielens", "--data", str(shared_data / "ml-100k"), "--protocol", "sampled"]
    argv += ["--model", "cf", "--out", str(out), "--no-progress", "--threads", "1"]
    assert main([*argv, "--params", json.dumps({"l2_grid": [100.0, 1000.0]})]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_users"] == 943
    assert metrics["params"]["l2"] in (100.0, 1000.0)
    assert [row["l2"] for row in metrics["fit_history"]] == [100.0, 1000.0]
    # EASE on MovieLens-100K is far above chance (HR@10 0.1 for 1 target among 100 candidates)
    assert metrics["sampled"]["HR@10"] > 0.5 and metrics["sampled"]["NDCG@10"] > 0.3
    line = json.loads((out / "rankings.jsonl").read_text().splitlines()[0])
    assert len(line["candidate_scores"]) == 100


def _cold_items_run(shared_data, tmp_path, model: str, params: dict) -> dict:
    """`training.benchmark --protocol cold-items` on the first 1,500 Beauty users (seed 2); its metrics."""
    from training.benchmark import main

    source = shared_data / "amazon-beauty"
    lines = (source / "Beauty.txt").read_text().splitlines()[:1500]
    data = tmp_path / "beauty.txt"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    argv = ["--format", "s3rec", "--data", str(data), "--attributes", str(source / "Beauty_item2attributes.json")]
    argv += ["--protocol", "cold-items", "--model", model, "--out", str(out), "--no-progress", "--seed", "2"]
    assert main([*argv, "--threads", "1", "--params", json.dumps(params)]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.data
def test_benchmark_cold_items_protocol_reports_model_baselines_cold_and_warm(shared_data, tmp_path, capsys) -> None:
    metrics = _cold_items_run(shared_data, tmp_path, "sasrec", {"hidden": 32, "max_epochs": 1, "max_len": 20})
    assert metrics["protocol"] == "cold-items" and metrics["cold_seed"] == 2
    assert metrics["test_users"] + metrics["warm_test_users"] == 1500
    baselines = [b[s] for b in metrics["baselines"].values() for s in ("cold", "warm")]
    for figures in (metrics["cold"], metrics["warm"], *baselines):
        assert 0.0 <= figures["NDCG@10"] <= figures["HR@10"] <= 1.0
    assert set(metrics["baselines"]) == {"category_pop", "attribute_overlap"}
    # SASRec chose the cold items' content scale on validation and says so.
    assert metrics["fit_history"][-1]["new_item_scale"] == metrics["params"]["new_item_scale"] >= 1.0
    # The same trained model with its new items by attributes alone: before and after in one run.
    before = metrics["attributes_alone"]
    # Every item without training events and with attributes: the drawn ones and, in this 1,500-user
    # slice of the catalog, many more.
    assert before["new_items"] >= metrics["cold_items"]
    assert before["warm"]["NDCG@10"] <= before["warm"]["HR@10"] and before["cold"]["NDCG@10"] <= before["cold"]["HR@10"]
    printed = capsys.readouterr().out
    assert "attribute_overlap cold" in printed and "sasrec warm" in printed
    assert "sasrec warm, new items by attributes alone" in printed
    assert f"with new items by attributes alone {before['warm']['NDCG@10']:.4f}" in printed


@pytest.mark.data
def test_benchmark_cold_items_protocol_compares_the_hybrid_with_its_main_model_before(
    shared_data, tmp_path, capsys
) -> None:
    metrics = _cold_items_run(
        shared_data,
        tmp_path,
        "hybrid",
        {"hidden": 32, "max_epochs": 2, "max_len": 20, "ease": {"dense_max_items": 1000}},
    )
    chosen = metrics["fit_history"][-1]
    # The mixing chosen on validation, with the before figures it was held to.
    assert chosen["valid_NDCG@10_established"] >= chosen["valid_NDCG@10_established_before"]
    assert {f"chosen_{k}" for k in ("expert_weight", "ease_weight", "new_offset")} <= set(chosen)
    assert metrics["params"]["new_offset"] == chosen["chosen_new_offset"]
    # Before: the main SASRec alone, new items by attributes alone, in the same run.
    before = metrics["attributes_alone"]
    assert before["new_items"] >= metrics["cold_items"]
    printed = capsys.readouterr().out
    assert "hybrid warm, new items by attributes alone" in printed
    assert f"with new items by attributes alone {before['warm']['NDCG@10']:.4f}" in printed
