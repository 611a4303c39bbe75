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

import numpy as np
import torch
from torch import nn

from training.base import FitReport, ProgressCallback
from training.loop import Validation, run_epochs
from training.models._common import seed_everything
from training.ranker.evaluate import auc
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
        """Adam over shuffled mini-batches of `train` minimising `loss`, through the shared epoch
        loop (training.loop); with `valid`, early stopping on click AUC + purchase AUC.
        Parameters from self.params: lr, weight_decay, batch_size, max_epochs, patience, max_seconds."""
        seed_everything(seed)
        p = self.params
        n = len(train)
        if n == 0:
            raise ValueError("no impressions to train the ranker on")
        rng = np.random.default_rng(seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
        batch_size = int(p["batch_size"])

        def train_epoch(epoch: int) -> float:
            perm = torch.from_numpy(rng.permutation(n))
            total, steps = 0.0, 0
            for start in range(0, n, batch_size):
                loss = self.loss(train.subset(perm[start : start + batch_size]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, steps = total + float(loss.detach()), steps + 1
            return total / max(steps, 1)

        def validate() -> Validation:
            assert valid is not None
            p_ctr, p_ctcvr = self.predict(valid)
            metrics = {"click_auc": auc(valid.click, p_ctr), "purchase_auc": auc(valid.purchase, p_ctcvr)}
            score = sum(v for v in metrics.values() if v == v)  # NaN (one class only) counts as 0
            return Validation(score=score, metrics=metrics, shown={f"valid_{k}": v for k, v in metrics.items()})

        return run_epochs(
            self,
            train_epoch,
            validate=validate if valid is not None and len(valid) else None,
            max_epochs=int(p["max_epochs"]),
            patience=int(p["patience"]),
            max_seconds=float(p["max_seconds"]),
            progress=progress,
        )

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cardinalities": self.cardinalities,
            "num_numeric": self.num_numeric,
            "params": self.params,
        }
