"""The ranking stage: click and purchase probabilities for retrieved candidates.

Registry: build_ranker(kind, cardinalities=..., num_numeric=..., **params). Like training.models,
imports torch and numpy only (the TorchServe worker of the ranker's .mar uses this package).
"""

from __future__ import annotations

import importlib
from typing import Any

from training.ranker.base import Ranker

RANKER_CLASSES: dict[str, tuple[str, str]] = {
    "esmm": ("training.ranker.esmm", "ESMM"),
    "logreg": ("training.ranker.logreg", "LogisticRegression"),
}
RANKER_KINDS = tuple(RANKER_CLASSES)


def ranker_class(kind: str) -> type[Ranker]:
    if kind not in RANKER_CLASSES:
        raise ValueError(f"unknown ranker kind {kind!r}; expected one of {sorted(RANKER_CLASSES)}")
    module, name = RANKER_CLASSES[kind]
    cls: type[Ranker] = getattr(importlib.import_module(module), name)
    return cls


def build_ranker(kind: str, *, cardinalities: list[int], num_numeric: int, **params: Any) -> Ranker:
    return ranker_class(kind)(cardinalities=cardinalities, num_numeric=num_numeric, **params)
