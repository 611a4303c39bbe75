"""Scoring speed: 1,000 user histories against the whole Beauty catalog (12,101 items) on one core.

    python bench/score.py [--checkpoint DIR ...] [--users 1000] [--repeats 20]

Each checkpoint (as written by training.benchmark --out DIR, in DIR/checkpoint) is loaded and
timed on the first `--users` Beauty test histories (the real length distribution, up to the
model's max length). Without checkpoints, every model kind is built at Beauty's size with fresh
weights: the arithmetic, and so the time, is the same as for trained weights.
Prints the median and best wall time and the median CPU time of one `model.score(histories)` call.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.checkpoint import load_checkpoint
from training.data import read_s3rec, split_leave_one_out
from training.models import MODEL_KINDS, build_model

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amazon-beauty"


def time_scoring(model, histories, repeats: int) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) seconds of one call. On a shared machine the CPU time
    (this process, one thread) is the cost of the call itself; wall time adds waiting for a core."""
    model.eval()
    model.score(histories[:10])  # warm-up: caches, allocator
    model.score(histories)
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        scores = model.score(histories)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    assert scores.shape == (len(histories), model.num_items + 1)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", action="append", type=Path, default=[])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    dataset = read_s3rec(args.data / "Beauty.txt", args.data / "Beauty_item2attributes.json")
    histories = split_leave_one_out(dataset).test.histories[: args.users]
    models = []
    if args.checkpoint:
        for directory in args.checkpoint:
            loaded = load_checkpoint(directory)
            models.append((f"{loaded.config['kind']} ({directory})", loaded.model))
    else:
        for kind in MODEL_KINDS:
            model = build_model(kind, dataset.num_items)
            if kind == "sasrec":
                model._set_attributes(dataset)  # the attribute tables fit() would build, fresh weights
            models.append((f"{kind} (fresh weights)", model))
    print(f"{len(histories)} histories x {dataset.num_items} items, 1 thread, {args.repeats} repeats")
    for name, model in models:
        median, best, cpu = time_scoring(model, histories, args.repeats)
        print(
            f"{name:44s} wall median {median * 1000:7.1f} ms  best {best * 1000:7.1f} ms"
            f"  cpu median {cpu * 1000:7.1f} ms"
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
