"""The one contract every model implements.

Items are addressed by dense integer indices 1..num_items; index 0 is padding and never scored
as a recommendation. A "history" is a list of item indices, oldest first. Mapping between a shop's
own ids and indices is the job of `training.data.IndexMap`, saved beside every checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

# Called by fit() as progress(fraction_done in [0, 1], human-readable stage, metrics or None).
ProgressCallback = Callable[[float, str, "dict[str, float] | None"], None]


@dataclass
class FitReport:
    epochs: int = 0
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


class Recommender(nn.Module, ABC):
    """Base class: a torch Module so that `state_dict()` is the checkpoint's weights."""

    #: Registry name: "pop", "itemknn", "cf", "sasrec".
    kind: ClassVar[str]

    def __init__(self, num_items: int, **params: Any) -> None:
        super().__init__()
        self.num_items = num_items
        self.params: dict[str, Any] = dict(params)

    @abstractmethod
    def fit(
        self,
        dataset: Any,
        *,
        progress: ProgressCallback | None = None,
        seed: int = 0,
        valid: Any = None,
    ) -> FitReport:
        """Train on `dataset` (a `training.data.InteractionDataset` split for training).

        `valid` (a `training.data.EvalSet`) is for early stopping; models without epochs ignore it."""

    @abstractmethod
    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Scores of every item for each history: float tensor of shape (len(histories), num_items + 1).

        Column 0 (padding) must be -inf. Masking of already-seen items is the caller's job.
        """

    @abstractmethod
    def item_embeddings(self) -> torch.Tensor:
        """(num_items + 1, dim) vectors whose cosine similarity means "similar items"; row 0 is padding."""

    def config(self) -> dict[str, Any]:
        """JSON-serialisable: enough to rebuild the module before `load_state_dict`."""
        return {"kind": self.kind, "num_items": self.num_items, "params": self.params}

    @torch.no_grad()
    def similar_items(self, items: Sequence[int], k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k most similar items (excluding the item itself and padding) for each of `items`:
        (scores, indices), both (len(items), k). Default: cosine of `item_embeddings()`;
        neighbour-list models override it with their own lists."""
        emb = torch.nn.functional.normalize(self.item_embeddings().float(), dim=1)
        query = torch.as_tensor(list(items), dtype=torch.long)
        sims = emb[query] @ emb.T
        sims[:, 0] = float("-inf")
        sims[torch.arange(len(query)), query] = float("-inf")
        k = min(k, self.num_items - 1) if self.num_items > 1 else 0
        return torch.topk(sims, k, dim=1)
