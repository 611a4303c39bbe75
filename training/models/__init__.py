"""Model registry: build_model(kind, num_items, **params). Imports torch and numpy only."""

from __future__ import annotations

import importlib
from typing import Any

from training.base import Recommender

#: kind -> (module, class). "cf" is EASE (order-free collaborative filtering); "hybrid" mixes
#: SASRec, a content expert and EASE (and scores new items from their attributes).
MODEL_CLASSES: dict[str, tuple[str, str]] = {
    "pop": ("training.models.pop", "Popularity"),
    "itemknn": ("training.models.itemknn", "ItemKNN"),
    "cf": ("training.models.cf", "EASE"),
    "sasrec": ("training.models.sasrec", "SASRec"),
    "hybrid": ("training.models.hybrid", "Hybrid"),
}
MODEL_KINDS = tuple(MODEL_CLASSES)


def model_class(kind: str) -> type[Recommender]:
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_CLASSES)}")
    module, name = MODEL_CLASSES[kind]
    cls: type[Recommender] = getattr(importlib.import_module(module), name)
    return cls


def build_model(kind: str, num_items: int, **params: Any) -> Recommender:
    return model_class(kind)(num_items, **params)
