"""Rules engine micro-benchmark: CPU per `apply_rules` call for a realistic recommendations request.

    python bench/rules_engine.py [--calls 3000] [--engine-file PATH]

The case mirrors GET /api/v1/recommendations: 150 model candidates (deterministic random data,
~40 categories under 8 roots, 12 brands, embedding dim 64), 4 rules (include in_stock eq true,
boost category in_subtree x1.5, bury brand eq /2.0, one pin at position 2 whose item arrives as an
extra candidate), scene max_per_category=3, mmr_lambda=0.7, a list of n=30 from offset 0.
Prints the median CPU microseconds (time.process_time over batches) per call with MMR on and off,
with embeddings as tuples of floats and as unit float64 numpy vectors (what serving caches), plus
the cost of building the 150 Candidates. `--engine-file` times another copy of engine.py (e.g. the
previous version) for a before/after on the same machine state.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
N_CANDIDATES = 150
DIM = 64
ROOTS = [f"root{r}" for r in range(8)]
CATEGORIES = [(ROOTS[k % len(ROOTS)], f"cat{k}") for k in range(40)]
BRANDS = [f"brand{b}" for b in range(12)]


def load_engine(path: str | None) -> ModuleType:
    if path is None:
        from recadmin.rules import engine

        return engine
    spec = importlib.util.spec_from_file_location("engine_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["engine_under_test"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def candidate_kwargs(seed: int = 7) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The candidates' constructor keywords (embeddings as tuples) and the pinned extra's."""
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).normal(size=(N_CANDIDATES + 1, DIM))
    vectors /= np.linalg.norm(vectors, axis=1)[:, None]
    rows = []
    for index in range(N_CANDIDATES + 1):
        root, category = rng.choice(CATEGORIES)
        rows.append(
            {
                "item_id": f"item-{index}",
                "score": rng.gauss(0.0, 1.0),
                "category": category,
                "category_path": (root, category),
                "brand": rng.choice(BRANDS),
                "price": round(rng.uniform(5, 200), 2),
                "in_stock": rng.random() < 0.9,
                "active": True,
                "attributes": {},
                "embedding": tuple(float(x) for x in vectors[index]),
                "origin": "model",
            }
        )
    extra = rows.pop() | {"score": 0.0, "origin": "pinned", "in_stock": True}
    return rows, extra


def build_case(engine: ModuleType, *, mmr: bool, arrays: bool) -> dict[str, Any]:
    rows, extra = candidate_kwargs()

    def make(row: dict[str, Any]) -> Any:
        if arrays:
            vector = np.asarray(row["embedding"], dtype=np.float64)
            vector.setflags(write=False)
            row = row | {"embedding": vector}
        return engine.Candidate(**row)

    rules = (
        engine.CompiledRule(id=1, name="in stock", kind="filter", filter_mode="include",
                            condition={"field": "in_stock", "op": "eq", "value": True}),
        engine.CompiledRule(id=2, name="boost root3", kind="boost", weight=1.5,
                            condition={"field": "category", "op": "in_subtree", "value": "root3"}),
        engine.CompiledRule(id=3, name="bury brand4", kind="bury", weight=2.0,
                            condition={"field": "brand", "op": "eq", "value": "brand4"}),
        engine.CompiledRule(id=4, name="pin", kind="pin", position=2, pinned_items=(extra["item_id"],)),
    )  # fmt: skip
    return {
        "candidates": [make(row) for row in rows],
        "ruleset": engine.RuleSet("home", rules),
        "scene": engine.SceneSettings(slug="home", max_per_category=3, mmr_enabled=mmr, mmr_lambda=0.7),
        "context": engine.Context(now=NOW, extra_candidates=(make(extra),)),
    }


def median_us(call: Any, calls: int, batch: int = 50) -> float:
    for _ in range(batch):  # warm-up
        call()
    per_call = []
    for _ in range(max(1, calls // batch)):
        start = time.process_time()
        for _ in range(batch):
            call()
        per_call.append((time.process_time() - start) / batch * 1e6)
    return statistics.median(per_call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--engine-file", default=None, help="time this engine.py instead of recadmin.rules.engine")
    args = parser.parse_args()
    engine = load_engine(args.engine_file)
    print(f"engine: {args.engine_file or engine.__file__}; {args.calls} calls per figure, median CPU us per call")
    for mmr in (True, False):
        for arrays in (False, True):
            case = build_case(engine, mmr=mmr, arrays=arrays)
            label = f"apply_rules mmr={'on ' if mmr else 'off'} embeddings={'numpy ' if arrays else 'tuples'}"
            try:
                ranking = engine.apply_rules(**case, n=30)
            except ValueError as exc:  # an engine from before numpy embeddings were accepted
                print(f"{label}: unsupported ({exc})")
                continue
            assert len(ranking.items) == 30, len(ranking.items)
            us = median_us(lambda case=case: engine.apply_rules(**case, n=30), args.calls)
            print(f"{label}: {us:8.1f} us")
    rows, _ = candidate_kwargs()
    us = median_us(lambda: [engine.Candidate(**row) for row in rows], args.calls)
    print(f"build {N_CANDIDATES} Candidates (keywords):    {us:8.1f} us")


if __name__ == "__main__":
    main()
