"""ESMM (Ma et al., SIGIR 2018): click and purchase probabilities trained over the entire
impression space.

One embedding table per categorical field, shared by both towers; each tower is an MLP over the
concatenated embeddings and numeric features. The CTR tower is trained on every impression with the
click label; the CVR tower is never trained on clicked impressions alone (the sample-selection bias
ESMM removes): its output only enters the loss through pCTCVR = pCTR x pCVR, trained on every
impression with the click-and-purchase label.

    loss = BCE(pCTR, click) + ctcvr_weight x BCE(pCTCVR, click and purchase)

computed from logits in log space (log pCTCVR = logsigmoid(a) + logsigmoid(b)) so that tiny
probabilities do not underflow.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from training.ranker.base import Ranker
from training.ranker.features import FeatureBatch


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate on both ends (Maechler 2012)."""
    x = x.clamp(max=-1e-20)  # x = 0 (a probability of exactly 1) would give -inf
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def esmm_loss(
    ctr_logit: torch.Tensor,
    cvr_logit: torch.Tensor,
    click: torch.Tensor,
    purchase: torch.Tensor,
    ctcvr_weight: float = 1.0,
) -> torch.Tensor:
    """Mean over impressions of BCE(pCTR, click) + w x BCE(pCTR x pCVR, click and purchase)."""
    ctr_loss = F.binary_cross_entropy_with_logits(ctr_logit, click)
    log_ctcvr = F.logsigmoid(ctr_logit) + F.logsigmoid(cvr_logit)
    conv = purchase * click
    ctcvr_loss = -(conv * log_ctcvr + (1.0 - conv) * log1mexp(log_ctcvr)).mean()
    return ctr_loss + ctcvr_weight * ctcvr_loss


class _Tower(nn.Module):
    """ReLU MLP to one logit. Dropout only while training: at serving the loop is just the
    matrix products (a few hundred candidates take well under a millisecond)."""

    def __init__(self, width: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        sizes = [width, *hidden, 1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
                if self.training and self.dropout:
                    x = F.dropout(x, self.dropout, training=True)
        return x.squeeze(1)


class ESMM(Ranker):
    kind = "esmm"
    offsets: torch.Tensor
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "embedding_dim": 8,
        "hidden": [32, 16],  # [64, 32] measured the same AUCs (bench/ranker.py) at twice the cost
        "dropout": 0.1,
        "ctcvr_weight": 1.0,
        "lr": 3e-3,
        "weight_decay": 1e-5,
        "batch_size": 512,
        "max_epochs": 30,
        "patience": 3,
        "max_seconds": 600.0,
    }

    def __init__(self, *, cardinalities: list[int], num_numeric: int, **params: Any) -> None:
        super().__init__(cardinalities=cardinalities, num_numeric=num_numeric, **params)
        dim = int(self.params["embedding_dim"])
        # One table for all fields (offsets per field): one gather per batch instead of one per field.
        offsets = torch.tensor([0, *self.cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.embedding = nn.Embedding(sum(self.cardinalities), dim)
        nn.init.normal_(self.embedding.weight, std=0.05)
        width = dim * len(self.cardinalities) + self.num_numeric
        hidden = [int(h) for h in self.params["hidden"]]
        dropout = float(self.params["dropout"])
        self.ctr_tower = _Tower(width, hidden, dropout)
        self.cvr_tower = _Tower(width, hidden, dropout)

    def shared(self, batch: FeatureBatch) -> torch.Tensor:
        """The input both towers see: field embeddings (shared) and numeric features."""
        emb = self.embedding(batch.categorical + self.offsets).flatten(1)
        return torch.cat([emb, batch.numeric], dim=1)

    def logits(self, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.shared(batch)
        return self.ctr_tower(x), self.cvr_tower(x)

    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        assert batch.click is not None and batch.purchase is not None
        ctr, cvr = self.logits(batch)
        return esmm_loss(ctr, cvr, batch.click, batch.purchase, float(self.params["ctcvr_weight"]))
