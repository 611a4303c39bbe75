"""The evaluation protocol of shared/data/REFERENCE.md, and the metric functions.

Full ranking: the model scores every item, the user's history items (and padding) are masked
out, and the 0-based rank of the target among the rest gives HR@K (rank < K) and
NDCG@K (1 / log2(rank + 2) when rank < K). Ties with the target count against it only for
items with a lower index (a stable descending sort), so results are deterministic.

Imports torch and numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

KS: tuple[int, ...] = (5, 10, 20)
SAMPLED_KS: tuple[int, ...] = (1, 5, 10)


# ---- metric functions on 0-based ranks ----------------------------------------------------------
def hit_rate(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    return float((ranks < k).mean()) if ranks.size else 0.0


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Each ranking's NDCG@k with one relevant item: 1/log2(rank + 2) inside the top k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ndcg(ranks: np.ndarray, k: int) -> float:
    """One relevant item: DCG = 1/log2(rank + 2) inside the top k, ideal DCG = 1."""
    gains = ndcg_gains(ranks, k)
    return float(gains.mean()) if gains.size else 0.0


def mrr(ranks: np.ndarray) -> float:
    ranks = np.asarray(ranks, dtype=np.float64)
    return float((1.0 / (ranks + 1.0)).mean()) if ranks.size else 0.0


def coverage(top_lists: np.ndarray, num_items: int) -> float:
    """Share of the catalog (items 1..num_items) that appears in at least one list."""
    items = np.unique(np.asarray(top_lists).ravel())
    items = items[items > 0]
    return float(items.size / num_items) if num_items else 0.0


def intra_list_diversity(top_lists: np.ndarray, attributes: np.ndarray) -> float:
    """Mean over lists of the mean pairwise Jaccard distance between the items' attribute sets
    (category, brand...). `attributes` is the (num_items + 1, A) 0-padded attribute matrix.
    Two items without any attribute count as identical."""
    lists = torch.as_tensor(np.asarray(top_lists), dtype=torch.long)
    if lists.ndim != 2 or lists.shape[1] < 2 or lists.shape[0] == 0:
        return 0.0
    attrs = torch.as_tensor(attributes, dtype=torch.long)
    num_attr = int(attrs.max()) + 1
    total = 0.0
    k = lists.shape[1]
    pairs = k * (k - 1)
    for start in range(0, lists.shape[0], 1024):
        chunk = lists[start : start + 1024]
        ids = attrs[chunk]  # (B, k, A)
        multi = torch.zeros(chunk.shape[0], k, num_attr)
        multi.scatter_(2, ids, 1.0)
        multi[:, :, 0] = 0.0
        inter = multi @ multi.transpose(1, 2)
        size = multi.sum(2)
        union = size.unsqueeze(2) + size.unsqueeze(1) - inter
        jaccard = torch.where(union > 0, inter / union.clamp(min=1e-9), torch.ones_like(union))
        distance = (1.0 - jaccard).sum((1, 2)) / pairs  # the diagonal is 0
        total += float(distance.sum())
    return total / lists.shape[0]


# ---- ranking ------------------------------------------------------------------------------------
def mask_histories(scores: torch.Tensor, histories: Sequence[Sequence[int]]) -> torch.Tensor:
    """Set already-seen items and padding to -inf, in place."""
    rows = [np.full(len(h), i, dtype=np.int64) for i, h in enumerate(histories)]
    if rows:
        r = torch.from_numpy(np.concatenate(rows))
        c = torch.from_numpy(np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]))
        scores[r, c] = float("-inf")
    scores[:, 0] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target: items scored higher, plus equal-scored lower indices."""
    target_scores = scores.gather(1, targets.view(-1, 1))
    greater = (scores > target_scores).sum(1)
    cols = torch.arange(scores.shape[1]).view(1, -1)
    ties = ((scores == target_scores) & (cols < targets.view(-1, 1))).sum(1)
    return greater + ties


@dataclass
class EvalResult:
    full: dict[str, float]
    sampled: dict[str, float] = field(default_factory=dict)
    ranks: np.ndarray | None = None
    top: np.ndarray | None = None  # (users, top_n) item indices, best first
    candidate_scores: list[dict[int, float]] | None = None


def evaluate(
    model: Any,
    eval_set: Any,
    *,
    num_items: int,
    ks: Sequence[int] = KS,
    attributes: np.ndarray | None = None,
    top_n: int = 0,
    batch_size: int = 1024,
    with_candidates: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Full-ranking metrics of `model` (anything with .score(histories)) on an EvalSet.

    Returns HR@K, NDCG@K for each K, MRR, coverage@10 and (with attributes) diversity@10. With
    eval_set.negatives, also the sampled metrics (target ranked among its negatives only).
    """
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    n = len(eval_set)
    ranks = np.zeros(n, dtype=np.int64)
    list_k = max(10, top_n)
    tops = np.zeros((n, list_k), dtype=np.int64)
    sampled_ranks: list[int] = []
    candidates: list[dict[int, float]] = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            hist = eval_set.histories[start:stop]
            scores = model.score(hist).float()
            targets = torch.as_tensor(eval_set.targets[start:stop], dtype=torch.long)
            if eval_set.negatives is not None:
                for row, negs in enumerate(eval_set.negatives[start:stop]):
                    cand = torch.cat([targets[row : row + 1], torch.as_tensor(negs, dtype=torch.long)])
                    cand_scores = scores[row, cand]
                    # Same tie rule as the full ranking: the target is first among equals only
                    # against candidates with a higher index.
                    better = (cand_scores[1:] > cand_scores[0]) | (
                        (cand_scores[1:] == cand_scores[0]) & (cand[1:] < cand[0])
                    )
                    sampled_ranks.append(int(better.sum()))
                    if with_candidates:
                        candidates.append(dict(zip(cand.tolist(), cand_scores.tolist(), strict=True)))
            mask_histories(scores, hist)
            ranks[start:stop] = target_ranks(scores, targets).numpy()
            k = min(list_k, scores.shape[1] - 1)
            tops[start:stop, :k] = torch.topk(scores, k, dim=1).indices.numpy()
            if progress:
                progress(stop, n)
    if was_training and hasattr(model, "train"):
        model.train()
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"HR@{k}"] = hit_rate(ranks, k)
        metrics[f"NDCG@{k}"] = ndcg(ranks, k)
    metrics["MRR"] = mrr(ranks)
    metrics["coverage@10"] = coverage(tops[:, :10], num_items)
    if attributes is not None and attributes.size and int(attributes.max()) > 0:
        metrics["diversity@10"] = intra_list_diversity(tops[:, :10], attributes)
    sampled: dict[str, float] = {}
    if eval_set.negatives is not None:
        sr = np.asarray(sampled_ranks)
        for k in SAMPLED_KS:
            sampled[f"HR@{k}"] = hit_rate(sr, k)
            if k > 1:
                sampled[f"NDCG@{k}"] = ndcg(sr, k)
        sampled["MRR"] = mrr(sr)
    return EvalResult(
        full=metrics,
        sampled=sampled,
        ranks=ranks,
        top=tops[:, :top_n] if top_n else None,
        candidate_scores=candidates if with_candidates else None,
    )


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per name, one column per metric."""
    columns: list[str] = []
    for metrics in rows.values():
        columns.extend(c for c in metrics if c not in columns)
    width = max([len(n) for n in rows] + [6])
    head = " ".join([" " * width, *(f"{c:>12}" for c in columns)])
    lines = [head]
    for name, metrics in rows.items():
        cells = [f"{metrics[c]:12.4f}" if c in metrics and not math.isnan(metrics[c]) else f"{'':>12}" for c in columns]
        lines.append(" ".join([name.ljust(width), *cells]))
    return "\n".join(lines)
