"""Ranker checkpoints: a directory with config.json, model.pt (a state_dict), features.json (the
feature spec with its vocabularies) and items.json (the item attributes at training time, for
requests that name candidates by id). No pickles; torch and the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.ranker import build_ranker
from training.ranker.base import Ranker
from training.ranker.features import FeatureSpec, ItemFeatures, items_from_json, items_to_json

RANKER_CHECKPOINT_FORMAT = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
FEATURES_FILE = "features.json"
ITEMS_FILE = "items.json"
#: What save_ranker_checkpoint writes and a ranker .mar carries.
RANKER_CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, FEATURES_FILE, ITEMS_FILE)


@dataclass
class LoadedRanker:
    model: Ranker
    spec: FeatureSpec
    items: dict[str, ItemFeatures]
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def save_ranker_checkpoint(
    model: Ranker,
    directory: str | Path,
    *,
    spec: FeatureSpec,
    items: Mapping[str, ItemFeatures],
    extra: dict[str, Any] | None = None,
) -> Path:
    if model.cardinalities != spec.cardinalities():
        raise ValueError("the model's embedding sizes do not match the feature spec's vocabularies")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format_version": RANKER_CHECKPOINT_FORMAT, "stage": "ranker", **model.config(), "extra": extra or {}}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, directory / WEIGHTS_FILE)
    (directory / FEATURES_FILE).write_text(spec.to_json(), encoding="utf-8")
    (directory / ITEMS_FILE).write_text(items_to_json(items), encoding="utf-8")
    return directory


def load_ranker_checkpoint(directory: str | Path, *, map_location: str = "cpu") -> LoadedRanker:
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    if int(config.get("format_version", 0)) != RANKER_CHECKPOINT_FORMAT or config.get("stage") != "ranker":
        raise ValueError(f"{directory} is not a ranker checkpoint of format {RANKER_CHECKPOINT_FORMAT}")
    spec = FeatureSpec.from_json((directory / FEATURES_FILE).read_text(encoding="utf-8"))
    model = build_ranker(
        config["kind"],
        cardinalities=list(config["cardinalities"]),
        num_numeric=int(config["num_numeric"]),
        **config.get("params", {}),
    )
    if model.cardinalities != spec.cardinalities():
        raise ValueError(f"{directory}: config.json and features.json disagree on the vocabularies")
    state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    items = items_from_json((directory / ITEMS_FILE).read_text(encoding="utf-8"))
    return LoadedRanker(model=model, spec=spec, items=items, config=config, extra=config.get("extra", {}))
