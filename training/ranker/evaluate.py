"""Offline evaluation of the ranking stage on a time-based hold-out of logged impressions.

AUC for click (pCTR against the click label) and for purchase (pCTCVR against the click-and-
purchase label), for the ranker and two baselines on the same rows: (a) the retrieval score alone
and (b) logistic regression on the same features. The hold-out is the last `test_fraction` of the
impressions by time, validation (early stopping) the slice before it; a customer's later
impressions are never used to predict their earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from training.base import ProgressCallback
from training.ranker.features import FeatureBatch, FeatureSpec, ImpressionTable


def auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (Mann-Whitney U / (positives x negatives)), ties counted half.
    NaN when only one class is present."""
    y = np.asarray(torch.as_tensor(labels).detach().cpu(), dtype=np.float64) > 0.5
    s = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64)
    pos = int(y.sum())
    neg = y.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average ranks of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [s.size]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def within_group_auc(labels: Any, scores: Any, groups: Any) -> float:
    """AUC inside each group (e.g. the logged position), averaged with the group's positives as
    weights; groups with one class only are left out. NaN when no group has both classes.

    Why: logged clicks depend strongly on the position, and a score that set the order (the
    retrieval score) carries the position in it, while the ranker's serving scores do not (they
    are computed at one fixed position). Comparing within a position compares how well each score
    tells the clicked from the not-clicked among items shown at the same place, which is what the
    rank stage is for."""
    y = np.asarray(torch.as_tensor(labels).detach().cpu(), dtype=np.float64) > 0.5
    s = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64)
    g = np.asarray(groups)
    total = weight = 0.0
    for value in np.unique(g):
        rows = g == value
        positives = int(y[rows].sum())
        if positives == 0 or positives == int(rows.sum()):
            continue
        total += positives * auc(y[rows], s[rows])
        weight += positives
    return total / weight if weight else float("nan")


@dataclass
class TimeSplit:
    train: ImpressionTable
    valid: ImpressionTable
    test: ImpressionTable


def split_impressions_by_time(
    table: ImpressionTable, *, test_fraction: float = 0.2, valid_fraction: float = 0.1
) -> TimeSplit:
    """Oldest (1 - test - valid) for training, then validation, the newest test_fraction for the test."""
    order = np.argsort(np.asarray(table.timestamp), kind="stable")
    n = order.size
    n_test = round(n * test_fraction)
    n_valid = round(n * valid_fraction)
    n_train = n - n_test - n_valid
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"{n} impressions are too few for a time split")
    return TimeSplit(
        train=table.subset(order[:n_train]),
        valid=table.subset(order[n_train : n_train + n_valid]),
        test=table.subset(order[n_train + n_valid :]),
    )


@dataclass
class RankerEvaluation:
    #: model name ("esmm", "logreg", "retrieval_score") -> {"click_auc", "purchase_auc"}
    logged_position: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the same with every test row's position set to the serving position (how the ranker scores)
    serving_position: dict[str, dict[str, float]] = field(default_factory=dict)
    #: serving-position scores, AUC within each logged position (within_group_auc), weighted by positives
    within_position: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _aucs(batch: FeatureBatch, p_ctr: torch.Tensor, p_ctcvr: torch.Tensor) -> dict[str, float]:
    return {"click_auc": auc(batch.click, p_ctr), "purchase_auc": auc(batch.purchase, p_ctcvr)}


def evaluate_rankers(
    table: ImpressionTable,
    *,
    kinds: tuple[str, ...] = ("esmm", "logreg"),
    params: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.1,
    progress: ProgressCallback | None = None,
) -> tuple[RankerEvaluation, dict[str, Any], FeatureSpec]:
    """Fit each kind on the training part (features fitted there too), early-stop on validation,
    measure AUCs on the test part. Returns (evaluation, fitted models by kind, feature spec)."""
    import time

    from training.ranker import build_ranker

    split = split_impressions_by_time(table, test_fraction=test_fraction, valid_fraction=valid_fraction)
    spec = FeatureSpec.fit(split.train)
    train, valid, test = spec.transform(split.train), spec.transform(split.valid), spec.transform(split.test)
    test_fixed = spec.transform(split.test, position=spec.serving_position)
    result = RankerEvaluation(
        rows={"train": len(train), "valid": len(valid), "test": len(test)},
        rates={
            "click": float(train.click.mean()) if train.click is not None else 0.0,
            "purchase": float(train.purchase.mean()) if train.purchase is not None else 0.0,
        },
    )
    retrieval = torch.as_tensor(np.asarray(split.test.retrieval_score, dtype=np.float32))
    baseline = _aucs(test, retrieval, retrieval)
    result.logged_position["retrieval_score"] = baseline
    result.serving_position["retrieval_score"] = baseline
    positions = np.asarray(split.test.position)

    def within(p_ctr: torch.Tensor, p_ctcvr: torch.Tensor) -> dict[str, float]:
        return {
            "click_auc": within_group_auc(test.click, p_ctr, positions),
            "purchase_auc": within_group_auc(test.purchase, p_ctcvr, positions),
        }

    result.within_position["retrieval_score"] = within(retrieval, retrieval)
    models: dict[str, Any] = {}
    for kind in kinds:
        model = build_ranker(
            kind, cardinalities=spec.cardinalities(), num_numeric=test.numeric.shape[1], **(params or {}).get(kind, {})
        )
        started = time.monotonic()
        model.fit(train, valid=valid, seed=seed, progress=progress)
        result.seconds[kind] = time.monotonic() - started
        result.logged_position[kind] = _aucs(test, *model.predict(test))
        fixed = model.predict(test_fixed)
        result.serving_position[kind] = _aucs(test_fixed, *fixed)
        result.within_position[kind] = within(*fixed)
        models[kind] = model
    return result, models, spec
