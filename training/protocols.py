"""Evaluation protocols beyond the plain leave-one-out full ranking (numpy only, plus torch for
the baselines' scores).

- `with_sampled_negatives`: the NCF protocol ("sampled"): each evaluated user's target is ranked
  among `count` items the user never interacted with (uniform, distinct, seeded), for test and
  validation alike.
- `cold_items_split`: the "cold-items" protocol: a seeded random `fraction` of the items loses every
  interaction from the training data; the test users are those whose last item is one of them
  (full ranking over all items, history masked); the other test users are the warm test.
- `CategoryPopularity` and `AttributeOverlap`: the two attribute baselines of the cold-items protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from training.data import EvalSet, InteractionDataset, Split, split_leave_one_out

SAMPLED_NEGATIVES = 99
COLD_FRACTION = 0.1


# ---- sampled -------------------------------------------------------------------------------------
def sample_negatives(
    num_items: int, rated: Sequence[np.ndarray], count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per user, `count` distinct items in 1..num_items outside that user's `rated` items (all of
    the unrated ones when fewer remain), in the order drawn."""
    out: list[np.ndarray] = []
    for items in rated:
        excluded = set(np.asarray(items).tolist())
        available = num_items - len(excluded - {0})
        want = min(count, max(available, 0))
        chosen: dict[int, None] = {}
        while len(chosen) < want:
            for value in rng.integers(1, num_items + 1, size=2 * (want - len(chosen)) + 8).tolist():
                if value not in excluded and value not in chosen:
                    chosen[value] = None
                    if len(chosen) == want:
                        break
        out.append(np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    return out


def with_sampled_negatives(split: Split, *, count: int = SAMPLED_NEGATIVES, seed: int = 0) -> Split:
    """The split with `count` sampled negatives per test and validation user: items absent from the
    user's whole sequence (test target included), so a negative is never an item they rated."""
    rng = np.random.default_rng(seed)
    full = split.full
    seqs = full.sequences()
    n = full.num_items

    def attach(eval_set: EvalSet) -> EvalSet:
        rated = [seqs[int(u)] for u in eval_set.users.tolist()]
        return replace(eval_set, negatives=sample_negatives(n, rated, count, rng))

    info = {**split.info, "protocol": "sampled", "negatives": count, "negatives_seed": seed}
    return replace(split, test=attach(split.test), valid=attach(split.valid), info=info)


# ---- cold items ----------------------------------------------------------------------------------
@dataclass
class ColdItemsSplit:
    split: Split  # train/refit without any cold-item event; test = the cold test users
    warm_test: EvalSet  # the other test users (their target was trained on), same model
    cold_items: np.ndarray  # item indices, sorted


def cold_items_split(dataset: InteractionDataset, *, fraction: float = COLD_FRACTION, seed: int = 0) -> ColdItemsSplit:
    """Leave-one-out, then every event of a seeded random `fraction` of the items (those with any
    event) is removed from the training and refit data.

    Cold test: users whose last item is cold, seeing their whole history before it (a cold item
    in it stays: the customer did see that new item). Warm test: the other test users.
    Validation keeps the users whose validation target is warm (early stopping and selection see
    no cold item), so nothing about the cold items is learned before the test.
    """
    base = split_leave_one_out(dataset)
    rng = np.random.default_rng(seed)
    present = np.nonzero(dataset.item_counts() > 0)[0]
    present = present[present > 0]
    n_cold = max(1, round(fraction * present.size))
    cold = np.sort(rng.choice(present, size=n_cold, replace=False))
    is_cold = np.zeros(dataset.num_items + 1, dtype=bool)
    is_cold[cold] = True

    train = base.train.select(~is_cold[base.train.items])
    refit = base.refit.select(~is_cold[base.refit.items]) if base.refit is not None else None
    cold_rows = np.nonzero(is_cold[base.test.targets])[0]
    warm_rows = np.nonzero(~is_cold[base.test.targets])[0]
    valid = base.valid.subset(np.nonzero(~is_cold[base.valid.targets])[0])
    split = Split(
        train=train,
        valid=valid,
        test=base.test.subset(cold_rows),
        full=dataset,
        refit=refit,
        kind="loo",
        info={"protocol": "cold-items", "cold_fraction": fraction, "cold_seed": seed, "cold_items": int(n_cold)},
    )
    return ColdItemsSplit(split=split, warm_test=base.test.subset(warm_rows), cold_items=cold)


# ---- attribute baselines -------------------------------------------------------------------------
def _attribute_sets(dataset: InteractionDataset) -> list[np.ndarray]:
    return [dataset.item_attributes(i) for i in range(dataset.num_items + 1)]


class CategoryPopularity:
    """Popularity within the category of the customer's last item.

    The category of an item is its most specific attribute: the one fewest items carry (the
    deepest category or the brand when attributes have no names, as in the S3-Rec files). Items
    sharing the last item's most specific attribute come first, then those sharing its next
    broader one, and so on; within a group, by training popularity; the rest by popularity.
    """

    def __init__(self, train: InteractionDataset) -> None:
        self.num_items = train.num_items
        self.attrs = _attribute_sets(train)
        pop = train.item_counts()
        pop[0] = 0.0
        self.pop = torch.from_numpy(pop / (pop.max() + 1.0)).float()  # in [0, 1)
        sizes = np.bincount(train.attr_ids, minlength=train.num_attributes + 1)
        self.attr_size = sizes
        # attribute -> its items, for the group masks
        order = np.argsort(train.attr_ids, kind="stable")
        owners = np.repeat(np.arange(train.num_items + 1), np.diff(train.attr_offsets))
        self.members = np.split(owners[order], np.cumsum(sizes)[:-1])

    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        out = self.pop.repeat(len(histories), 1)
        for row, history in enumerate(histories):
            if not len(history):
                continue
            attrs = self.attrs[int(history[-1])]
            # broadest first, so the most specific group is written last and wins
            for level, a in enumerate(sorted(attrs.tolist(), key=lambda a: -int(self.attr_size[a])), 1):
                out[row, torch.from_numpy(self.members[a])] = level + self.pop[torch.from_numpy(self.members[a])]
        out[:, 0] = float("-inf")
        return out


class AttributeOverlap:
    """Attribute overlap with the customer's last `last` items: the sum over them of the cosine
    between attribute sets (binary vectors), the latest item weighing most (`decay` per step back).
    Ties (same attributes) fall to the evaluator's deterministic rule, not to popularity, which
    would bury every new item."""

    def __init__(self, train: InteractionDataset, *, last: int = 5, decay: float = 0.5) -> None:
        self.num_items = train.num_items
        self.last = last
        self.decay = decay
        n_attr = train.num_attributes + 1
        matrix = torch.zeros(train.num_items + 1, n_attr)
        for item, attrs in enumerate(_attribute_sets(train)):
            if attrs.size:
                matrix[item, torch.from_numpy(attrs)] = 1.0
        matrix[:, 0] = 0.0
        norms = matrix.sum(1, keepdim=True).sqrt().clamp(min=1e-9)
        self.unit = matrix / norms  # (items + 1, attributes)

    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        query = torch.zeros(len(histories), self.unit.shape[1])
        for row, history in enumerate(histories):
            recent = np.asarray(history, dtype=np.int64)[-self.last :][::-1]
            for step, item in enumerate(recent.tolist()):
                query[row] += (self.decay**step) * self.unit[item]
        out = query @ self.unit.T
        out[:, 0] = float("-inf")
        return out


BASELINES: dict[str, Any] = {"category_pop": CategoryPopularity, "attribute_overlap": AttributeOverlap}
