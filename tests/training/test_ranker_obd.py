"""The Open Bandit Dataset sample that the obp package ships, read without importing obp, as the
ranker's impressions (skipped when obp is not installed; nothing is ever downloaded)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from training.open_bandit import ObdUnavailable, concat_tables, open_bandit_directory, read_open_bandit
from training.ranker.evaluate import evaluate_rankers

try:
    open_bandit_directory()
except ObdUnavailable as exc:
    pytest.skip(f"Open Bandit Dataset sample unavailable: {exc}", allow_module_level=True)


def test_the_reader_finds_the_bundled_sample_without_importing_obp() -> None:
    table = read_open_bandit(behavior_policy="random", campaign="all")
    assert "obp" not in sys.modules
    assert len(table) == 10_000
    assert set(np.unique(table.position).tolist()) == {1, 2, 3}
    assert 0.001 < table.clicked.mean() < 0.02  # ZOZOTOWN's click rate is well under 1 %
    assert not table.purchased.any()
    assert len(table.items) == 80 and set(table.item) <= set(table.items)
    assert np.all(np.diff(table.timestamp) >= 0)
    # The retrieval score is the user's affinity for the shown item, non-zero for few of them.
    assert 0 < (table.retrieval_score > 0).mean() < 0.05
    with pytest.raises(ValueError):
        read_open_bandit(behavior_policy="greedy")


@pytest.mark.slow
def test_the_ranker_and_logistic_regression_train_on_it_and_report_click_auc() -> None:
    table = concat_tables([read_open_bandit(behavior_policy=p) for p in ("random", "bts")])
    result, _, _ = evaluate_rankers(
        table, seed=0, test_fraction=0.3, valid_fraction=0.2, params={"esmm": {"max_epochs": 5}}
    )
    for name in ("esmm", "logreg"):
        assert 0.0 <= result.logged_position[name]["click_auc"] <= 1.0
        assert math.isnan(result.logged_position[name]["purchase_auc"])  # the data has no purchases
