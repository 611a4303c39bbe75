"""Experiments micro-benchmark: CPU per variant assignment (the hot path's part), per report's
statistics, and per Thompson reallocation.

    python bench/experiments.py [--calls 200000] [--variants 4]

- assignment: `RunningExperiment.assign(customer_id)` (BLAKE2b of salt + id, a bisection over the
  cut points) on distinct customer ids, as the recommendations endpoint calls it once per request;
- the report's statistics: `compare` of two ratio estimates from sufficient statistics (what one
  variant row of `GET /experiments/<id>/report` costs after the aggregate query);
- a Thompson reallocation of 4 Beta arms with the default 20,000 posterior draws;
- assignment + strategy selection as the recommendations endpoint does it per request
  (`serving.strategy.strategy_select`: the customer's variant, then the variant's strategy, scene
  settings or model version over the scene's own); goal under 50 us of CPU per request.
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
from recadmin.rules.engine import SceneSettings
from recadmin.serving.strategy import strategy_select


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

    serving_experiment = RunningExperiment(
        id=2,
        name="strategies",
        salt="0c1d2e3f4a5b6c7d",
        variants=(
            VariantSpec(id=10, name="control"),
            VariantSpec(id=11, name="popular", strategy=("popular",)),
            VariantSpec(id=12, name="no-mmr", scene_settings={"mmr_enabled": False}),
            VariantSpec(id=13, name="v4", model_name="recommender", model_version=4),
        ),
        weights=(25.0, 25.0, 25.0, 25.0),
    )
    running = {"home": serving_experiment}  # what experiment_running_for_scene returns from its process copy
    scene = SceneSettings(slug="home", mmr_enabled=True, max_per_category=3)

    def select(n: int) -> None:
        for customer in ids[:n]:
            strategy_select(scene, experiment=running.get("home"), customer=customer)

    def select_outside(n: int) -> None:
        for customer in ids[:n]:
            strategy_select(scene, experiment=running.get("cart"), customer=customer)

    print(f"assign (1 of {len(weights)} variants): {_median_us(assign, args.calls):8.2f} us per call")
    print(f"RunningExperiment.from_dict (per cache version, per process): {_median_us(rebuild, 20_000):8.2f} us")
    print(f"compare (one report row's statistics): {_median_us(compare, 20_000):8.2f} us")
    print(f"thompson_allocation (4 arms, 20,000 draws): {_median_us(thompson, 70) / 1000:8.2f} ms")
    print(
        f"assignment + strategy selection (4 variants): {_median_us(select, args.calls):8.2f} us per request"
        " (goal < 50)"
    )
    print(f"strategy selection outside an experiment: {_median_us(select_outside, args.calls):8.2f} us per request")


if __name__ == "__main__":
    main()
