from __future__ import annotations

import pytest

from tests.training.conftest import planted_dataset
from training.checkpoint import load_checkpoint, save_checkpoint
from training.metrics import evaluate
from training.trainer import train_and_evaluate


@pytest.mark.parametrize("split", ["loo", "time"])
def test_train_and_evaluate_reports_validation_and_test_metrics_with_progress(split, tmp_path) -> None:
    dataset = planted_dataset(240)
    seen: list[float] = []
    result = train_and_evaluate(
        dataset,
        "itemknn",
        {"neighbours": 20, "dims": 8},
        split=split,
        progress=lambda fraction, stage, metrics: seen.append(fraction),
        seed=0,
    )
    assert result.valid_metrics["NDCG@10"] > 0.3
    assert result.test_metrics["HR@10"] > 0.5
    assert "diversity@10" in result.test_metrics
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert result.split.kind == split
    save_checkpoint(result.model, tmp_path, item_index=dataset.item_index)
    assert load_checkpoint(tmp_path).model.kind == "itemknn"


def test_train_and_evaluate_rejects_an_unknown_split() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        train_and_evaluate(planted_dataset(16), "pop", split="random")


def test_sasrec_through_train_and_evaluate_early_stops_on_validation() -> None:
    params = {"hidden": 16, "max_len": 8, "lr": 5e-3, "max_epochs": 30, "patience": 2, "dropout": 0.1}
    result = train_and_evaluate(planted_dataset(240), "sasrec", params, seed=0)
    assert 1 <= result.report.best_epoch <= result.report.epochs <= 30
    assert result.valid_metrics == result.report.best_valid
    # The kept weights are the best epoch's: validating them again gives the reported figures.
    again = evaluate(result.model, result.split.valid, num_items=result.split.full.num_items).full
    assert result.report.best_valid == pytest.approx(again)
    assert [row["epoch"] for row in result.report.history] == list(range(1, result.report.epochs + 1))


def test_sasrec_refit_trains_for_the_epoch_count_chosen_on_validation() -> None:
    # Settings where validation stops early (best epoch 8 of 9 run), so the refit's count is a choice.
    params = {"hidden": 16, "max_len": 8, "lr": 1e-2, "max_epochs": 12, "patience": 1, "dropout": 0.1}
    epochs: list[int] = []

    def progress(fraction: float, stage: str, metrics: dict[str, float] | None) -> None:
        if metrics and "epoch" in metrics:
            epochs.append(int(metrics["epoch"]))

    result = train_and_evaluate(planted_dataset(240), "sasrec", params, seed=0, refit=True, progress=progress)
    # The first fit's epochs, then the refit's: exactly as many as validation chose.
    assert result.report.best_epoch < params["max_epochs"]
    assert epochs == [*range(1, result.report.epochs + 1), *range(1, result.report.best_epoch + 1)]
    assert result.model.params["max_epochs"] == 12
    assert result.test_metrics["HR@10"] > 0.5
