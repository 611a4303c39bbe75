"""Ranking stage, offline: AUC for click and purchase on a time-based hold-out of logged
impressions, the ESMM ranker against (a) the retrieval score alone and (b) logistic regression
on the same features.

    python bench/ranker.py [--seeds 0 1 2] [--requests 20000] [--obd]
    python bench/ranker.py --source simulator --seeds 1 2 3 [--requests 5000] [--database-url URL]

Data (--source synthetic, the default): the synthetic shop of training.ranker.synthetic (planted
taste match, position bias and price sensitivity), one data set and one training per seed.
--source simulator: for each seed, the simulated shop (bench/sim_shop.py, in its own process: the
demo shop generated with that seed in the given database, which is flushed; a retrieval model
trained by the pipeline and served by a real TorchServe; the simulator's visitors through the
API for --requests requests; the metrics refresh), then the served impressions exported by
recadmin.metrics.impressions, exactly what the ranker's training run reads. With --obd, also the Open Bandit
Dataset sample bundled in the `obp` package (real ZOZOTOWN impressions with clicks and positions;
click AUC only, the data has no purchases), when the package is installed.
AUC "logged" scores the hold-out at the positions it was shown at; "serving" at the one fixed
position the ranker uses when serving (the retrieval score has no position either way); "within"
takes the serving scores and measures AUC within each logged position (weighted by its positives),
so that the retrieval score, which set the order and so carries the position, gets no advantage
from the position effect either.
  --tables DIR  evaluates impression tables kept by an earlier --source simulator --keep DIR run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.ranker.evaluate import RankerEvaluation, evaluate_rankers
from training.ranker.features import ImpressionTable
from training.ranker.synthetic import synthetic_impressions

MODELS = ("esmm", "logreg", "retrieval_score")


def _print(title: str, runs: list[RankerEvaluation], metrics: tuple[str, ...]) -> None:
    print(f"\n{title}")
    for view in ("logged_position", "serving_position", "within_position"):
        for metric in metrics:
            cells = []
            for name in MODELS:
                values = [getattr(r, view)[name][metric] for r in runs]
                spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
                cells.append(f"{name} {statistics.mean(values):.4f}{spread}")
            print(f"  {view.split('_')[0]:7s} {metric:13s} " + "   ".join(cells))
    for name in ("esmm", "logreg"):
        print(f"  {name} training seconds: " + ", ".join(f"{r.seconds[name]:.1f}" for r in runs))


def simulated_impressions(args: argparse.Namespace, seed: int) -> ImpressionTable:
    """One seed's simulated shop in a child process (serving keeps per-process caches that a
    flushed database would leave stale), its impressions back through a pickle."""
    with tempfile.TemporaryDirectory(prefix="ranker-bench-") as tmp:
        out = Path(args.keep or tmp) / f"impressions-seed{seed}.pkl"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, str(Path(__file__).resolve().parent / "sim_shop.py"), "--seed", str(seed),
            "--items", str(args.items), "--customers", str(args.customers), "--events", str(args.events),
            "--requests", str(args.requests), "--retrieval", args.retrieval, "--impressions", str(out),
        ]  # fmt: skip
        if args.database_url:
            command += ["--database-url", args.database_url]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        for line in done.stderr.splitlines():
            if line.startswith("[seed"):
                print("  " + line, flush=True)
        if done.returncode != 0:
            raise SystemExit(f"bench/sim_shop.py failed for seed {seed}:\n{done.stderr[-3000:]}")
        table: ImpressionTable = pickle.loads(out.read_bytes())
        return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--obd", action="store_true", help="also the Open Bandit Dataset sample of obp")
    parser.add_argument("--source", choices=["synthetic", "simulator"], default="synthetic")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), help="simulator: a database it may flush"
    )
    parser.add_argument("--events", type=int, default=20000, help="simulator: the demo shop's past events")
    parser.add_argument("--retrieval", default="itemknn", help="simulator: the retrieval model kind")
    parser.add_argument("--keep", type=Path, default=None, help="simulator: keep the impression tables here")
    parser.add_argument("--tables", type=Path, default=None, help="simulator: evaluate tables kept by --keep")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    runs = []
    for seed in args.seeds:
        if args.source == "simulator" and args.tables is not None:
            table = pickle.loads((args.tables / f"impressions-seed{seed}.pkl").read_bytes())
        elif args.source == "simulator":
            table = simulated_impressions(args, seed)
        else:
            table = synthetic_impressions(customers=args.customers, items=args.items, requests=args.requests, seed=seed)
        result, _, _ = evaluate_rankers(table, seed=seed)
        runs.append(result)
        print(
            f"seed {seed}: {result.rows} impressions, click rate {result.rates['click']:.3f}, "
            f"purchase rate {result.rates['purchase']:.4f}",
            flush=True,
        )
        for name in MODELS:
            print(f"  {name:16s} " + "  ".join(f"{k} {v:.4f}" for k, v in result.logged_position[name].items()))
    _print(f"{args.source} shop, {len(runs)} seeds (mean ± sd)", runs, ("click_auc", "purchase_auc"))

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
