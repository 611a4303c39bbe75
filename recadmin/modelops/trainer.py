"""Exported events -> `training/` dataset -> time-based split -> fit -> evaluate -> checkpoint.

The only module of recadmin that imports `training` (and so torch); loaded by the pipeline inside
the Celery task. Everything model-specific stays in `training/`: this file only adapts the
database export to its dataset and reports progress.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from recadmin.modelops.loader import EventArrays
from recadmin.modelops.models import TrainingStage
from recadmin.modelops.progress import Reporter, StageFailed, TrainOutcome
from recadmin.modelops.services import PIPELINE_OPTIONS

logger = logging.getLogger("recadmin.modelops.trainer")

# Options of the pipeline itself, never passed to a model: the ones a run's params are validated against.
PIPELINE_KEYS = frozenset(PIPELINE_OPTIONS)
DEFAULT_HOLDOUT_FRACTION = 0.1
# Where the product's pipeline departs from a model's own defaults. SASRec stops before an epoch
# would cross its time budget; the whole run (export, train, evaluate, archive, register) should
# stay under 15 minutes on a 2-core machine, and evaluating Beauty's 2 x 22k customers takes about
# a minute there, so training gets 12 minutes. A run's params override this.
# The hybrid trains two SASRecs (each with this budget) and EASE: about twice a SASRec run.
PIPELINE_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sasrec": {"max_seconds": 720.0},
    "hybrid": {"max_seconds": 360.0},
}
# Fewer evaluated customers than this (absolute, or share of all) make metrics noise.
MIN_EVAL_USERS = 20
MIN_EVAL_SHARE = 0.02


def model_params_for(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the model is built with: a run's params without the pipeline's own options, over the
    pipeline's defaults for that kind."""
    return {**PIPELINE_MODEL_DEFAULTS.get(kind, {}), **{k: v for k, v in params.items() if k not in PIPELINE_KEYS}}


def _ids_for(pks: np.ndarray, shop_ids: dict[int, str]) -> np.ndarray:
    """Shop ids for an array of primary keys, without a Python loop over the events."""
    unique, inverse = np.unique(pks, return_inverse=True)
    names = np.array([shop_ids[int(pk)] for pk in unique.tolist()], dtype=object)
    return names[inverse] if len(pks) else np.zeros(0, dtype=object)


def dataset_from_arrays(arrays: EventArrays) -> Any:
    """An `InteractionDataset` over the shop's ids: every active item is indexed (with its
    category and brand as attributes), so items without events can still be scored."""
    from training.data import InteractionDataset

    users = _ids_for(arrays.customer, arrays.customer_shop_ids)
    items = _ids_for(arrays.item, arrays.item_shop_ids)
    type_names = np.array(arrays.type_names or ["view"], dtype=object)
    weights = {name: float(w) for name, w in zip(arrays.type_names, _type_weights(arrays), strict=True)}
    return InteractionDataset.from_events(
        users,
        items,
        arrays.timestamp.astype(np.float64),
        type_names[arrays.types] if len(arrays) else np.zeros(0, dtype=object),
        type_weights=weights,
        item_attributes=arrays.item_attributes or None,
        catalog=sorted(arrays.item_shop_ids.values()),
    )


def _type_weights(arrays: EventArrays) -> list[float]:
    weights: list[float] = []
    for code in range(len(arrays.type_names)):
        found = arrays.weights[arrays.types == code]
        weights.append(float(found[0]) if found.size else 1.0)
    return weights


def split_for(dataset: Any, params: dict[str, Any]) -> Any:
    """A time-based hold-out of the shop's own events: the latest go to test, the ones before to
    validation (by days when given, else by a fraction of the events).

    When time does not separate customers' histories (imported data whose timestamps follow the
    file, one customer after another, leaves almost nobody with events on both sides of a cut-off),
    it falls back to leave-one-out (each customer's last event is test, the one before validation)
    and says so in `split.info`."""
    from training.data import split_by_time, split_leave_one_out

    split = _split_by_time(dataset, params, split_by_time)
    needed = max(MIN_EVAL_USERS, int(MIN_EVAL_SHARE * dataset.num_users))
    if min(len(split.valid), len(split.test)) >= needed or params.get("test_days") or params.get("valid_days"):
        return split
    loo = split_leave_one_out(dataset)
    loo.info = {
        **dict(loo.info or {}),
        "fallback": (
            f"time-based hold-out had only {len(split.valid)} validation / {len(split.test)} test customers "
            f"(needs {needed}); used leave-one-out"
        ),
    }
    logger.warning("Split: %s", loo.info["fallback"])
    return loo


def _split_by_time(dataset: Any, params: dict[str, Any], split_by_time: Any) -> Any:

    ts = dataset.timestamps
    newest = float(ts.max())
    test_cutoff = valid_cutoff = None
    if params.get("test_days"):
        test_cutoff = newest - float(params["test_days"]) * 86400.0
    if params.get("valid_days"):
        valid_cutoff = (test_cutoff if test_cutoff is not None else newest) - float(params["valid_days"]) * 86400.0
    return split_by_time(
        dataset,
        test_cutoff=test_cutoff,
        valid_cutoff=valid_cutoff,
        holdout_fraction=float(params.get("holdout_fraction", DEFAULT_HOLDOUT_FRACTION)),
    )


_EPOCH_RE = re.compile(r"epoch (\d+)")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


class EpochBudget:
    """Which of a model's two budgets, epochs or time, will end its training, and how it ended.

    SASRec stops at max_epochs, or before an epoch that would end past max_seconds, or after
    `patience` epochs without a better validation NDCG@10: "epoch 11/200" is the wrong thing to
    show when the time budget allows 40 epochs, and a bar that jumps from 8 % to done needs to say
    that training stopped early."""

    def __init__(self, *, max_epochs: int, max_seconds: float, patience: int) -> None:
        self.max_epochs = max_epochs
        self.max_seconds = max_seconds
        self.patience = patience

    def _epochs_in_time(self, completed: int, elapsed: float) -> int | None:
        if self.max_seconds <= 0 or completed <= 0 or elapsed <= 0:
            return None
        return int(self.max_seconds / (elapsed / completed))

    def label(self, *, epoch: int, completed: int, elapsed: float) -> str:
        """The stage text while epoch `epoch` runs, `completed` epochs having taken `elapsed` s."""
        in_time = self._epochs_in_time(completed, elapsed)
        if in_time is not None and in_time < self.max_epochs:
            left = max(0.0, self.max_seconds - elapsed)
            return (
                f"training epoch {epoch} of about {max(in_time, epoch)} that fit the time budget "
                f"({_duration(self.max_seconds)}, {_duration(left)} left; at most {self.max_epochs})"
            )
        if in_time is None and self.max_seconds > 0 and completed == 0:
            return f"training epoch {epoch}/{self.max_epochs} (time budget {_duration(self.max_seconds)})"
        return f"training epoch {epoch}/{self.max_epochs}"

    def stopped(self, *, epochs: int, elapsed: float, best_epoch: int = 0) -> str:
        """How training ended after `epochs` epochs and `elapsed` seconds ("" when the model has no
        epochs)."""
        if not self.max_epochs or epochs <= 0:
            return ""
        best = f", kept epoch {best_epoch}" if best_epoch and best_epoch != epochs else ""
        if epochs >= self.max_epochs:
            return f"trained all {self.max_epochs} epochs{best}"
        per_epoch = elapsed / epochs
        if self.max_seconds > 0 and elapsed + per_epoch > self.max_seconds:
            return (
                f"stopped at epoch {epochs} of {self.max_epochs}: the time budget of "
                f"{_duration(self.max_seconds)} was reached{best}"
            )
        return (
            f"stopped early at epoch {epochs} of {self.max_epochs}: no better validation NDCG@10 "
            f"for {self.patience} epochs{best}"
        )


def train(*, arrays: EventArrays, kind: str, params: dict[str, Any], reporter: Reporter, workdir: Path) -> TrainOutcome:
    """Fit and evaluate through `training.trainer.train_and_evaluate` (the entry point the
    benchmark shares), on this shop's split, then save the checkpoint the archive is built from."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.models import model_class
    from training.trainer import train_and_evaluate

    started = time.perf_counter()
    dataset = dataset_from_arrays(arrays)
    try:
        split = split_for(dataset, params)
    except ValueError as exc:
        raise StageFailed(TrainingStage.TRAINING, f"Could not split the events by time: {exc}") from exc
    if len(split.valid) == 0 or len(split.test) == 0:
        raise StageFailed(
            TrainingStage.TRAINING,
            f"The hold-out has {len(split.valid)} validation and {len(split.test)} test customers: "
            "more events spread over more time are needed to evaluate a model.",
        )
    logger.info(
        "Dataset: %d events, %d customers, %d items; %s split %s: train %d events, valid %d, test %d customers",
        dataset.num_interactions,
        dataset.num_users,
        dataset.num_items,
        split.kind,
        {k: (round(v) if isinstance(v, float) else v) for k, v in split.info.items()},
        split.train.num_interactions,
        len(split.valid),
        len(split.test),
    )

    model_params = model_params_for(kind, params)
    defaults = dict(getattr(model_class(kind), "defaults", None) or _module_defaults(kind))
    effective = {**defaults, **model_params}
    max_epochs = int(effective.get("max_epochs") or 0)
    budget = float(effective.get("max_seconds") or 0.0)
    epoch_budget = EpochBudget(max_epochs=max_epochs, max_seconds=budget, patience=int(effective.get("patience") or 0))
    fit_started = time.monotonic()
    evaluating = False
    fitted = False
    last_epoch: dict[str, float] = {}

    def on_progress(fraction: float, text: str, metrics: dict[str, float] | None) -> None:
        nonlocal evaluating, fitted
        if metrics and "epoch" in metrics and not fitted:
            last_epoch.update(metrics)
        if metrics:
            shown = ", ".join(
                f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("valid_") or k in ("loss", "NDCG@10")
            )
            logger.info("%s: %s", text, shown)
        stopped = ""
        if text == "validated" and not fitted:
            fitted = True
            stopped = epoch_budget.stopped(
                epochs=int(last_epoch.get("epoch", 0)), elapsed=float(last_epoch.get("seconds", 0.0))
            )
        # train_and_evaluate reports fitting up to 0.9, then the test evaluation.
        if fraction >= 0.9 or text == "testing":
            if not evaluating:
                evaluating = True
                # An early stop jumps the bar from its epoch to here: the stage says why.
                first = f"{stopped}; evaluating on the test hold-out" if stopped else "evaluating on the test hold-out"
                reporter.stage(TrainingStage.EVALUATING, first)
            reporter.within((fraction - 0.9) / 0.1, "evaluating on the test hold-out")
            return
        part = fraction / 0.9
        # Models that stop on a time budget (or early) rarely reach max_epochs: the bar follows
        # whichever of epochs and time is further along.
        if budget > 0:
            part = max(part, min(0.99, (time.monotonic() - fit_started) / budget))
        match = _EPOCH_RE.search(text or "")
        if text == "validated":
            label = f"{stopped}; refitting" if stopped else "evaluating on the validation hold-out"
        elif match and max_epochs and fitted:
            label = f"refitting epoch {match.group(1)} on all but the test events"
        elif match and max_epochs:
            epoch = int(match.group(1))
            completed = int(last_epoch.get("epoch", 0))
            label = epoch_budget.label(epoch=epoch, completed=completed, elapsed=float(last_epoch.get("seconds", 0.0)))
        else:
            label = f"training: {text}" if text else "training"
        reporter.within(part, label)

    # The worker shares the machine with the web and TorchServe processes.
    threads = max(1, min(torch.get_num_threads(), 4))
    result = train_and_evaluate(
        split, kind, model_params, progress=on_progress, seed=int(params.get("seed", 0)), threads=threads
    )
    if not evaluating:
        reporter.stage(TrainingStage.EVALUATING, "evaluated")
    logger.info(
        "valid NDCG@10 %.4f HR@10 %.4f; test NDCG@10 %.4f HR@10 %.4f",
        result.valid_metrics.get("NDCG@10", 0.0),
        result.valid_metrics.get("HR@10", 0.0),
        result.test_metrics.get("NDCG@10", 0.0),
        result.test_metrics.get("HR@10", 0.0),
    )
    report = result.report
    split_info = {"kind": split.kind, **split.info}
    checkpoint_dir = workdir / "checkpoint"
    save_checkpoint(
        result.model,
        checkpoint_dir,
        item_index=dataset.item_index,
        extra={"split": split_info, "best_epoch": report.best_epoch, "epochs": report.epochs},
    )
    return TrainOutcome(
        checkpoint_dir=checkpoint_dir,
        kind=kind,
        params=dict(result.params),
        valid_metrics={k: round(float(v), 6) for k, v in result.valid_metrics.items()},
        test_metrics={k: round(float(v), 6) for k, v in result.test_metrics.items()},
        num_events=int(dataset.num_interactions),
        num_users=int(dataset.num_users),
        num_items=int(dataset.num_items),
        extra={
            "stopped": epoch_budget.stopped(
                epochs=report.epochs,
                elapsed=float(report.history[-1].get("seconds", 0.0)) if report.history else 0.0,
                best_epoch=report.best_epoch,
            ),
            "epochs": report.epochs,
            "best_epoch": report.best_epoch,
            "history": report.history[-50:],
            "split": split_info,
            "valid_users": len(split.valid),
            "test_users": len(split.test),
            "train_seconds": round(result.train_seconds, 2),
            "seconds_to_checkpoint": round(time.perf_counter() - started, 2),
        },
    )


def _module_defaults(kind: str) -> dict[str, Any]:
    import importlib

    module = importlib.import_module(f"training.models.{kind}")
    return dict(getattr(module, "DEFAULTS", {}))
