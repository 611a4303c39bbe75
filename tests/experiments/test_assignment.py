"""Assignment: deterministic, sticky, proportional, the same in another process, zero weights never
assigned, and a reweight moves only the customers it must."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from recadmin.experiments.assignment import (
    HASH_SPACE,
    RunningExperiment,
    VariantSpec,
    assign,
    cumulative_thresholds,
    hash_bucket,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _experiment(weights: tuple[float, ...], salt: str = "a1b2c3d4") -> RunningExperiment:
    variants = tuple(VariantSpec(id=i + 1, name=f"v{i}") for i in range(len(weights)))
    return RunningExperiment(id=1, name="test", salt=salt, variants=variants, weights=weights)


def test_the_bucket_is_blake2b_of_salt_and_customer_so_it_never_depends_on_the_process() -> None:
    digest = hashlib.blake2b(b"s1:cust-42", digest_size=8).digest()
    assert hash_bucket("s1", "cust-42") == int.from_bytes(digest, "big")


def test_a_customer_always_gets_the_same_variant() -> None:
    experiment = _experiment((50, 50))
    first = {f"c{i}": experiment.assign(f"c{i}").name for i in range(1000)}
    again = {f"c{i}": _experiment((50, 50)).assign(f"c{i}").name for i in range(1000)}
    assert first == again


def test_assignment_is_proportional_to_the_weights_on_100k_customers() -> None:
    experiment = _experiment((50, 30, 20, 0))
    counts = Counter(experiment.assign(f"customer-{i}").name for i in range(100_000))
    assert counts["v3"] == 0
    observed = [counts["v0"], counts["v1"], counts["v2"]]
    p = sps.chisquare(observed, [50_000, 30_000, 20_000]).pvalue
    assert p > 0.001, (observed, p)


def test_anonymous_and_unusual_ids_are_assigned_too() -> None:
    experiment = _experiment((1, 1))
    for customer in ["", "anon:8f3c", "ümlaut-ß", "x" * 500, "42"]:
        assert experiment.assign(customer).name in {"v0", "v1"}


def test_salts_make_experiments_independent() -> None:
    a, b = _experiment((1, 1), salt="one"), _experiment((1, 1), salt="two")
    pairs = Counter((a.assign(f"c{i}").name, b.assign(f"c{i}").name) for i in range(40_000))
    table = np.array([[pairs[("v0", "v0")], pairs[("v0", "v1")]], [pairs[("v1", "v0")], pairs[("v1", "v1")]]])
    assert sps.chi2_contingency(table).pvalue > 0.001


def test_zero_weight_variants_are_never_assigned_even_at_the_cut_points() -> None:
    thresholds = cumulative_thresholds([0, 1, 0, 1, 0])
    assert thresholds[0] == 0 and thresholds[1] == thresholds[2] and thresholds[3] == thresholds[4] == HASH_SPACE
    experiment = _experiment((0, 1, 0, 1, 0))
    from bisect import bisect_right

    for bucket in (0, 1, thresholds[1] - 1, thresholds[1], thresholds[1] + 1, HASH_SPACE - 1):
        assert bisect_right(experiment.thresholds, bucket) in (1, 3)


def test_weights_that_do_not_sum_to_a_positive_number_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        cumulative_thresholds([0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        cumulative_thresholds([1, -1])


def test_a_reweight_moves_only_the_customers_between_the_old_and_new_cut_point() -> None:
    ids = [f"c{i}" for i in range(100_000)]
    old, new = _experiment((50, 50)), _experiment((60, 40))
    before = [old.assign(c).id - 1 for c in ids]
    after = [new.assign(c).id - 1 for c in ids]
    assert before[:200] == [assign("a1b2c3d4", c, [50, 50]) for c in ids[:200]]
    moved = sum(b != a for b, a in zip(before, after, strict=True)) / len(ids)
    assert moved == pytest.approx(0.10, abs=0.005)
    # Only towards the arm that grew.
    assert all(a == 0 for b, a in zip(before, after, strict=True) if b != a)


def test_the_running_experiment_survives_a_round_trip_through_its_cached_dict() -> None:
    experiment = RunningExperiment(
        id=3,
        name="x",
        salt="s",
        variants=(
            VariantSpec(id=1, name="control"),
            VariantSpec(id=2, name="v4", model_name="recommender", model_version=4),
            VariantSpec(id=3, name="pop", strategy=("popular",)),
            VariantSpec(id=4, name="no-mmr", scene_settings={"mmr_enabled": False}),
        ),
        weights=(50, 50, 0, 0),
    )
    copy = RunningExperiment.from_dict(json.loads(json.dumps(experiment.to_dict())))
    assert copy == experiment


def test_another_process_with_another_hash_seed_assigns_the_same_variants() -> None:
    ids = [f"c{i}" for i in range(2000)]
    here = [_experiment((30, 70)).assign(c).name for c in ids]
    script = (
        "import json, sys\n"
        "from recadmin.experiments.assignment import RunningExperiment, VariantSpec\n"
        "e = RunningExperiment(id=1, name='test', salt='a1b2c3d4', "
        "variants=(VariantSpec(id=1, name='v0'), VariantSpec(id=2, name='v1')), weights=(30, 70))\n"
        "print(json.dumps([e.assign(f'c{i}').name for i in range(2000)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=True
    )
    assert json.loads(result.stdout) == here
