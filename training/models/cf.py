"""EASE (Steck 2019): order-free collaborative filtering, the "cf" model.

A linear item-to-item model B = argmin ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0, solved in
closed form from the inverse of the regularised Gram matrix X^T X + l2*I. The dense B is never
stored: each item keeps its top-k weights as neighbour lists, like the kNN model, so checkpoints
stay small. The Gram matrix is built over the `max_items` most popular items (a bound on memory
and time: max_items^2 floats); rarer items get no EASE neighbours of their own.

`fit` needs scipy (lazily imported); scoring needs torch only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from training.base import FitReport, ProgressCallback
from training.models._common import seed_everything
from training.models.itemknn import NeighbourModel, interaction_matrix, svd_embeddings, top_k_rows

DEFAULTS: dict[str, Any] = {
    "l2": 200.0,
    "neighbours": 200,
    "max_items": 20000,
    "history_decay": 1.0,  # order-free: every history item counts the same
    "max_history": 200,
    "dims": 64,
}
_ROW_CHUNK = 1024


class EASE(NeighbourModel):
    kind = "cf"
    defaults = DEFAULTS

    def fit(
        self, dataset: Any, *, progress: ProgressCallback | None = None, seed: int = 0, valid: Any = None
    ) -> FitReport:
        seed_everything(seed)
        x = interaction_matrix(dataset)
        counts = np.asarray(x.sum(0)).ravel()
        counts[0] = 0
        m = min(int(self.params["max_items"]), int(np.count_nonzero(counts)))
        keep = np.sort(np.argsort(-counts, kind="stable")[:m])  # item indices in the Gram matrix
        xs = x[:, keep]
        gram = torch.from_numpy((xs.T @ xs).toarray().astype(np.float32))
        gram.diagonal().add_(float(self.params["l2"]))
        if progress:
            progress(0.2, "inverting the Gram matrix", None)
        chol = torch.linalg.cholesky(gram)
        del gram
        p = torch.cholesky_inverse(chol)
        del chol
        p.div_(-p.diagonal().unsqueeze(0))  # B_ij = -P_ij / P_jj
        p.fill_diagonal_(0.0)
        b = p.numpy()
        if progress:
            progress(0.7, "neighbour lists", None)
        k = int(self.params["neighbours"])
        n_cols = self.num_items + 1
        all_idx = np.zeros((n_cols, k), dtype=np.int32)
        all_sim = np.zeros((n_cols, k), dtype=np.float32)
        for start in range(0, m, _ROW_CHUNK):
            rows = b[start : start + _ROW_CHUNK]
            idx, val = top_k_rows(rows, k)
            all_idx[keep[start : start + _ROW_CHUNK], : idx.shape[1]] = keep[idx] * (val > 0)
            all_sim[keep[start : start + _ROW_CHUNK], : val.shape[1]] = val
        del p, b
        self._store(all_idx, all_sim, svd_embeddings(x, int(self.params["dims"]), seed))
        if progress:
            progress(1.0, "done", None)
        return FitReport(epochs=1, best_epoch=1)
