"""Logistic regression on the ranker's features: the baseline the ESMM model must beat.

One weight per categorical value (one-hot, as embeddings of width 1) plus a linear term over the
numeric features, for each of two independent heads: P(click) trained on the click label, and
P(click and purchase) trained on the click-and-purchase label, both over all impressions. Its
`cvr_logit` is defined so that predict() returns that second probability as pCTCVR.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from training.ranker.base import Ranker
from training.ranker.features import FeatureBatch


class LogisticRegression(Ranker):
    kind = "logreg"
    offsets: torch.Tensor
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "lr": 2e-2,
        "weight_decay": 1e-5,
        "batch_size": 1024,
        "max_epochs": 30,
        "patience": 3,
        "max_seconds": 600.0,
    }

    def __init__(self, *, cardinalities: list[int], num_numeric: int, **params: Any) -> None:
        super().__init__(cardinalities=cardinalities, num_numeric=num_numeric, **params)
        offsets = torch.tensor([0, *self.cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.onehot = nn.Embedding(sum(self.cardinalities), 2)  # column 0: click, 1: click-and-purchase
        nn.init.zeros_(self.onehot.weight)
        self.linear = nn.Linear(self.num_numeric, 2)

    def _two(self, batch: FeatureBatch) -> torch.Tensor:
        return self.onehot(batch.categorical + self.offsets).sum(1) + self.linear(batch.numeric)

    def logits(self, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
        z = self._two(batch)
        ctr, ctcvr = z[:, 0], z[:, 1]
        # cvr_logit with sigmoid(ctr) x sigmoid(cvr) == sigmoid(ctcvr), clamped where the two
        # independent heads disagree (P(click and purchase) > P(click)).
        p_ctr, p_ctcvr = torch.sigmoid(ctr), torch.sigmoid(ctcvr)
        p_cvr = (p_ctcvr / p_ctr.clamp(min=1e-12)).clamp(1e-7, 1 - 1e-7)
        return ctr, torch.logit(p_cvr)

    @torch.no_grad()
    def predict(self, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
        z = self._two(batch)
        return torch.sigmoid(z[:, 0]), torch.sigmoid(z[:, 1])

    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        assert batch.click is not None and batch.purchase is not None
        z = self._two(batch)
        return F.binary_cross_entropy_with_logits(z[:, 0], batch.click) + F.binary_cross_entropy_with_logits(
            z[:, 1], batch.purchase * batch.click
        )
