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
    models: dict[str, Any] = {}
    for kind in kinds:
        model = build_ranker(
            kind, cardinalities=spec.cardinalities(), num_numeric=test.numeric.shape[1], **(params or {}).get(kind, {})
        )
        started = time.monotonic()
        model.fit(train, valid=valid, seed=seed, progress=progress)
        result.seconds[kind] = time.monotonic() - started
        result.logged_position[kind] = _aucs(test, *model.predict(test))
        result.serving_position[kind] = _aucs(test_fixed, *model.predict(test_fixed))
        models[kind] = model
    return result, models, spec
