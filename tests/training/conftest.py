"""Synthetic data with a planted pattern, shared by the training tests."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import InteractionDataset

BLOCKS = 8
BLOCK_SIZE = 12
SEQ_LEN = 7


def planted_dataset(num_users: int = 480, seed: int = 0) -> InteractionDataset:
    """Each user stays inside one block of 12 items and walks it in order (item i -> i + 1, cyclic):
    co-occurrence reveals the block and order reveals the next item. Blocks are equally popular, so
    popularity can't tell them apart. Every item has its block as an attribute."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(num_users):
        block = u % BLOCKS
        start = int(rng.integers(BLOCK_SIZE))
        for step in range(SEQ_LEN):
            item = block * BLOCK_SIZE + (start + step) % BLOCK_SIZE + 1
            users.append(f"u{u}")
            items.append(f"i{item}")
            times.append(1_000_000.0 + 3600.0 * step + u)
    attributes = {
        f"i{b * BLOCK_SIZE + k + 1}": {"category": f"block{b}"} for b in range(BLOCKS) for k in range(BLOCK_SIZE)
    }
    return InteractionDataset.from_events(users, items, times, item_attributes=attributes)


@pytest.fixture(scope="session")
def planted() -> InteractionDataset:
    return planted_dataset()
