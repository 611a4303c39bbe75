"""The statistics of experiments: pure functions over per-customer sums (numpy/scipy, no Django).

The unit of analysis is the customer. Assignment randomises customers, not page views, so the
observations that are independent are customers: a customer who sees forty lists and clicks on none
is one observation, not forty. Every metric is therefore built from per-customer sums:

- ratio metrics, `ctr` = sum(clicks) / sum(impressions) and `conversion_rate` = sum(purchases) /
  sum(lists served), are ratios of two per-customer means; their variance comes from the **delta
  method** (the variance of the linearised ratio, mean(y - R x) / mean(x)), which is what a
  cluster-robust (HC) regression gives and what a naive impression-level z-test gets wrong by
  ignoring that one customer's impressions are correlated;
- mean metrics, `revenue_per_customer` = sum(revenue) / customers, use the per-customer variance
  and Welch's unequal-variance t-test (Welch-Satterthwaite degrees of freedom).

Everything is computed from sufficient statistics (`RatioMoments`, `MeanMoments`: the count, the
sums and the sums of squares and cross-products), so a database computes them with one aggregate
query and a report over a million customers never loads a million rows.

Comparison of a treatment against the control (`compare`):

- `p_value`: two-sided test of "no difference" on the absolute difference T - C: a z-test with the
  delta-method variance for ratio metrics, Welch's t-test for mean metrics (the numbers statsmodels'
  `CompareMeans.ttest_ind(usevar="unequal")` gives).
- `lift` = T / C - 1 with a 95 % interval by **Fieller's theorem** (not the delta method on the ratio
  of two ratios): the set of lifts L for which T - (1 + L) C is not significantly different from 0.
  Fieller is chosen because it is exactly consistent with the p-value (the interval excludes 0 if and
  only if p < alpha, the statistic at L = 0 being the test above), it is asymmetric where the ratio
  is (a lift cannot be below -100 %), and it is no worse than the delta method for large samples,
  where the two agree. When the control is itself not distinguishable from 0 the set is unbounded and
  the bounds are reported as NaN (`None` in JSON).
- the **always-valid sequential interval**: the asymptotic confidence sequence of Waudby-Smith,
  Ramdas et al. ("Time-uniform central limit theory and asymptotic confidence sequences", 2023, the
  Gaussian mixture boundary GrowthBook and Eppo use). Its half-width on the difference is
  se * k(n), with n the customers of both variants and
  k(n) = sqrt(2 (n rho^2 + 1) / (n rho^2) * ln(sqrt(n rho^2 + 1) / alpha)),
  rho^2 = (-2 ln alpha + ln(-2 ln alpha + 1)) / N*,
  where N* (`tuning_n`) is the sample size at which the sequence is tightest (GrowthBook's default,
  5,000; the report passes the experiment's minimum sample of both variants). The interval on the
  lift is Fieller's with k(n) in place of the normal quantile, so it excludes 0 exactly when the
  sequence on the difference does. The matching always-valid p-value is the inverse of the mixture
  e-value. Looking at it every day does not inflate the false-positive rate (see the A/A simulations
  in tests/experiments/test_statistics.py).
- `customers_needed`: customers per variant for a two-sided fixed-horizon test at `alpha` to detect
  a relative lift of `mde` with probability `power`, for the observed per-customer variances.

Sample ratio mismatch: `srm_p_value` (Pearson's chi-square against fixed weights) and
`srm_time_weighted` for an allocation that moves (Thompson sampling): each customer counted once, at
their first exposure, against the weights in force then, with the exact covariance of that mixture.
Guardrails: `histogram_quantile` reads a latency quantile from bucket counts (what the rollups keep),
within the buckets' width of numpy's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import special, stats

ALPHA = 0.05
SRM_ALPHA = 0.001
DEFAULT_TUNING_N = 5000
DEFAULT_MDE = 0.05
DEFAULT_POWER = 0.8

Distribution = Literal["normal", "t"]

_NAN = float("nan")


# --- sufficient statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class RatioMoments:
    """Sufficient statistics of a ratio metric sum(y) / sum(x) over one variant's customers: the number
    of customers, the sums of y (e.g. clicks) and x (e.g. impressions), and their second moments."""

    n: int
    sum_y: float
    sum_x: float
    sum_yy: float
    sum_xx: float
    sum_xy: float

    @classmethod
    def from_arrays(cls, y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray) -> RatioMoments:
        ya = np.asarray(y, dtype=float)
        xa = np.asarray(x, dtype=float)
        if ya.shape != xa.shape or ya.ndim != 1:
            raise ValueError("y and x must be one-dimensional arrays of the same length")
        return cls(
            n=int(ya.size),
            sum_y=float(ya.sum()),
            sum_x=float(xa.sum()),
            sum_yy=float(ya @ ya),
            sum_xx=float(xa @ xa),
            sum_xy=float(ya @ xa),
        )


@dataclass(frozen=True)
class MeanMoments:
    """Sufficient statistics of a per-customer mean: customers, sum and sum of squares."""

    n: int
    sum_y: float
    sum_yy: float

    @classmethod
    def from_array(cls, y: Sequence[float] | np.ndarray) -> MeanMoments:
        ya = np.asarray(y, dtype=float)
        if ya.ndim != 1:
            raise ValueError("y must be a one-dimensional array")
        return cls(n=int(ya.size), sum_y=float(ya.sum()), sum_yy=float(ya @ ya))


@dataclass(frozen=True)
class Estimate:
    """A variant's metric, the variance of that estimate (its squared standard error), the customers it
    rests on, and the reference distribution of its test statistic. NaN where undefined."""

    value: float
    variance: float
    n: int
    distribution: Distribution = "normal"

    @property
    def unit_variance(self) -> float:
        """The per-customer variance (n x the variance of the estimate): what a power calculation needs."""
        return self.variance * self.n


def _sample_variance(n: int, total: float, total_sq: float) -> float:
    # Clamped at 0: for a constant column the two terms cancel up to rounding.
    return max(0.0, (total_sq - total * total / n) / (n - 1))


def ratio_estimate(m: RatioMoments) -> Estimate:
    """sum(y) / sum(x) with its delta-method variance:
    Var(R) = (s_y^2 - 2 R s_xy + R^2 s_x^2) / (n mean(x)^2), sample (co)variances with n - 1."""
    if m.n <= 0 or m.sum_x <= 0:
        return Estimate(_NAN, _NAN, max(m.n, 0))
    value = m.sum_y / m.sum_x
    if m.n < 2:
        return Estimate(value, _NAN, m.n)
    n = m.n
    var_y = _sample_variance(n, m.sum_y, m.sum_yy)
    var_x = _sample_variance(n, m.sum_x, m.sum_xx)
    cov = (m.sum_xy - m.sum_x * m.sum_y / n) / (n - 1)
    mean_x = m.sum_x / n
    variance = max(0.0, var_y - 2 * value * cov + value * value * var_x) / (n * mean_x * mean_x)
    return Estimate(value, variance, n)


def mean_estimate(m: MeanMoments) -> Estimate:
    """The per-customer mean with the variance of the mean (s^2 / n); tested with Welch's t."""
    if m.n <= 0:
        return Estimate(_NAN, _NAN, 0, "t")
    value = m.sum_y / m.n
    if m.n < 2:
        return Estimate(value, _NAN, m.n, "t")
    return Estimate(value, _sample_variance(m.n, m.sum_y, m.sum_yy) / m.n, m.n, "t")


# --- the always-valid sequence ---------------------------------------------------------------------


def sequential_rho_squared(alpha: float = ALPHA, tuning_n: float = DEFAULT_TUNING_N) -> float:
    """The mixing variance rho^2 that makes the confidence sequence tightest at `tuning_n` observations."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if tuning_n <= 0:
        raise ValueError("tuning_n must be positive")
    log_alpha = math.log(alpha)
    return (-2 * log_alpha + math.log(-2 * log_alpha + 1)) / tuning_n


def sequential_critical_value(n: int, *, alpha: float = ALPHA, tuning_n: float = DEFAULT_TUNING_N) -> float:
    """k(n): the always-valid interval after n observations is estimate +- k(n) x standard error.
    Always above the fixed-horizon quantile (1.96 at 5 %): the price of looking at any time."""
    if n < 1:
        return math.inf
    n_rho2 = n * sequential_rho_squared(alpha, tuning_n)
    return math.sqrt(2 * (n_rho2 + 1) / n_rho2 * math.log(math.sqrt(n_rho2 + 1) / alpha))


def sequential_p_value(z: float, n: int, *, alpha: float = ALPHA, tuning_n: float = DEFAULT_TUNING_N) -> float:
    """The always-valid p-value for a z statistic after n observations: 1 / the Gaussian mixture
    e-value, capped at 1. It is below alpha exactly when |z| > k(n)."""
    if n < 1 or not math.isfinite(z):
        return _NAN if not math.isfinite(z) else 1.0
    n_rho2 = n * sequential_rho_squared(alpha, tuning_n)
    log_e = z * z * n_rho2 / (2 * (n_rho2 + 1)) - 0.5 * math.log(n_rho2 + 1)
    return 1.0 if log_e <= 0 else math.exp(-log_e)


# --- comparison ------------------------------------------------------------------------------------


def fieller_lift_interval(
    control: float, treatment: float, var_control: float, var_treatment: float, critical: float
) -> tuple[float, float]:
    """Fieller's interval for treatment / control - 1 (independent estimates): the lifts L with
    (T - (1 + L) C)^2 <= c^2 (V_T + (1 + L)^2 V_C). NaN bounds when the set is unbounded (the control
    is not distinguishable from 0 at this level)."""
    values = (control, treatment, var_control, var_treatment, critical)
    if not all(math.isfinite(v) for v in values):
        return _NAN, _NAN
    c2 = critical * critical
    a = control * control - c2 * var_control
    if a <= 0:
        return _NAN, _NAN
    root = math.sqrt(max(0.0, var_treatment * control * control + var_control * treatment * treatment
                         - c2 * var_treatment * var_control))  # fmt: skip
    low = (treatment * control - critical * root) / a
    high = (treatment * control + critical * root) / a
    return low - 1.0, high - 1.0


def welch_df(a: Estimate, b: Estimate) -> float:
    """Welch-Satterthwaite degrees of freedom of the difference of two means."""
    va, vb = a.variance, b.variance
    denominator = (va * va / (a.n - 1) if a.n > 1 else 0.0) + (vb * vb / (b.n - 1) if b.n > 1 else 0.0)
    if denominator <= 0:
        return math.inf
    return (va + vb) ** 2 / denominator


def _normal_quantile(p: float) -> float:
    return float(special.ndtri(p))


def customers_needed(
    control: Estimate,
    treatment: Estimate | None = None,
    *,
    mde: float = DEFAULT_MDE,
    alpha: float = ALPHA,
    power: float = DEFAULT_POWER,
) -> float:
    """Customers per variant (equal split) for a two-sided test at `alpha` to detect a relative lift of
    `mde` on the control's value with probability `power`, for the observed per-customer variances
    (the treatment's taken equal to the control's when it has none yet). NaN when the control has no
    variance estimate or a zero value."""
    unit_c = control.unit_variance
    unit_t = treatment.unit_variance if treatment is not None and math.isfinite(treatment.variance) else unit_c
    delta = abs(mde * control.value)
    if not (math.isfinite(unit_c) and math.isfinite(delta)) or delta == 0:
        return _NAN
    z = _normal_quantile(1 - alpha / 2) + _normal_quantile(power)
    return z * z * (unit_c + unit_t) / (delta * delta)


@dataclass(frozen=True)
class Comparison:
    """A treatment against the control on one metric."""

    control: Estimate
    treatment: Estimate
    difference: float
    statistic: float  # z or Welch t of the difference
    df: float  # inf for a z-test
    p_value: float
    lift: float
    ci_low: float
    ci_high: float
    sequential_ci_low: float
    sequential_ci_high: float
    sequential_p_value: float
    customers_needed: float  # per variant, for `mde`
    alpha: float = ALPHA
    mde: float = DEFAULT_MDE

    @property
    def significant(self) -> bool:
        """Fixed-horizon: valid when the experiment is read once, at its planned sample."""
        return math.isfinite(self.p_value) and self.p_value < self.alpha

    @property
    def sequential_significant(self) -> bool:
        """Always valid: safe to act on at any look."""
        return math.isfinite(self.sequential_p_value) and self.sequential_p_value < self.alpha


def compare(
    control: Estimate,
    treatment: Estimate,
    *,
    alpha: float = ALPHA,
    tuning_n: float = DEFAULT_TUNING_N,
    mde: float = DEFAULT_MDE,
    power: float = DEFAULT_POWER,
) -> Comparison:
    """Compare `treatment` with `control` (see the module's docstring for the methods)."""
    difference = treatment.value - control.value
    variance = treatment.variance + control.variance
    se = math.sqrt(variance) if variance >= 0 else _NAN
    welch = control.distribution == "t" or treatment.distribution == "t"
    df = welch_df(control, treatment) if welch else math.inf
    if math.isfinite(se) and se > 0 and math.isfinite(difference):
        statistic = difference / se
        if math.isfinite(df):
            p_value = float(2 * special.stdtr(df, -abs(statistic)))
            critical = float(special.stdtrit(df, 1 - alpha / 2))
        else:
            p_value = float(special.erfc(abs(statistic) / math.sqrt(2)))
            critical = _normal_quantile(1 - alpha / 2)
    else:
        # No variance (too few customers, or identical constant outcomes): nothing can be said.
        statistic, p_value, critical = _NAN, _NAN, _NAN
    n_total = control.n + treatment.n
    k = sequential_critical_value(n_total, alpha=alpha, tuning_n=tuning_n) if n_total > 0 else _NAN
    lift = treatment.value / control.value - 1 if control.value else _NAN
    ci_low, ci_high = fieller_lift_interval(
        control.value, treatment.value, control.variance, treatment.variance, critical
    )
    seq_low, seq_high = fieller_lift_interval(control.value, treatment.value, control.variance, treatment.variance, k)
    seq_p = sequential_p_value(statistic, n_total, alpha=alpha, tuning_n=tuning_n)
    return Comparison(
        control=control,
        treatment=treatment,
        difference=difference,
        statistic=statistic,
        df=df,
        p_value=p_value,
        lift=lift,
        ci_low=ci_low,
        ci_high=ci_high,
        sequential_ci_low=seq_low,
        sequential_ci_high=seq_high,
        sequential_p_value=seq_p,
        customers_needed=customers_needed(control, treatment, mde=mde, alpha=alpha, power=power),
        alpha=alpha,
        mde=mde,
    )


# --- sample ratio mismatch -------------------------------------------------------------------------


def srm_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square goodness of fit of the customers per variant against the weights. A variant of weight
    0 that has customers is a certain mismatch (p = 0). NaN when there is nothing to test (no customers,
    or fewer than two variants with a weight)."""
    if len(counts) != len(weights):
        raise ValueError("counts and weights must have the same length")
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ValueError("weights must be non-negative and not all zero")
    if any(c > 0 and w == 0 for c, w in zip(counts, weights, strict=True)):
        return 0.0
    observed = np.array([c for c, w in zip(counts, weights, strict=True) if w > 0], dtype=float)
    expected_share = np.array([w for w in weights if w > 0], dtype=float)
    total = observed.sum()
    if total <= 0 or observed.size < 2:
        return _NAN
    expected = total * expected_share / expected_share.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def srm_flagged(p_value: float | None, threshold: float = SRM_ALPHA) -> bool:
    return p_value is not None and math.isfinite(p_value) and p_value < threshold


@dataclass(frozen=True)
class SrmTest:
    """A sample-ratio test under a changing allocation: its p-value and the customers expected per
    variant (NaN p-value when there is nothing to test)."""

    p_value: float
    expected: tuple[float, ...]


def srm_time_weighted(
    observed: Sequence[int], new_customers: Sequence[int], weights: Sequence[Sequence[float]]
) -> SrmTest:
    """The sample-ratio test when the allocation changes over time (Thompson sampling).

    `weights[t]` is the allocation in force during period t (one weight per variant, normalised here),
    `new_customers[t]` the customers first exposed during it and `observed[j]` the customers whose first
    exposure was in variant j. Without a bug each customer's first variant is an independent draw from
    the weights of their period, so variant j expects E_j = sum_t n_t w_tj customers.

    The statistic is the quadratic form of O - E in the inverse of its exact covariance,
    sum_t n_t (diag(w_t) - w_t w_t'), on all variants but one (the counts sum to the total), referred to
    chi-square with (variants expected to have customers - 1) degrees of freedom. With one period it is
    exactly Pearson's statistic (`scipy.stats.chisquare` against n w); with weights that move, Pearson's
    statistic against the summed E would be conservative (a mixture of multinomials varies less than
    one multinomial with the mean weights), so it would miss mismatches this test sees. A variant with
    customers but no expected customer (weight 0 throughout) is a certain mismatch (p = 0)."""
    counts = np.asarray(observed, dtype=float)
    arrivals = np.asarray(new_customers, dtype=float)
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape != (arrivals.size, counts.size):
        raise ValueError("weights must be one row per period and one column per variant")
    if (w < 0).any() or (arrivals < 0).any() or (counts < 0).any():
        raise ValueError("weights and counts must be non-negative")
    totals = w.sum(axis=1)
    if ((totals <= 0) & (arrivals > 0)).any():
        raise ValueError("a period with customers has no positive weight")
    w = np.divide(w, totals[:, None], out=np.zeros_like(w), where=totals[:, None] > 0)
    if not math.isclose(counts.sum(), arrivals.sum()):
        raise ValueError("each customer is counted once: the observed and new customers must have the same total")
    expected = arrivals @ w
    result = tuple(float(e) for e in expected)
    if ((counts > 0) & (expected <= 0)).any():
        return SrmTest(0.0, result)
    keep = np.flatnonzero(expected > 0)
    if counts.sum() <= 0 or keep.size < 2:
        return SrmTest(_NAN, result)
    wk = w[:, keep]
    covariance = np.diag(expected[keep]) - (wk * arrivals[:, None]).T @ wk
    difference = (counts - expected)[keep][:-1]
    reduced = covariance[:-1, :-1]
    statistic = float(difference @ np.linalg.lstsq(reduced, difference, rcond=None)[0])
    return SrmTest(float(stats.chi2.sf(max(statistic, 0.0), keep.size - 1)), result)


# --- guardrails ------------------------------------------------------------------------------------


def histogram_quantile(edges: Sequence[float], counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile of values counted in buckets: bucket b holds [edges[b - 1], edges[b]) (bucket 0
    from 0, the last bucket from edges[-1] up, read as edges[-1]). Linear within the bucket that holds
    numpy's position q (n - 1), the values taken as spread evenly over it (as Prometheus'
    histogram_quantile does): off the exact quantile by at most that bucket's width. None when empty."""
    if not 0 <= q <= 1:
        raise ValueError("q must be in [0, 1]")
    n = sum(count for count in counts.values() if count > 0)
    if n == 0:
        return None
    position = q * (n - 1)
    below = 0
    for bucket in sorted(b for b, count in counts.items() if count > 0):
        count = counts[bucket]
        if position < below + count:
            if bucket >= len(edges):
                return float(edges[-1])
            low = float(edges[bucket - 1]) if bucket > 0 else 0.0
            high = float(edges[bucket])
            # The k-th of `count` values spread evenly: at (k + 0.5) / count of the bucket's width.
            return low + (high - low) * (position - below + 0.5) / count
        below += count
    return float(edges[-1])


# --- the verdict in words --------------------------------------------------------------------------


def format_percent(value: float, *, signed: bool = True) -> str:
    if not math.isfinite(value):
        return "unbounded"
    return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"


def format_interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "[unbounded]"
    return f"[{format_percent(low)}, {format_percent(high)}]"


def format_p(p: float) -> str:
    if not math.isfinite(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


@dataclass(frozen=True)
class VariantVerdictInput:
    name: str
    comparison: Comparison


@dataclass(frozen=True)
class VerdictInput:
    metric_label: str
    control_name: str
    treatments: Sequence[VariantVerdictInput]
    counts: Sequence[int] = ()
    weights: Sequence[float] = ()
    srm_p: float | None = None
    minimum_sample: int | None = None
    names: Sequence[str] = field(default_factory=tuple)
    # Customers expected per variant when the allocation changed over time (Thompson sampling): the
    # sample-ratio sentence then shows them instead of the weights.
    expected: Sequence[float] = ()
    # Variant name -> the guardrails it fails, in words ("p95 latency 412 ms is above the 300 ms guardrail").
    guardrail_failures: Mapping[str, Sequence[str]] = field(default_factory=dict)


def _guardrail_sentence(v: VariantVerdictInput, metric: str, control: str, failures: Sequence[str]) -> str:
    # A variant failing a guardrail is never the winner, however it does on the metric: the figures
    # are still given, for the record, without the word "significant" leading.
    c = v.comparison
    sentence = f"{v.name} fails its guardrails ({'; '.join(failures)}): it cannot be the winner"
    if c.control.n >= 2 and c.treatment.n >= 2 and math.isfinite(c.p_value):
        direction = "ahead of" if c.difference > 0 else "behind"
        sentence += (
            f", whatever its {metric} ({direction} {control}: {format_percent(c.lift)} "
            f"{format_interval(c.ci_low, c.ci_high)}, {format_p(c.p_value)})"
        )
    return sentence + "."


def _treatment_sentence(v: VariantVerdictInput, metric: str, control: str, minimum_sample: int | None) -> str:
    c = v.comparison
    smallest = min(c.control.n, c.treatment.n)
    if c.control.n < 2 or c.treatment.n < 2 or not math.isfinite(c.p_value):
        return f"{v.name}: not enough data yet on {metric} ({c.treatment.n} customers against {c.control.n})."
    direction = "ahead of" if c.difference > 0 else "behind"
    figures = f"{format_percent(c.lift)} {format_interval(c.ci_low, c.ci_high)}"
    if c.sequential_significant:
        return (
            f"{v.name} is {direction} {control} on {metric}: {figures}, significant ({format_p(c.p_value)}; "
            f"always-valid interval {format_interval(c.sequential_ci_low, c.sequential_ci_high)})."
        )
    reached = minimum_sample is not None and smallest >= minimum_sample
    if c.significant and reached:
        return (
            f"{v.name} is {direction} {control} on {metric}: {figures}, significant at the planned sample "
            f"({format_p(c.p_value)}); the always-valid interval "
            f"{format_interval(c.sequential_ci_low, c.sequential_ci_high)} still includes 0."
        )
    if c.significant:
        planned = f"the minimum sample ({minimum_sample:,} per variant) is not reached and " if minimum_sample else ""
        return (
            f"{v.name} {'leads' if c.difference > 0 else 'trails'} on {metric} ({figures}, {format_p(c.p_value)}) "
            f"but {planned}the always-valid "
            f"interval {format_interval(c.sequential_ci_low, c.sequential_ci_high)} still includes 0: keep it running."
        )
    needed = c.customers_needed
    if math.isfinite(needed):
        more = max(0, math.ceil(needed) - smallest)
        lift_text = format_percent(c.mde, signed=False)
        tail = (
            f"about {more:,} more customers per variant needed for a {lift_text} lift"
            if more > 0
            else f"with {smallest:,} customers per variant a {lift_text} lift would have shown: "
            "any difference is likely smaller"
        )
    else:
        tail = "the variance cannot be estimated yet"
    return (
        f"no significant difference yet between {v.name} and {control} on {metric} "
        f"({figures}, {format_p(c.p_value)}); {tail}."
    )


def verdict(data: VerdictInput) -> str:
    """The report's conclusion in words, for a merchandiser: a sample ratio mismatch first (it voids the
    comparison), then one sentence per treatment."""
    sentences: list[str] = []
    if srm_flagged(data.srm_p):
        split = " / ".join(f"{c:,}" for c in data.counts)
        if data.expected:
            planned = " / ".join(f"{e:,.0f}" for e in data.expected) + " expected from the allocation history"
        else:
            total_w = sum(data.weights) or 1.0
            planned = "weights " + " / ".join(f"{w / total_w * 100:.0f} %" for w in data.weights)
        named = f" ({', '.join(data.names)})" if data.names else ""
        sentences.append(
            f"sample ratio mismatch: customers per variant{named} {split} against {planned} "
            f"({format_p(data.srm_p if data.srm_p is not None else _NAN)}); the split is broken (a bug in "
            "assignment, caching or logging), so the comparison below cannot be trusted until it is fixed."
        )
    control_failures = data.guardrail_failures.get(data.control_name)
    if control_failures:
        sentences.append(f"the control {data.control_name} fails its guardrails ({'; '.join(control_failures)}).")
    if not data.treatments:
        sentences.append("no treatment to compare with the control.")
    for v in data.treatments:
        failures = data.guardrail_failures.get(v.name)
        if failures:
            sentences.append(_guardrail_sentence(v, data.metric_label, data.control_name, failures))
        else:
            sentences.append(_treatment_sentence(v, data.metric_label, data.control_name, data.minimum_sample))
    return " ".join(sentences)
