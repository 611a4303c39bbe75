"""Experiments micro-benchmark: CPU per variant assignment (the hot path's part), per report's
statistics, and per Thompson reallocation.

    python bench/experiments.py [--calls 200000] [--variants 4]

- assignment: `RunningExperiment.assign(customer_id)` (BLAKE2b of salt + id, a bisection over the
  cut points) on distinct customer ids, as the recommendations endpoint calls it once per request;
- the report's statistics: `compare` of two ratio estimates from sufficient statistics (what one
  variant row of `GET /experiments/<id>/report` costs after the aggregate query);
- a Thompson reallocation of 4 Beta arms with the default 20,000 posterior draws.
Prints median microseconds over batches of process CPU time.
"""

from __future__ import annotations

import argparse
import statistics as stats_module
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recadmin.experiments import bandit
from recadmin.experiments import statistics as st
from recadmin.experiments.assignment import RunningExperiment, VariantSpec


def _median_us(func: Callable[[int], None], calls: int, batches: int = 7) -> float:
    per_batch = max(1, calls // batches)
    samples = []
    for _ in range(batches):
        start = time.process_time()
        func(per_batch)
        samples.append((time.process_time() - start) / per_batch * 1e6)
    return stats_module.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--variants", type=int, default=4)
    args = parser.parse_args()

    weights = tuple([50.0, 30.0, 20.0] + [0.0] * max(0, args.variants - 3))[: args.variants]
    experiment = RunningExperiment(
        id=1,
        name="bench",
        salt="5f2c9a1e0b7d4c33",
        variants=tuple(VariantSpec(id=i, name=f"v{i}") for i in range(len(weights))),
        weights=weights,
    )
    ids = [f"customer-{i:08d}" for i in range(args.calls)]

    def assign(n: int) -> None:
        for customer in ids[:n]:
            experiment.assign(customer)

    def rebuild(n: int) -> None:
        data = experiment.to_dict()
        for _ in range(n):
            RunningExperiment.from_dict(data)

    control = st.ratio_estimate(st.RatioMoments(10_000, 5_100.0, 100_000.0, 9_000.0, 1_500_000.0, 80_000.0))
    treatment = st.ratio_estimate(st.RatioMoments(10_000, 5_500.0, 101_000.0, 9_800.0, 1_510_000.0, 86_000.0))

    def compare(n: int) -> None:
        for _ in range(n):
            st.compare(control, treatment)

    arms = [
        bandit.BetaArm(510, 10_000),
        bandit.BetaArm(550, 10_100),
        bandit.BetaArm(480, 9_900),
        bandit.BetaArm(530, 10_000),
    ]

    def thompson(n: int) -> None:
        for step in range(n):
            bandit.thompson_allocation(arms, seed=step)

    print(f"assign (1 of {len(weights)} variants): {_median_us(assign, args.calls):8.2f} us per call")
    print(f"RunningExperiment.from_dict (per cache version, per process): {_median_us(rebuild, 20_000):8.2f} us")
    print(f"compare (one report row's statistics): {_median_us(compare, 20_000):8.2f} us")
    print(f"thompson_allocation (4 arms, 20,000 draws): {_median_us(thompson, 70) / 1000:8.2f} ms")


if __name__ == "__main__":
    main()
