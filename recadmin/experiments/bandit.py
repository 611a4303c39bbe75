"""Thompson sampling allocation (numpy, no Django).

Every few minutes the running `thompson` experiments get new weights: each arm's weight is the
posterior probability that it is the best arm on the primary metric, estimated by Monte Carlo (draw
from every arm's posterior, count which arm wins), with a floor per arm so that no arm starves and
the estimates of all of them keep improving. The random generator is seeded, so a recomputation from
the same sums gives the same weights.

Posteriors:
- `ctr` and `conversion_rate` (`BetaArm`): Beta(1 + successes, 1 + trials - successes), with
  successes/trials = clicks/impressions or purchases/lists served, from the per-customer table's sums.
  The Beta treats every impression as independent, which is narrower than the customer-level truth;
  for allocation that only makes the bandit a little greedier, and the floor bounds how greedy.
- `revenue_per_customer` (`GaussianArm`): a Beta needs a success count, and revenue is an amount, not
  a count. Its arm is the mean revenue per customer with a normal posterior N(mean, s^2 / n) (the
  large-sample posterior of a mean under a flat prior). An arm with fewer than two customers borrows
  the variance of all arms pooled, with one pseudo-customer at the pooled mean, so it is explored
  rather than ignored. Revenue is heavy-tailed; the normal approximation is rough for small n, which
  the floor again bounds. (The alternative, a Beta on "the customer bought something", ignores basket
  size, which is what the metric is about.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_FLOOR = 0.05
DEFAULT_DRAWS = 20_000


@dataclass(frozen=True)
class BetaArm:
    successes: float
    trials: float


@dataclass(frozen=True)
class GaussianArm:
    n: int
    sum_y: float
    sum_yy: float


@dataclass(frozen=True)
class ThompsonResult:
    weights: tuple[float, ...]  # what to allocate: probability of being best with the floor, sums to 1
    probability_best: tuple[float, ...]  # the Monte Carlo estimate, before the floor


def beta_draws(arms: Sequence[BetaArm], draws: int, rng: np.random.Generator) -> np.ndarray:
    alpha = np.array([1.0 + max(0.0, a.successes) for a in arms])
    beta = np.array([1.0 + max(0.0, a.trials - a.successes) for a in arms])
    return rng.beta(alpha, beta, size=(draws, len(arms)))


def gaussian_draws(arms: Sequence[GaussianArm], draws: int, rng: np.random.Generator) -> np.ndarray:
    n_all = sum(a.n for a in arms)
    sum_all = sum(a.sum_y for a in arms)
    pooled_mean = sum_all / n_all if n_all else 0.0
    pooled_var = max(0.0, (sum(a.sum_yy for a in arms) - sum_all * sum_all / n_all) / (n_all - 1)) if n_all > 1 else 1.0
    if pooled_var == 0:
        pooled_var = 1e-12
    means, sds = [], []
    for arm in arms:
        if arm.n >= 2:
            mean = arm.sum_y / arm.n
            var = max(0.0, (arm.sum_yy - arm.sum_y * arm.sum_y / arm.n) / (arm.n - 1)) or pooled_var
            means.append(mean)
            sds.append(math.sqrt(var / arm.n))
        else:
            # One pseudo-customer at the pooled mean: wide, so the arm gets explored.
            n = arm.n + 1
            means.append((arm.sum_y + pooled_mean) / n)
            sds.append(math.sqrt(pooled_var / n))
    return rng.normal(np.array(means), np.array(sds), size=(draws, len(arms)))


def probability_best(samples: np.ndarray) -> np.ndarray:
    """Share of posterior draws (rows) in which each arm (column) is the largest."""
    winners = np.argmax(samples, axis=1)
    return np.bincount(winners, minlength=samples.shape[1]) / samples.shape[0]


def apply_floor(probabilities: Sequence[float] | np.ndarray, floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """Raise every arm to at least `floor` and share what is left among the others in proportion to
    their probabilities (repeated until no other arm falls below the floor). Sums to 1."""
    p = np.asarray(probabilities, dtype=float)
    k = p.size
    if k == 0:
        return p
    if floor < 0 or floor * k > 1 + 1e-12:
        raise ValueError(f"a floor of {floor} per arm is impossible with {k} arms")
    total = p.sum()
    p = p / total if total > 0 else np.full(k, 1.0 / k)
    floored = np.zeros(k, dtype=bool)
    weights = p.copy()
    while True:
        free_mass = 1.0 - floor * floored.sum()
        free_p = p[~floored].sum()
        weights = np.where(floored, floor, p * free_mass / free_p if free_p > 0 else free_mass / (~floored).sum())
        newly = (~floored) & (weights < floor)
        if not newly.any():
            break
        floored |= newly
        if floored.all():
            weights = np.full(k, 1.0 / k)
            break
    return weights / weights.sum()


def thompson_allocation(
    arms: Sequence[BetaArm] | Sequence[GaussianArm],
    *,
    floor: float = DEFAULT_FLOOR,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> ThompsonResult:
    """Weights for the next period: P(arm is best) by Monte Carlo from the posteriors, floored."""
    if not arms:
        return ThompsonResult((), ())
    rng = np.random.default_rng(seed)
    if all(isinstance(a, BetaArm) for a in arms):
        samples = beta_draws(arms, draws, rng)  # type: ignore[arg-type]
    elif all(isinstance(a, GaussianArm) for a in arms):
        samples = gaussian_draws(arms, draws, rng)  # type: ignore[arg-type]
    else:
        raise TypeError("arms must all be BetaArm or all GaussianArm")
    best = probability_best(samples)
    weights = apply_floor(best, floor)
    return ThompsonResult(weights=tuple(float(w) for w in weights), probability_best=tuple(float(p) for p in best))
