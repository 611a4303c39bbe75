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

from training.base import ProgressCallback
from training.models.itemknn import NeighbourModel, top_k_rows

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

    def _fill_neighbours(self, x: Any, idx: np.ndarray, sims: np.ndarray, progress: ProgressCallback | None) -> None:
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
        k = idx.shape[1]
        for start in range(0, m, _ROW_CHUNK):
            rows = b[start : start + _ROW_CHUNK]
            top_idx, top_val = top_k_rows(rows, k)
            idx[keep[start : start + _ROW_CHUNK], : top_idx.shape[1]] = keep[top_idx] * (top_val > 0)
            sims[keep[start : start + _ROW_CHUNK], : top_val.shape[1]] = top_val
