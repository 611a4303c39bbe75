"""Helpers shared by the models (torch and numpy only)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def pad_left(histories: Sequence[Sequence[int]], max_len: int | None = None) -> torch.Tensor:
    """(B, L) long tensor, each history's last max_len items right-aligned, 0-padded on the left.
    L is the longest (truncated) history in the batch, at least 1."""
    rows = [np.asarray(h, dtype=np.int64)[-max_len:] if max_len else np.asarray(h, dtype=np.int64) for h in histories]
    width = max([r.shape[0] for r in rows] + [1])
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        if r.shape[0]:
            out[i, width - r.shape[0] :] = r
    return torch.from_numpy(out)


def finish_scores(scores: torch.Tensor) -> torch.Tensor:
    """Column 0 (padding) is never a recommendation."""
    scores[:, 0] = float("-inf")
    return scores


_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Keep freed memory in glibc's heap instead of returning it to the kernel.

    Score and logit matrices are tens of MB; by default each allocation is a fresh mmap whose
    page faults cost more than the matrix product itself on small VMs. Idempotent; no-op off glibc.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: the largest value glibc accepts
        libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD: give back only beyond 256 MB free
    except (OSError, AttributeError):
        pass


def bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
