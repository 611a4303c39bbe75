"""Train a ranker on logged impressions and write the checkpoint a ranker .mar is built from
(recadmin.modelops.archive.archive_build(..., stage="ranker")).

    exported = train_ranker_checkpoint(table, directory, kind="esmm", seed=0)

The newest `valid_fraction` of the impressions (by time) is held out for early stopping and for
the validation AUCs written into the checkpoint's config (extra.valid); the feature spec and the
item table come from the rest. The measurement against the baselines is
training.ranker.evaluate.evaluate_rankers (bench/ranker.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.base import FitReport, ProgressCallback
from training.ranker import build_ranker
from training.ranker.base import Ranker
from training.ranker.checkpoint import save_ranker_checkpoint
from training.ranker.features import NUMERIC_FIELDS, FeatureSpec, ImpressionTable


@dataclass
class ExportedRanker:
    model: Ranker
    spec: FeatureSpec
    report: FitReport
    directory: Path
    seconds: float


def train_ranker_checkpoint(
    table: ImpressionTable,
    directory: str | Path,
    *,
    kind: str = "esmm",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    valid_fraction: float = 0.1,
    progress: ProgressCallback | None = None,
    extra: dict[str, Any] | None = None,
) -> ExportedRanker:
    order = np.argsort(np.asarray(table.timestamp), kind="stable")
    n_valid = round(len(order) * valid_fraction)
    train_rows, valid_rows = order[: len(order) - n_valid], order[len(order) - n_valid :]
    if train_rows.size == 0:
        raise ValueError("no impressions to train the ranker on")
    train_table = table.subset(train_rows)
    spec = FeatureSpec.fit(train_table)
    train = spec.transform(train_table)
    valid = spec.transform(table.subset(valid_rows)) if valid_rows.size else None
    model = build_ranker(kind, cardinalities=spec.cardinalities(), num_numeric=len(NUMERIC_FIELDS), **(params or {}))
    started = time.monotonic()
    report = model.fit(train, valid=valid, seed=seed, progress=progress)
    seconds = time.monotonic() - started
    # The item table covers the catalog the impressions showed; stock and price in it are as logged.
    items = {item_id: table.items[item_id] for item_id in sorted(set(table.item)) if item_id in table.items}
    info = {
        "impressions": len(table),
        "train": int(train_rows.size),
        "valid": int(valid_rows.size),
        "valid_metrics": report.best_valid,
        "best_epoch": report.best_epoch,
        "seed": seed,
        **(extra or {}),
    }
    path = save_ranker_checkpoint(model, directory, spec=spec, items=items, extra=info)
    return ExportedRanker(model=model, spec=spec, report=report, directory=path, seconds=seconds)
