"""Item-to-item co-occurrence kNN: "customers who interacted with this also interacted with".

Similarity is an asymmetric cosine over the binary user x item matrix,
sim(i, j) = c_ij / (n_i^alpha * n_j^(1 - alpha) + shrink); each item keeps only its top-k
neighbours (buffers `nbr_idx`, `nbr_sim`), so the checkpoint stays small for any catalog. A user's
scores sum the neighbour lists of their history items, recent items weighing more.

`fit` needs scipy (imported lazily); scoring and loading need torch only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from training.base import FitReport, ProgressCallback, Recommender
from training.models._common import finish_scores, seed_everything, tune_allocator

DEFAULTS: dict[str, Any] = {
    "neighbours": 100,
    "alpha": 0.5,
    "shrink": 10.0,
    "history_decay": 0.8,  # weight of an item = decay ** (its distance from the end of the history)
    "max_history": 50,
    "dims": 64,  # item_embeddings(): a truncated SVD of the normalised interaction matrix
}
_ROW_CHUNK = 512


def interaction_matrix(dataset: Any, binary: bool = True) -> Any:
    """scipy CSR users x (num_items + 1), column 0 empty."""
    from scipy import sparse

    rows = dataset.user_of_event()
    values = np.ones(rows.shape[0], dtype=np.float32) if binary else dataset.weights.astype(np.float32)
    x = sparse.csr_matrix(
        (values, (rows, dataset.items)), shape=(dataset.num_users, dataset.num_items + 1), dtype=np.float32
    )
    x.sum_duplicates()
    if binary:
        x.data[:] = 1.0
    return x


def svd_embeddings(x: Any, dims: int, seed: int) -> np.ndarray:
    """(num_items + 1, dims) item factors of the column-normalised matrix, scaled by sqrt(sigma)."""
    from scipy import sparse
    from scipy.sparse.linalg import svds

    n_cols = x.shape[1]
    dims = max(1, min(dims, min(x.shape) - 2))
    col_norm = np.sqrt(np.asarray(x.multiply(x).sum(0)).ravel())
    col_norm[col_norm == 0] = 1.0
    xn = (x @ sparse.diags(1.0 / col_norm)).astype(np.float64)
    if min(xn.shape) <= dims + 1 or xn.nnz == 0:
        return np.zeros((n_cols, dims), dtype=np.float32)
    rng = np.random.default_rng(seed)
    _, s, vt = svds(xn, k=dims, v0=rng.standard_normal(min(xn.shape)))
    emb = (vt.T * np.sqrt(np.maximum(s, 0))).astype(np.float32)
    emb[0] = 0.0
    return emb


def top_k_rows(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k largest positive entries: (indices, values), best first, 0/0.0 padded."""
    k = min(k, matrix.shape[1])
    part = np.argpartition(-matrix, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(matrix, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    keep = vals > 0
    return np.where(keep, idx, 0), np.where(keep, vals, 0.0).astype(np.float32)


class NeighbourModel(Recommender):
    """Scoring and storage shared by models that reduce to per-item neighbour lists."""

    kind = "neighbours"
    nbr_idx: torch.Tensor
    nbr_sim: torch.Tensor
    emb: torch.Tensor
    defaults: dict[str, Any] = DEFAULTS

    def __init__(self, num_items: int, **params: Any) -> None:
        super().__init__(num_items, **{**self.defaults, **params})
        k = int(self.params["neighbours"])
        self.register_buffer("nbr_idx", torch.zeros(num_items + 1, k, dtype=torch.int32))
        self.register_buffer("nbr_sim", torch.zeros(num_items + 1, k, dtype=torch.float32))
        self.register_buffer("emb", torch.zeros(num_items + 1, int(self.params["dims"]), dtype=torch.float32))

    def fit(
        self, dataset: Any, *, progress: ProgressCallback | None = None, seed: int = 0, valid: Any = None
    ) -> FitReport:
        seed_everything(seed)
        x = interaction_matrix(dataset)
        k = int(self.params["neighbours"])
        idx = np.zeros((self.num_items + 1, k), dtype=np.int32)
        sims = np.zeros((self.num_items + 1, k), dtype=np.float32)
        self._fill_neighbours(x, idx, sims, progress)
        emb = svd_embeddings(x, int(self.params["dims"]), seed)
        self.nbr_idx.copy_(torch.from_numpy(idx))
        self.nbr_sim.copy_(torch.from_numpy(sims))
        self.emb = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        self.params["dims"] = int(emb.shape[1])
        if progress:
            progress(1.0, "done", None)
        return FitReport(epochs=1, best_epoch=1)

    def _fill_neighbours(self, x: Any, idx: np.ndarray, sims: np.ndarray, progress: ProgressCallback | None) -> None:
        """Write each item's neighbours, best first, into the zeroed (num_items + 1, k) `idx`/`sims`
        from the binary users x items CSR matrix `x`."""
        raise NotImplementedError

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        tune_allocator()
        max_history = int(self.params["max_history"])
        decay = float(self.params["history_decay"])
        rows_l, items_l, weights_l = [], [], []
        for row, history in enumerate(histories):
            h = np.asarray(history, dtype=np.int64)[-max_history:]
            h = h[h > 0]
            if h.size:
                rows_l.append(np.full(h.size, row, dtype=np.int64))
                items_l.append(h)
                # decay ** (distance from the end of the history): the latest item weighs 1
                weights_l.append(np.power(decay, np.arange(h.size - 1, -1, -1, dtype=np.float32)))
        width = self.num_items + 1
        out = torch.zeros(len(histories) * width)
        if rows_l:
            rows = torch.from_numpy(np.concatenate(rows_l))
            items = torch.from_numpy(np.concatenate(items_l))
            weights = torch.from_numpy(np.concatenate(weights_l).astype(np.float32))
            # Only real history entries are expanded: (entries, k) neighbour ids and weights.
            targets = rows.unsqueeze(1) * width + self.nbr_idx[items].long()
            values = self.nbr_sim[items] * weights.unsqueeze(1)
            out.index_add_(0, targets.view(-1), values.view(-1))
        return finish_scores(out.view(len(histories), width))

    def item_embeddings(self) -> torch.Tensor:
        return self.emb.clone()

    @torch.no_grad()
    def similar_items(self, items: Sequence[int], k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        query = torch.as_tensor(list(items), dtype=torch.long)
        k = min(k, self.nbr_idx.shape[1])
        return self.nbr_sim[query, :k].clone(), self.nbr_idx[query, :k].long()


class ItemKNN(NeighbourModel):
    kind = "itemknn"
    defaults = DEFAULTS

    def _fill_neighbours(self, x: Any, idx: np.ndarray, sims: np.ndarray, progress: ProgressCallback | None) -> None:
        xt = x.T.tocsr()
        counts = np.asarray(x.sum(0)).ravel().astype(np.float64)
        alpha, shrink = float(self.params["alpha"]), float(self.params["shrink"])
        left = np.power(np.maximum(counts, 1.0), alpha)
        right = np.power(np.maximum(counts, 1.0), 1.0 - alpha)
        k = idx.shape[1]
        n_cols = self.num_items + 1
        for start in range(1, n_cols, _ROW_CHUNK):
            stop = min(start + _ROW_CHUNK, n_cols)
            co = (xt[start:stop] @ x).toarray()  # (chunk, items) co-occurrence counts
            chunk = co / (left[start:stop, None] * right[None, :] + shrink)
            chunk[np.arange(stop - start), np.arange(start, stop)] = 0.0
            chunk[:, 0] = 0.0
            top_idx, top_val = top_k_rows(chunk, k)
            idx[start:stop, : top_idx.shape[1]] = top_idx
            sims[start:stop, : top_val.shape[1]] = top_val
            if progress:
                progress(stop / n_cols * 0.9, "neighbours", None)
