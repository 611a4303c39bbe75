"""Train, select on validation, evaluate on test: the one entry point the product and the benchmark share.

    result = train_and_evaluate(dataset, "sasrec", {}, split="time", progress=cb, seed=0)
    save_checkpoint(result.model, directory, item_index=dataset.item_index, extra={...})

Models without early stopping (pop, itemknn, cf) are fitted on the training part for the
validation figures, then refitted on everything the test histories contain (training plus
validation events, never a test target) before the test: that is what a deployment would do with
them, and it costs seconds. SASRec keeps its early-stopped weights from the training part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from training.base import FitReport, ProgressCallback, Recommender
from training.data import InteractionDataset, Split, split_by_time, split_leave_one_out
from training.metrics import KS, EvalResult, evaluate
from training.models import build_model

REFIT_KINDS = frozenset({"pop", "itemknn", "cf"})


@dataclass
class TrainResult:
    model: Recommender
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    report: FitReport
    split: Split
    sampled_metrics: dict[str, float] = field(default_factory=dict)
    test: EvalResult | None = None
    train_seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


def make_split(dataset: InteractionDataset, split: str = "loo", **options: Any) -> Split:
    """ "loo" (last = test, second-last = validation) or "time" (options: test_cutoff, valid_cutoff,
    holdout_fraction; see training.data.split_by_time)."""
    if split == "loo":
        return split_leave_one_out(dataset)
    if split == "time":
        return split_by_time(dataset, **options)
    raise ValueError(f"unknown split {split!r}; expected 'loo' or 'time'")


def _scaled(progress: ProgressCallback | None, lo: float, hi: float) -> ProgressCallback | None:
    if progress is None:
        return None

    def inner(fraction: float, stage: str, metrics: dict[str, float] | None) -> None:
        progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), stage, metrics)

    return inner


def train_and_evaluate(
    dataset: InteractionDataset | Split,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    split: str = "loo",
    split_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    seed: int = 0,
    refit: bool | None = None,
    top_n: int = 0,
    with_candidates: bool = False,
    threads: int | None = None,
) -> TrainResult:
    """Split (unless given a Split), fit `kind` with `params` on the training part (SASRec early-stops
    on validation NDCG@10), measure validation and test with the full-ranking protocol.

    `refit` (default: True for pop/itemknn/cf) refits on train + validation events before the test;
    with refit=True SASRec retrains for the best epoch count found on validation (doubling the time),
    which is what a deployment wants: a model that has seen the latest events.
    `top_n` keeps each test user's top-n items in result.test.top; `with_candidates` the sampled
    candidates' scores (when the split has negatives). Progress goes 0 -> 1 across all stages.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    data_split = dataset if isinstance(dataset, Split) else make_split(dataset, split, **(split_options or {}))
    full = data_split.full
    model = build_model(kind, full.num_items, **(params or {}))
    do_refit = (kind in REFIT_KINDS) if refit is None else refit
    attributes = full.attribute_matrix() if full.num_attributes else None

    started = time.monotonic()
    report = model.fit(
        data_split.train, progress=_scaled(progress, 0.0, 0.45 if do_refit else 0.9), seed=seed, valid=data_split.valid
    )
    fit_seconds = time.monotonic() - started
    # An early-stopped model (SASRec) has already measured the epoch it kept: a second pass over
    # the validation users would cost as much as one epoch's validation.
    valid = dict(report.best_valid) or (
        evaluate(model, data_split.valid, num_items=full.num_items, ks=KS).full if len(data_split.valid) else {}
    )
    if progress:
        progress(0.45 if do_refit else 0.9, "validated", valid)
    if do_refit and data_split.refit is not None:
        refit_started = time.monotonic()
        if "max_epochs" in model.params and report.best_epoch:
            # An epoch-trained model (SASRec) refits for the number of epochs validation chose.
            chosen = model.params["max_epochs"]
            model.params["max_epochs"] = report.best_epoch
            model.fit(data_split.refit, progress=_scaled(progress, 0.45, 0.9), seed=seed)
            model.params["max_epochs"] = chosen
        else:
            model.fit(data_split.refit, progress=_scaled(progress, 0.45, 0.9), seed=seed)
        fit_seconds += time.monotonic() - refit_started
    model.eval()

    def eval_progress(done: int, total: int) -> None:
        if progress:
            progress(0.9 + 0.1 * done / max(total, 1), "testing", None)

    test = evaluate(
        model,
        data_split.test,
        num_items=full.num_items,
        ks=KS,
        attributes=attributes,
        top_n=top_n,
        with_candidates=with_candidates,
        progress=eval_progress,
    )
    if progress:
        progress(1.0, "done", test.full)
    return TrainResult(
        model=model,
        valid_metrics=valid,
        test_metrics=test.full,
        report=report,
        split=data_split,
        sampled_metrics=test.sampled,
        test=test,
        train_seconds=fit_seconds,
        params=dict(model.params),
    )
