"""The ranker contract: every ranking model turns a FeatureBatch into two logits.

    ctr_logit     -> pCTR   = P(click | shown)
    cvr_logit     -> pCVR   = P(purchase | clicked)
    pCTCVR = pCTR x pCVR    = P(click and purchase | shown)

Both probabilities are what serving orders by (`clicks` -> pCTR, `purchases` -> pCTCVR,
`revenue` -> pCTCVR x price). Models are torch Modules: `state_dict()` is the checkpoint's weights
and `config()` is enough to rebuild the module before loading them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from training.base import FitReport, ProgressCallback
from training.ranker.features import FeatureBatch


class Ranker(nn.Module, ABC):
    #: Registry name: "esmm", "logreg".
    kind: ClassVar[str]
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, cardinalities: list[int], num_numeric: int, **params: Any) -> None:
        super().__init__()
        self.cardinalities = [int(c) for c in cardinalities]
        self.num_numeric = int(num_numeric)
        self.params: dict[str, Any] = {**self.DEFAULTS, **params}

    @abstractmethod
    def logits(self, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(ctr_logit, cvr_logit), each of shape (N,)."""

    @abstractmethod
    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        """Training loss over the batch (mean); needs the batch's labels."""

    @torch.no_grad()
    def predict(self, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(pCTR, pCTCVR), each (N,)."""
        ctr, cvr = self.logits(batch)
        p_ctr = torch.sigmoid(ctr)
        return p_ctr, p_ctr * torch.sigmoid(cvr)

    def fit(
        self,
        train: FeatureBatch,
        *,
        valid: FeatureBatch | None = None,
        progress: ProgressCallback | None = None,
        seed: int = 0,
    ) -> FitReport:
        """Mini-batch training with the shared loop (training.trainer.fit_minibatches), early
        stopping on validation click + purchase AUC."""
        from training.trainer import fit_minibatches

        return fit_minibatches(self, train, valid=valid, progress=progress, seed=seed)

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cardinalities": self.cardinalities,
            "num_numeric": self.num_numeric,
            "params": self.params,
        }
