"""The epoch loop every trained model shares: epochs, a validation score after each, early stopping
(`patience` epochs without a better score), a wall-clock budget, and the best epoch's weights kept.

A model supplies one epoch of training (`train_epoch(epoch) -> mean loss`) and, when it has a
validation set, `validate() -> Validation`; SASRec (training.models.sasrec) and the rankers
(training.ranker) both train through `run_epochs`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from training.base import FitReport, ProgressCallback


@dataclass(frozen=True)
class Validation:
    score: float  # higher is better: selects the epoch whose weights are kept
    metrics: dict[str, float]  # the best epoch's become FitReport.best_valid
    shown: dict[str, float] = field(default_factory=dict)  # added to the epoch's history row


def run_epochs(
    model: nn.Module,
    train_epoch: Callable[[int], float],
    *,
    validate: Callable[[], Validation] | None,
    max_epochs: int,
    patience: int,
    max_seconds: float,
    progress: ProgressCallback | None = None,
) -> FitReport:
    """Up to `max_epochs` epochs of `train_epoch` (the model in training mode), each followed by
    `validate` (in eval mode). Stops after `patience` epochs without a better score, or before an
    epoch that would end past `max_seconds` (epochs take about equally long). Without `validate`
    the last epoch counts as the best. The model ends in eval mode holding the best epoch's weights.
    """
    report = FitReport()
    best_score, best_state, bad_epochs = float("-inf"), None, 0
    started = time.monotonic()
    for epoch in range(1, max_epochs + 1):
        model.train()
        loss = train_epoch(epoch)
        model.eval()
        row: dict[str, float] = {"epoch": float(epoch), "loss": float(loss)}
        report.epochs = epoch
        if validate is not None:
            result = validate()
            row.update(result.shown)
            if result.score > best_score:
                best_score, bad_epochs = result.score, 0
                best_state = copy.deepcopy(model.state_dict())
                report.best_epoch, report.best_valid = epoch, dict(result.metrics)
            else:
                bad_epochs += 1
        else:
            report.best_epoch = epoch
        row["seconds"] = time.monotonic() - started
        report.history.append(row)
        if progress:
            progress(epoch / max_epochs, f"epoch {epoch}", row)
        if validate is not None and bad_epochs >= patience:
            break
        if row["seconds"] + row["seconds"] / epoch > max_seconds:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return report
