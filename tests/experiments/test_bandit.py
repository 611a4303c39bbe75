"""Thompson sampling: probability of being best against numerical integration, the floor, seeding,
and convergence to the better arm on simulated Bernoulli and revenue arms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from recadmin.experiments.bandit import (
    BetaArm,
    GaussianArm,
    apply_floor,
    probability_best,
    thompson_allocation,
)


def test_probability_of_being_best_matches_numerical_integration_for_two_beta_arms() -> None:
    a, b = BetaArm(successes=30, trials=600), BetaArm(successes=42, trials=610)
    pa, pb = sps.beta(1 + 30, 1 + 570), sps.beta(1 + 42, 1 + 568)
    # P(B > A) = integral of f_B(x) F_A(x) dx
    exact, _ = integrate.quad(lambda x: pb.pdf(x) * pa.cdf(x), 0, 1, limit=200)
    result = thompson_allocation([a, b], floor=0.0, draws=400_000, seed=1)
    assert result.probability_best[1] == pytest.approx(exact, abs=0.004)


def test_probability_best_counts_the_winner_of_each_draw() -> None:
    samples = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 1.0], [0.0, 0.5, 0.9], [0.1, 0.2, 0.0]])
    assert probability_best(samples).tolist() == [0.25, 0.5, 0.25]


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ([0.99, 0.01], [0.95, 0.05]),
        # Arm 3 is raised to 0.05; the other 0.95 is shared 90 : 6 -> 0.890625, 0.059375.
        ([0.90, 0.06, 0.04], [0.890625, 0.059375, 0.05]),
        ([1.0, 0.0, 0.0, 0.0], [0.85, 0.05, 0.05, 0.05]),
        ([0.5, 0.5], [0.5, 0.5]),
    ],
)
def test_the_floor_raises_starved_arms_and_keeps_the_order_of_the_others(
    probabilities: list[float], expected: list[float]
) -> None:
    assert apply_floor(probabilities, 0.05).tolist() == pytest.approx(expected)


def test_an_impossible_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="impossible"):
        apply_floor([0.2] * 5, 0.25)


def test_the_allocation_is_reproducible_for_a_seed() -> None:
    arms = [BetaArm(10, 200), BetaArm(14, 210), BetaArm(9, 190)]
    assert thompson_allocation(arms, seed=5) == thompson_allocation(arms, seed=5)


def _run_bandit(
    true_ctr: list[float], rounds: int, per_round: int, seed: int, floor: float = 0.05, draws: int = 20_000
) -> list[float]:
    """Each round serves per_round impressions split by the current weights, then reallocates."""
    rng = np.random.default_rng(seed)
    k = len(true_ctr)
    clicks, impressions = np.zeros(k), np.zeros(k)
    weights = [1.0 / k] * k
    for step in range(rounds):
        served = rng.multinomial(per_round, weights)
        clicks += rng.binomial(served, true_ctr)
        impressions += served
        result = thompson_allocation(
            [BetaArm(c, n) for c, n in zip(clicks, impressions, strict=True)], floor=floor, seed=step, draws=draws
        )
        weights = list(result.weights)
        assert min(weights) >= floor - 1e-12
        assert sum(weights) == pytest.approx(1.0)
    return weights


def test_thompson_sampling_moves_most_traffic_to_the_better_arm_and_keeps_the_floor() -> None:
    weights = _run_bandit([0.040, 0.050, 0.060], rounds=60, per_round=3000, seed=11)
    assert weights[2] >= 0.85
    assert weights[0] == pytest.approx(0.05) and weights[1] == pytest.approx(0.05, abs=0.02)


def test_thompson_sampling_keeps_equal_arms_near_an_even_split_on_average() -> None:
    finals = np.array([_run_bandit([0.05, 0.05], rounds=10, per_round=2000, seed=s, draws=4000) for s in range(30)])
    assert finals[:, 0].mean() == pytest.approx(0.5, abs=0.12)


def test_revenue_arms_converge_to_the_arm_with_more_revenue_per_customer() -> None:
    rng = np.random.default_rng(4)
    buy_rate, basket = [0.08, 0.08], [30.0, 40.0]
    n = [0, 0]
    s = [0.0, 0.0]
    ss = [0.0, 0.0]
    weights = [0.5, 0.5]
    for step in range(40):
        customers = rng.multinomial(1500, weights)
        for arm in (0, 1):
            revenue = np.where(
                rng.random(customers[arm]) < buy_rate[arm], rng.exponential(basket[arm], customers[arm]), 0
            )
            n[arm] += int(customers[arm])
            s[arm] += float(revenue.sum())
            ss[arm] += float((revenue * revenue).sum())
        arms = [GaussianArm(n[a], s[a], ss[a]) for a in (0, 1)]
        weights = list(thompson_allocation(arms, seed=step).weights)
    assert weights[1] >= 0.9


def test_a_gaussian_arm_without_customers_is_explored_not_ignored() -> None:
    result = thompson_allocation([GaussianArm(500, 1500.0, 40_000.0), GaussianArm(0, 0.0, 0.0)], floor=0.0, seed=3)
    assert 0.2 < result.probability_best[1] < 0.8
