from __future__ import annotations

import pytest
import torch
from torch import nn

from training.loop import Validation, run_epochs


class _Counter(nn.Module):
    """One weight that each training epoch sets to the epoch's number, so the weights a run ends
    with say which epoch they come from."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.modes: list[bool] = []

    def train_epoch(self, epoch: int) -> float:
        self.modes.append(self.training)
        with torch.no_grad():
            self.weight.fill_(float(epoch))
        return 10.0 / epoch


def _scripted(model: _Counter, scores: list[float]) -> Validation:
    model.modes.append(model.training)
    epoch = int(model.weight.item())
    return Validation(score=scores[epoch - 1], metrics={"NDCG@10": scores[epoch - 1]}, shown={"valid": 1.0})


def test_it_stops_after_patience_epochs_without_a_better_score_and_keeps_the_best_weights() -> None:
    model = _Counter()
    scores = [0.1, 0.3, 0.2, 0.25, 0.29, 0.9, 0.95]

    report = run_epochs(
        model,
        model.train_epoch,
        validate=lambda: _scripted(model, scores),
        max_epochs=7,
        patience=3,
        max_seconds=3600,
    )

    assert report.epochs == 5  # epochs 3, 4 and 5 do not beat epoch 2
    assert report.best_epoch == 2
    assert report.best_valid == {"NDCG@10": 0.3}
    assert model.weight.item() == 2.0
    assert [row["loss"] for row in report.history] == [10.0, 5.0, 10.0 / 3, 2.5, 2.0]
    assert all(row["valid"] == 1.0 for row in report.history)
    # trained in training mode, validated and left in eval mode
    assert model.modes == [True, False] * 5
    assert not model.training


def test_without_validation_the_last_epoch_counts_as_the_best() -> None:
    model = _Counter()
    seen: list[tuple[float, str]] = []

    report = run_epochs(
        model,
        model.train_epoch,
        validate=None,
        max_epochs=4,
        patience=1,
        max_seconds=3600,
        progress=lambda fraction, stage, row: seen.append((fraction, stage)),
    )

    assert (report.epochs, report.best_epoch, report.best_valid) == (4, 4, {})
    assert model.weight.item() == 4.0
    assert seen == [(0.25, "epoch 1"), (0.5, "epoch 2"), (0.75, "epoch 3"), (1.0, "epoch 4")]


def test_it_stops_before_an_epoch_that_would_end_past_the_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(0, 1000, 10))  # each epoch takes 10 "seconds"
    monkeypatch.setattr("training.loop.time.monotonic", lambda: next(clock))
    model = _Counter()

    report = run_epochs(model, model.train_epoch, validate=None, max_epochs=50, patience=1, max_seconds=35)

    # after epoch 3 (30 s) a fourth would end at 40 s > 35 s
    assert report.epochs == 3
    assert [row["seconds"] for row in report.history] == [10.0, 20.0, 30.0]
