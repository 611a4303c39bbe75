"""Checkpoints: a directory with config.json, model.pt (a state_dict) and items.json. No pickles.

Everything a model needs to score (popularity counts, neighbour lists, item attribute ids) is a
buffer in its state_dict, so the directory is self-contained. Imports torch and the standard
library only: the TorchServe worker loads checkpoints with this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.base import Recommender
from training.data import IndexMap

CHECKPOINT_FORMAT = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
ITEMS_FILE = "items.json"


@dataclass
class Loaded:
    model: Recommender
    item_index: IndexMap
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    model: Recommender, directory: str | Path, *, item_index: IndexMap, extra: dict[str, Any] | None = None
) -> Path:
    if len(item_index) != model.num_items:
        raise ValueError(f"item index has {len(item_index)} ids but the model scores {model.num_items} items")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format_version": CHECKPOINT_FORMAT, **model.config(), "extra": extra or {}}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    (directory / ITEMS_FILE).write_text(item_index.to_json(), encoding="utf-8")
    return directory


def load_checkpoint(directory: str | Path, *, map_location: str = "cpu") -> Loaded:
    from training.models import build_model

    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    version = int(config.get("format_version", 0))
    if version != CHECKPOINT_FORMAT:
        raise ValueError(f"unsupported checkpoint format {version} in {directory}")
    model = build_model(config["kind"], int(config["num_items"]), **config.get("params", {}))
    state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    item_index = IndexMap.from_json((directory / ITEMS_FILE).read_text(encoding="utf-8"))
    if len(item_index) != model.num_items:
        raise ValueError(f"{directory}: items.json has {len(item_index)} ids, the model {model.num_items}")
    return Loaded(model=model, item_index=item_index, config=config, extra=config.get("extra", {}))
