"""Ranking stage, offline: AUC for click and purchase on a time-based hold-out of logged
impressions, the ESMM ranker against (a) the retrieval score alone and (b) logistic regression
on the same features.

    python bench/ranker.py [--seeds 0 1 2] [--requests 20000] [--obd]

Data: the synthetic shop of training.ranker.synthetic (planted taste match, position bias and
price sensitivity), one data set and one training per seed. With --obd, also the Open Bandit
Dataset sample bundled in the `obp` package (real ZOZOTOWN impressions with clicks and positions;
click AUC only, the data has no purchases), when the package is installed.
AUC "logged" scores the hold-out at the positions it was shown at; "serving" at the one fixed
position the ranker uses when serving (the retrieval score has no position either way).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.ranker.evaluate import RankerEvaluation, evaluate_rankers
from training.ranker.synthetic import synthetic_impressions

MODELS = ("esmm", "logreg", "retrieval_score")


def _print(title: str, runs: list[RankerEvaluation], metrics: tuple[str, ...]) -> None:
    print(f"\n{title}")
    for view in ("logged_position", "serving_position"):
        for metric in metrics:
            cells = []
            for name in MODELS:
                values = [getattr(r, view)[name][metric] for r in runs]
                spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
                cells.append(f"{name} {statistics.mean(values):.4f}{spread}")
            print(f"  {view.split('_')[0]:7s} {metric:13s} " + "   ".join(cells))
    for name in ("esmm", "logreg"):
        print(f"  {name} training seconds: " + ", ".join(f"{r.seconds[name]:.1f}" for r in runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--obd", action="store_true", help="also the Open Bandit Dataset sample of obp")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    runs = []
    for seed in args.seeds:
        table = synthetic_impressions(
            customers=args.customers, items=args.items, requests=args.requests, seed=seed
        )
        result, _, _ = evaluate_rankers(table, seed=seed)
        runs.append(result)
        print(
            f"seed {seed}: {result.rows} impressions, click rate {result.rates['click']:.3f}, "
            f"purchase rate {result.rates['purchase']:.4f}",
            flush=True,
        )
        for name in MODELS:
            print(f"  {name:16s} " + "  ".join(f"{k} {v:.4f}" for k, v in result.logged_position[name].items()))
    _print(f"synthetic shop, {len(runs)} seeds (mean ± sd)", runs, ("click_auc", "purchase_auc"))

    if args.obd:
        from training.open_bandit import ObdUnavailable, concat_tables, read_open_bandit

        try:
            # Both behaviour policies of the "all" campaign (the same 80 items): 20,000 impressions,
            # about 80 clicks, so a larger hold-out (30 %) than on the synthetic shop.
            table = concat_tables([read_open_bandit(behavior_policy=p, campaign="all") for p in ("random", "bts")])
            obd_runs = [
                evaluate_rankers(table, seed=seed, test_fraction=0.3, valid_fraction=0.2)[0] for seed in args.seeds
            ]
            first = obd_runs[0]
            print(
                f"\nOBD random + bts, campaign all: {first.rows} impressions, click rate {first.rates['click']:.4f}",
                flush=True,
            )
            _print(f"Open Bandit Dataset sample (obp), {len(args.seeds)} seeds", obd_runs, ("click_auc",))
        except ObdUnavailable as exc:
            print(f"\nOpen Bandit Dataset: skipped ({exc})")
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
