from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.data import EvalSet, read_s3rec, split_leave_one_out
from training.metrics import (
    coverage,
    evaluate,
    hit_rate,
    intra_list_diversity,
    mask_histories,
    mrr,
    ndcg,
    target_ranks,
)
from training.models import build_model


def test_hit_rate_ndcg_and_mrr_match_hand_computed_values() -> None:
    ranks = np.array([0, 1, 4, 9, 30])
    assert hit_rate(ranks, 1) == pytest.approx(0.2)
    assert hit_rate(ranks, 5) == pytest.approx(0.6)
    assert hit_rate(ranks, 10) == pytest.approx(0.8)
    expected_ndcg10 = (1.0 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11) + 0.0) / 5
    assert ndcg(ranks, 10) == pytest.approx(expected_ndcg10)
    assert ndcg(ranks, 5) == pytest.approx((1.0 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 31) / 5)


def test_target_rank_ignores_masked_history_and_breaks_ties_by_index() -> None:
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.5, 0.5, 0.1]])
    mask_histories(scores, [[1]])  # item 1 is in the history: not ranked
    assert scores[0, 0] == float("-inf")
    assert target_ranks(scores, torch.tensor([2])).tolist() == [0]
    # Items 3 and 4 tie: 3 (lower index) goes first.
    assert target_ranks(scores, torch.tensor([3])).tolist() == [1]
    assert target_ranks(scores, torch.tensor([4])).tolist() == [2]


def test_coverage_and_diversity() -> None:
    assert coverage(np.array([[1, 2], [2, 3]]), num_items=6) == pytest.approx(0.5)
    attrs = np.array([[0, 0], [1, 0], [1, 0], [2, 3]])  # items 1, 2 share attribute 1; item 3 differs
    same = intra_list_diversity(np.array([[1, 2]]), attrs)
    different = intra_list_diversity(np.array([[1, 3]]), attrs)
    assert same == pytest.approx(0.0)
    assert different == pytest.approx(1.0)


class _FixedScores:
    def __init__(self, scores: torch.Tensor) -> None:
        self.scores = scores

    def score(self, histories):
        return self.scores[: len(histories)].clone()


def test_evaluate_reports_full_and_sampled_metrics() -> None:
    scores = torch.tensor([[float("-inf"), 0.1, 0.9, 0.5, 0.3], [float("-inf"), 0.9, 0.1, 0.5, 0.3]])
    eval_set = EvalSet(
        users=np.array([0, 1]),
        histories=[np.array([2]), np.array([3])],
        targets=np.array([3, 4]),
        negatives=[np.array([1, 4]), np.array([2])],
    )
    result = evaluate(_FixedScores(scores), eval_set, num_items=4, top_n=3, with_candidates=True)
    # User 0: item 2 masked, target 3 ranks first. User 1: 3 masked, target 4 behind item 1.
    assert result.ranks.tolist() == [0, 1]
    assert result.full["HR@5"] == pytest.approx(1.0)
    assert result.full["NDCG@5"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    assert result.top[0].tolist() == [3, 4, 1]
    assert result.sampled["HR@1"] == pytest.approx(1.0)  # 0.5 > 0.1, 0.3 and 0.3 > 0.1
    assert result.candidate_scores[1] == {4: pytest.approx(0.3), 2: pytest.approx(0.1)}


@pytest.fixture(scope="module")
def beauty_split(request):
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("shared data not found")
    data = SHARED_DATA / "amazon-beauty"
    return split_leave_one_out(read_s3rec(data / "Beauty.txt", data / "Beauty_item2attributes.json"))


@pytest.mark.data
def test_evaluator_reproduces_the_published_poprec_row_when_counting_whole_sequences(beauty_split) -> None:
    full = beauty_split.full
    model = build_model("pop", full.num_items)
    model.fit_counts(full.item_counts())  # the leak of the original code: test items counted too
    metrics = evaluate(model, beauty_split.test, num_items=full.num_items).full
    published = {
        "HR@5": 0.0080,
        "NDCG@5": 0.0044,
        "HR@10": 0.0152,
        "NDCG@10": 0.0068,
        "HR@20": 0.0217,
        "NDCG@20": 0.0084,
    }
    assert {k: round(metrics[k], 4) for k in published} == published


@pytest.mark.data
def test_honest_prefix_popularity_gives_the_reference_figures(beauty_split) -> None:
    model = build_model("pop", beauty_split.full.num_items)
    model.fit(beauty_split.refit)  # every user's prefix: all but the test item
    metrics = evaluate(model, beauty_split.test, num_items=beauty_split.full.num_items).full
    assert round(metrics["HR@10"], 4) == 0.0135
    assert round(metrics["NDCG@10"], 4) == 0.0061
