"""implicit's ALS on the same split and evaluator as training.benchmark: the bar the cf model must beat.

    python bench/als_baseline.py --format s3rec --data ../shared/data/amazon-beauty/Beauty.txt \
        [--attributes ...] [--factors 64] [--iterations 20] [--seed 0] [--out DIR] [--protocol sampled]

`--protocol sampled` adds the NCF metrics on the very split and negatives `training.benchmark
--protocol sampled --seed N` draws (99 unrated items per user).

Like the cf model in training.trainer: fitted on the training part for the validation figures,
then refitted on train + validation events (every test history, no test target) for the test.
A user's scores are their ALS factors (from that fit, whose rows are exactly the test histories)
times the item factors.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # implicit warns (and slows down) when BLAS threads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.benchmark import load_split
from training.metrics import KS, evaluate, format_table
from training.models._common import finish_scores
from training.models.itemknn import interaction_matrix


class _ALSScorer:
    """Scores eval-set users in order: evaluate() passes histories batch by batch, in order."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray) -> None:
        self.user_factors = torch.from_numpy(np.ascontiguousarray(user_factors))
        self.item_factors = torch.from_numpy(np.ascontiguousarray(item_factors))
        self.users = torch.from_numpy(users)
        self.cursor = 0

    def score(self, histories):
        rows = self.users[self.cursor : self.cursor + len(histories)]
        self.cursor += len(histories)
        return finish_scores(self.user_factors[rows] @ self.item_factors.T)


def fit_als(dataset, factors: int, iterations: int, seed: int):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, iterations=iterations, random_state=seed, num_threads=2)
    model.fit(interaction_matrix(dataset), show_progress=False)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--format", default="s3rec", choices=["s3rec", "movielens", "split"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--attributes")
    parser.add_argument("--test")
    parser.add_argument("--negatives")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--protocol", default="full", choices=["full", "sampled"])
    args = parser.parse_args(argv)

    split = load_split(args)
    n = split.full.num_items
    started = time.monotonic()
    model = fit_als(split.train, args.factors, args.iterations, args.seed)
    valid = evaluate(
        _ALSScorer(model.user_factors, model.item_factors, split.valid.users), split.valid, num_items=n, ks=KS
    )
    model = fit_als(split.refit, args.factors, args.iterations, args.seed)
    seconds = time.monotonic() - started
    attrs = split.full.attribute_matrix() if split.full.num_attributes else None
    test = evaluate(
        _ALSScorer(model.user_factors, model.item_factors, split.test.users),
        split.test,
        num_items=n,
        ks=KS,
        attributes=attrs,
    )
    print(format_table({"ALS test": test.full, "ALS valid": valid.full}))
    if test.sampled:
        print(format_table({"ALS sampled": test.sampled, "ALS valid sampled": valid.sampled}))
    print(f"train_seconds {seconds:.1f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(
            json.dumps(
                {
                    "full": test.full,
                    "valid": valid.full,
                    **({"sampled": test.sampled, "valid_sampled": valid.sampled} if test.sampled else {}),
                    "train_seconds": round(seconds, 2),
                    "params": {"factors": args.factors, "iterations": args.iterations, "seed": args.seed},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
