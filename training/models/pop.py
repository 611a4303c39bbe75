"""Popularity: the cold-start fallback. Plain counts, or counts with an exponential time decay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from training.base import FitReport, ProgressCallback, Recommender
from training.models._common import finish_scores

DEFAULTS: dict[str, Any] = {
    # None = plain counts; else an event's weight halves every half_life_days before the newest event.
    "half_life_days": None,
    # Weigh events by their event-type weight (a purchase counts more than a view).
    "use_event_weights": False,
}


class Popularity(Recommender):
    kind = "pop"
    counts: torch.Tensor

    def __init__(self, num_items: int, **params: Any) -> None:
        super().__init__(num_items, **{**DEFAULTS, **params})
        self.register_buffer("counts", torch.zeros(num_items + 1, dtype=torch.float32))

    def fit(
        self, dataset: Any, *, progress: ProgressCallback | None = None, seed: int = 0, valid: Any = None
    ) -> FitReport:
        weights = dataset.weights.astype(np.float64) if self.params["use_event_weights"] else None
        half_life = self.params["half_life_days"]
        if half_life and dataset.has_timestamps and dataset.num_interactions:
            age_days = (dataset.timestamps.max() - dataset.timestamps) / 86400.0
            decay = np.power(0.5, age_days / float(half_life))
            weights = decay if weights is None else weights * decay
        counts = np.bincount(dataset.items, weights=weights, minlength=self.num_items + 1)[: self.num_items + 1]
        self.fit_counts(counts)
        if progress:
            progress(1.0, "counted", None)
        return FitReport(epochs=1, best_epoch=1)

    def fit_counts(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts, dtype=np.float32).copy()
        counts[0] = 0.0
        self.counts.copy_(torch.from_numpy(counts))

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        return finish_scores(self.counts.unsqueeze(0).repeat(len(histories), 1))

    def item_embeddings(self) -> torch.Tensor:
        # One dimension: every item is "similar" to every other; popularity has no notion of likeness.
        return self.counts.unsqueeze(1).clone()
