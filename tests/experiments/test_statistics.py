"""recadmin.experiments.statistics against statsmodels / scipy, small worked examples, and simulated
A/A and A/B experiments (per-customer heterogeneity, daily looks)."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.regression.linear_model import WLS
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from recadmin.experiments import statistics as st

# --- worked examples by hand -----------------------------------------------------------------------


def test_ratio_estimate_matches_a_worked_example() -> None:
    # Three customers (clicks, impressions): (1, 10), (0, 5), (3, 15). CTR = 4 / 30 = 0.13333.
    # Residuals y - R x: -1/3, -2/3, 1; squares 1/9 + 4/9 + 1 = 14/9.
    # Var(R) = (14/9) / (n - 1) * n / (sum x)^2 = (14/9) / 2 * 3 / 900 = 7/2700 = 0.0025926.
    estimate = st.ratio_estimate(st.RatioMoments.from_arrays([1, 0, 3], [10, 5, 15]))
    assert estimate.value == pytest.approx(4 / 30)
    assert estimate.variance == pytest.approx(7 / 2700)
    assert estimate.n == 3


def test_fieller_interval_matches_a_worked_example_and_its_definition() -> None:
    # Control 10 % (se 1 %), treatment 12 % (se 1 %), c = 1.96:
    # a = C^2 - c^2 V_C = 0.01 - 0.00038415 = 0.00961585
    # root = sqrt(V_T C^2 + V_C T^2 - c^2 V_T V_C) = sqrt(1e-6 + 1.44e-6 - 3.8415e-8) = 0.00154970
    # ratio bounds (T C -+ c root) / a = (0.012 -+ 0.0030374) / 0.00961585 = 0.93207, 1.56381
    z = sps.norm.ppf(0.975)
    low, high = st.fieller_lift_interval(0.10, 0.12, 1e-4, 1e-4, z)
    assert low == pytest.approx(-0.067932, abs=1e-5)
    assert high == pytest.approx(0.563810, abs=1e-5)
    # Both ends solve (T - theta C)^2 = c^2 (V_T + theta^2 V_C).
    for bound in (low, high):
        theta = 1 + bound
        assert (0.12 - theta * 0.10) ** 2 == pytest.approx(z * z * (1e-4 + theta * theta * 1e-4))


def test_fieller_interval_is_unbounded_when_the_control_is_indistinguishable_from_zero() -> None:
    low, high = st.fieller_lift_interval(0.01, 0.02, 1e-4, 1e-4, 1.96)
    assert math.isnan(low) and math.isnan(high)


def test_srm_matches_a_worked_example_and_scipy() -> None:
    # 5,120 / 4,880 against 50 / 50: chi2 = (120^2 + 120^2) / 5000 = 5.76, p = P(chi2_1 > 5.76) = 0.0164
    assert st.srm_p_value([5120, 4880], [50, 50]) == pytest.approx(0.016395, abs=1e-5)
    counts, weights = [3300, 3350, 3350, 20], [33, 33, 33, 1]
    expected = np.array(weights) / sum(weights) * sum(counts)
    assert st.srm_p_value(counts, weights) == pytest.approx(sps.chisquare(counts, expected).pvalue, rel=1e-12)


def test_srm_treats_customers_in_a_zero_weight_variant_as_a_certain_mismatch() -> None:
    assert st.srm_p_value([500, 500, 1], [50, 50, 0]) == 0.0
    assert st.srm_p_value([500, 500, 0], [50, 50, 0]) == pytest.approx(1.0)
    assert math.isnan(st.srm_p_value([0, 0], [1, 1]))


def test_sequential_critical_value_matches_a_worked_example() -> None:
    # alpha 5 %, N* = 5000: rho^2 = (-2 ln 0.05 + ln(1 - 2 ln 0.05)) / 5000 = (5.99146 + 1.94468) / 5000
    # = 0.00158723; at n = 5000, n rho^2 = 7.93614 and
    # k = sqrt(2 * 8.93614 / 7.93614 * ln(sqrt(8.93614) / 0.05)) = sqrt(2.25201 * 4.09117) = 3.03521
    assert st.sequential_rho_squared(0.05, 5000) == pytest.approx(0.00158723, rel=1e-5)
    assert st.sequential_critical_value(5000, alpha=0.05, tuning_n=5000) == pytest.approx(3.03521, rel=1e-5)


@pytest.mark.parametrize("n", [10, 100, 1000, 5000, 100_000, 10_000_000])
def test_the_sequential_interval_is_always_wider_than_the_fixed_one(n: int) -> None:
    assert st.sequential_critical_value(n) > sps.norm.ppf(0.975)


@pytest.mark.parametrize("z", [0.5, 2.0, 2.9, 3.1, 4.0, 8.0])
def test_the_sequential_p_value_is_below_alpha_exactly_when_the_sequence_excludes_zero(z: float) -> None:
    n = 5000
    k = st.sequential_critical_value(n)
    assert (st.sequential_p_value(z, n) < 0.05) == (abs(z) > k)
    assert (st.sequential_p_value(-z, n) < 0.05) == (abs(z) > k)


# --- against statsmodels ---------------------------------------------------------------------------


def _customers(rng: np.random.Generator, n: int, ctr: float) -> tuple[np.ndarray, np.ndarray]:
    impressions = 1 + rng.poisson(rng.gamma(1.0, 12.0, size=n))
    propensity = rng.beta(2.0, 2.0 / ctr - 2.0, size=n)
    return rng.binomial(impressions, propensity).astype(float), impressions.astype(float)


def test_the_delta_method_variance_equals_statsmodels_hc1_of_the_weighted_regression() -> None:
    # sum(y) / sum(x) is the WLS fit of y/x on a constant with weights x; its heteroskedasticity-robust
    # (HC1) variance is the delta-method variance with n - 1 sample variances.
    rng = np.random.default_rng(7)
    clicks, impressions = _customers(rng, 1500, 0.05)
    fit = WLS(clicks / impressions, np.ones_like(clicks), weights=impressions).fit(cov_type="HC1")
    estimate = st.ratio_estimate(st.RatioMoments.from_arrays(clicks, impressions))
    assert estimate.value == pytest.approx(fit.params[0], rel=1e-12)
    assert estimate.variance == pytest.approx(fit.bse[0] ** 2, rel=1e-9)


def test_the_ratio_comparison_matches_statsmodels_robust_regression_on_the_treatment_dummy() -> None:
    rng = np.random.default_rng(8)
    yc, xc = _customers(rng, 2000, 0.05)
    yt, xt = _customers(rng, 2200, 0.055)
    comparison = st.compare(
        st.ratio_estimate(st.RatioMoments.from_arrays(yc, xc)), st.ratio_estimate(st.RatioMoments.from_arrays(yt, xt))
    )
    y = np.concatenate([yc, yt])
    x = np.concatenate([xc, xt])
    design = np.column_stack([np.ones_like(y), np.r_[np.zeros_like(yc), np.ones_like(yt)]])
    fit = WLS(y / x, design, weights=x).fit(cov_type="HC0")
    assert comparison.difference == pytest.approx(fit.params[1], rel=1e-10)
    # HC0 uses n where the delta method uses n - 1 per group: equal up to n / (n - 1).
    assert comparison.statistic == pytest.approx(fit.tvalues[1], rel=1e-3)
    assert comparison.p_value == pytest.approx(fit.pvalues[1], rel=2e-2)
    # The fixed-horizon interval of the lift excludes 0 exactly when the test rejects.
    assert (comparison.ci_low > 0 or comparison.ci_high < 0) == (comparison.p_value < 0.05)


def test_the_naive_impression_level_test_is_overconfident_where_the_customer_level_one_is_not() -> None:
    # Customers differ: their impressions are correlated, so the customer-level standard error is larger.
    rng = np.random.default_rng(9)
    clicks, impressions = _customers(rng, 2000, 0.05)
    estimate = st.ratio_estimate(st.RatioMoments.from_arrays(clicks, impressions))
    naive = estimate.value * (1 - estimate.value) / impressions.sum()
    assert estimate.variance > 1.5 * naive


def test_the_mean_comparison_is_welchs_t_test_of_statsmodels_and_scipy() -> None:
    rng = np.random.default_rng(10)
    control = np.where(rng.random(800) < 0.1, rng.lognormal(3.0, 1.0, 800), 0.0)
    treatment = np.where(rng.random(650) < 0.12, rng.lognormal(3.0, 1.1, 650), 0.0)
    comparison = st.compare(
        st.mean_estimate(st.MeanMoments.from_array(control)), st.mean_estimate(st.MeanMoments.from_array(treatment))
    )
    t, p, df = CompareMeans(DescrStatsW(treatment), DescrStatsW(control)).ttest_ind(usevar="unequal")
    assert comparison.statistic == pytest.approx(t, rel=1e-9)
    assert comparison.p_value == pytest.approx(p, rel=1e-9)
    assert comparison.df == pytest.approx(df, rel=1e-9)
    assert comparison.p_value == pytest.approx(sps.ttest_ind(treatment, control, equal_var=False).pvalue, rel=1e-9)
    assert comparison.lift == pytest.approx(treatment.mean() / control.mean() - 1)
    assert (comparison.ci_low > 0 or comparison.ci_high < 0) == (comparison.p_value < 0.05)


def test_customers_needed_matches_statsmodels_power_for_a_two_sample_test() -> None:
    control = st.Estimate(value=0.05, variance=0.04**2 / 10_000, n=10_000)  # per-customer sd 0.04
    needed = st.customers_needed(control, control, mde=0.05, alpha=0.05, power=0.8)
    effect_size = 0.05 * 0.05 / 0.04
    reference = NormalIndPower().solve_power(effect_size=effect_size, alpha=0.05, power=0.8, ratio=1.0)
    assert needed == pytest.approx(reference, rel=1e-3)


def test_the_fieller_interval_agrees_with_the_delta_method_for_large_samples() -> None:
    control = st.Estimate(0.05, 1e-8, 1_000_000)
    treatment = st.Estimate(0.055, 1.2e-8, 1_000_000)
    comparison = st.compare(control, treatment)
    se_delta = math.sqrt(1.2e-8 / 0.05**2 + 0.055**2 * 1e-8 / 0.05**4)
    z = sps.norm.ppf(0.975)
    assert comparison.ci_low == pytest.approx(0.1 - z * se_delta, abs=2e-4)
    assert comparison.ci_high == pytest.approx(0.1 + z * se_delta, abs=2e-4)


# --- the verdict -----------------------------------------------------------------------------------


def _comparison(n: int, control: float, treatment: float, unit_sd: float) -> st.Comparison:
    return st.compare(
        st.Estimate(control, unit_sd**2 / n, n), st.Estimate(treatment, unit_sd**2 / n, n), tuning_n=2 * n
    )


def test_the_verdict_names_a_significant_winner_with_its_lift_and_interval() -> None:
    comparison = _comparison(20_000, 0.05, 0.06, 0.05)
    text = st.verdict(
        st.VerdictInput(
            metric_label="CTR",
            control_name="control",
            treatments=[st.VariantVerdictInput("v4", comparison)],
            counts=[20_000, 20_000],
            weights=[50, 50],
            srm_p=0.4,
        )
    )
    assert text.startswith("v4 is ahead of control on CTR: +20.0 % [")
    assert "significant (p < 0.001" in text


def test_a_variant_significantly_behind_before_the_always_valid_interval_agrees_trails_not_leads() -> None:
    comparison = _comparison(2_000, 0.05, 0.0465, 0.05)  # z about -2.2: p < 0.05, not yet always-valid
    assert comparison.significant and not comparison.sequential_significant
    text = st.verdict(
        st.VerdictInput("CTR", "control", [st.VariantVerdictInput("v4", comparison)], [2000, 2000], [1, 1], 0.9)
    )
    assert text.startswith("v4 trails on CTR (-7.0 % [") and "leads" not in text


def test_the_verdict_says_how_many_more_customers_are_needed_when_nothing_is_significant() -> None:
    comparison = _comparison(1_000, 0.05, 0.0505, 0.05)
    text = st.verdict(
        st.VerdictInput("CTR", "control", [st.VariantVerdictInput("v4", comparison)], [1000, 1000], [1, 1], 0.9)
    )
    assert text.startswith("no significant difference yet between v4 and control on CTR (+1.0 % [")
    needed = math.ceil(comparison.customers_needed) - 1000
    assert f"about {needed:,} more customers per variant needed for a 5.0 % lift" in text


def test_the_verdict_leads_with_a_sample_ratio_mismatch() -> None:
    comparison = _comparison(5_000, 0.05, 0.06, 0.05)
    p = st.srm_p_value([5300, 4700], [50, 50])
    text = st.verdict(
        st.VerdictInput("CTR", "control", [st.VariantVerdictInput("v4", comparison)], [5300, 4700], [50, 50], p)
    )
    assert text.startswith("sample ratio mismatch: customers per variant 5,300 / 4,700 against weights 50 % / 50 %")


# --- simulations -----------------------------------------------------------------------------------


def _simulate_ctr_looks(
    rng: np.random.Generator, *, experiments: int, per_day: int, days: int, lift: float
) -> list[list[tuple[st.Estimate, st.Estimate]]]:
    """Per experiment, per daily look: (control, treatment) CTR estimates from per-customer sums.

    Customers arrive every day (per_day of them), each with their own click propensity (Beta, mean 5 %)
    and activity (Gamma-Poisson lists per day, 8 impressions each); treatment multiplies the propensity
    by 1 + lift. Sums accumulate as days pass, so a look sees returning customers' new impressions."""
    n = per_day * days
    arm = rng.integers(0, 2, size=(experiments, n))
    propensity = np.minimum(1.0, rng.beta(2.0, 38.0, size=(experiments, n)) * np.where(arm == 1, 1 + lift, 1.0))
    activity = rng.gamma(0.7, 1.0, size=(experiments, n))
    clicks = np.zeros((experiments, n))
    impressions = np.zeros((experiments, n))
    masks = [(arm == a).astype(float) for a in (0, 1)]
    looks: list[list[tuple[st.Estimate, st.Estimate]]] = [[] for _ in range(experiments)]
    for day in range(days):
        # Customers arrive in order, per_day a day: the first `active` columns have arrived.
        active = (day + 1) * per_day
        lists = rng.poisson(activity[:, :active])
        lists[:, day * per_day :] += 1  # a customer arrives by being served a list
        new_impressions = 8 * lists
        impressions[:, :active] += new_impressions
        clicks[:, :active] += rng.binomial(new_impressions, propensity[:, :active])
        y, x = clicks[:, :active], impressions[:, :active]
        sums = []
        for mask in (m[:, :active] for m in masks):
            sums.append(
                (
                    mask.sum(1),
                    np.einsum("ij,ij->i", mask, y),
                    np.einsum("ij,ij->i", mask, x),
                    np.einsum("ij,ij,ij->i", mask, y, y),
                    np.einsum("ij,ij,ij->i", mask, x, x),
                    np.einsum("ij,ij,ij->i", mask, y, x),
                )
            )
        for e in range(experiments):
            control, treatment = (
                st.ratio_estimate(st.RatioMoments(int(s[0][e]), *(float(v[e]) for v in s[1:]))) for s in sums
            )
            looks[e].append((control, treatment))
    return looks


@pytest.fixture(scope="module")
def aa_looks() -> list[list[tuple[st.Estimate, st.Estimate]]]:
    return _simulate_ctr_looks(np.random.default_rng(2024), experiments=1000, per_day=150, days=14, lift=0.0)


def test_aa_experiments_give_a_nominal_false_positive_rate_at_the_fixed_horizon(
    aa_looks: list[list[tuple[st.Estimate, st.Estimate]]],
) -> None:
    rejections = sum(st.compare(*looks[-1]).significant for looks in aa_looks)
    rate = rejections / len(aa_looks)
    print(f"A/A fixed-horizon false-positive rate: {rate:.1%}")
    assert 0.036 <= rate <= 0.064


def test_aa_experiments_looked_at_daily_stay_at_most_at_five_percent_with_the_sequential_interval(
    aa_looks: list[list[tuple[st.Estimate, st.Estimate]]],
) -> None:
    tuning_n = 2 * 150 * 14
    sequential = sum(
        any(st.compare(c, t, tuning_n=tuning_n).sequential_significant for c, t in looks) for looks in aa_looks
    )
    peeking = sum(any(st.compare(c, t).significant for c, t in looks) for looks in aa_looks)
    print(f"A/A daily looks: sequential {sequential / 1000:.1%}, fixed test peeked daily {peeking / 1000:.1%}")
    assert sequential / len(aa_looks) <= 0.05
    # What the sequential interval protects against: reading the fixed test every day inflates it.
    assert peeking / len(aa_looks) > 0.08


def test_an_ab_experiment_with_a_real_lift_is_detected_and_its_interval_covers_the_truth() -> None:
    looks = _simulate_ctr_looks(np.random.default_rng(99), experiments=200, per_day=300, days=14, lift=0.15)
    finals = [st.compare(*experiment[-1], tuning_n=2 * 300 * 14) for experiment in looks]
    detected = sum(c.significant and c.lift > 0 for c in finals) / len(finals)
    detected_sequentially = sum(
        any(st.compare(c, t, tuning_n=2 * 300 * 14).sequential_significant for c, t in experiment)
        for experiment in looks
    ) / len(looks)
    covered = sum(c.ci_low <= 0.15 <= c.ci_high for c in finals) / len(finals)
    print(f"A/B +15 %: power {detected:.0%}, sequential {detected_sequentially:.0%}, coverage {covered:.0%}")
    assert detected >= 0.8
    assert detected_sequentially >= 0.6
    assert 0.9 <= covered <= 0.99


def test_aa_experiments_on_revenue_per_customer_give_a_nominal_false_positive_rate() -> None:
    rng = np.random.default_rng(5)
    experiments, n = 1000, 1500
    buys = rng.random((experiments, n)) < 0.08
    revenue = np.where(buys, rng.lognormal(3.5, 1.0, (experiments, n)), 0.0)
    arm = rng.integers(0, 2, size=(experiments, n))
    rejections = 0
    for e in range(experiments):
        control, treatment = revenue[e][arm[e] == 0], revenue[e][arm[e] == 1]
        comparison = st.compare(
            st.mean_estimate(st.MeanMoments.from_array(control)),
            st.mean_estimate(st.MeanMoments.from_array(treatment)),
        )
        rejections += comparison.significant
    print(f"A/A revenue per customer false-positive rate: {rejections / experiments:.1%}")
    assert 0.036 <= rejections / experiments <= 0.064


def test_srm_is_detected_on_a_skewed_split_and_not_on_fair_ones() -> None:
    assert st.srm_flagged(st.srm_p_value([5300, 4700], [50, 50]))
    assert st.srm_flagged(st.srm_p_value([2100, 2000, 900], [40, 40, 20]))
    rng = np.random.default_rng(3)
    fair = rng.multinomial(10_000, [0.5, 0.3, 0.2], size=1000)
    flagged = sum(st.srm_flagged(st.srm_p_value(list(row), [50, 30, 20])) for row in fair)
    assert flagged <= 5  # 0.1 % expected


# --- the sample-ratio test under a changing allocation (Thompson sampling) -------------------------


def test_the_time_weighted_srm_with_one_period_is_scipys_chisquare() -> None:
    for observed, weights in (([480, 520], [0.5, 0.5]), ([300, 450, 250], [3, 4, 3]), ([90, 20, 10], [0.8, 0.1, 0.1])):
        total = sum(observed)
        expected = [total * w / sum(weights) for w in weights]
        test = st.srm_time_weighted(observed, [total], [weights])
        assert test.p_value == pytest.approx(sps.chisquare(observed, expected).pvalue, rel=1e-9)
        assert test.expected == pytest.approx(tuple(expected))


def test_the_time_weighted_srm_sums_the_expected_customers_of_each_period_by_hand() -> None:
    # 100 customers arrive under 50/50, then 300 under 80/20: 50 + 240 = 290 and 50 + 60 = 110 expected.
    # Exact variance of arm 1: 100 x 0.25 + 300 x 0.16 = 73; (300 - 290)^2 / 73 on 1 degree of freedom.
    test = st.srm_time_weighted([300, 100], [100, 300], [[0.5, 0.5], [0.8, 0.2]])
    assert test.expected == pytest.approx((290.0, 110.0))
    assert test.p_value == pytest.approx(sps.chi2.sf(100 / 73, 1), rel=1e-9)


def test_the_time_weighted_srm_refuses_inconsistent_input_and_flags_a_zero_weight_arm() -> None:
    with pytest.raises(ValueError, match="counted once"):
        st.srm_time_weighted([10, 10], [25], [[1, 1]])
    with pytest.raises(ValueError, match="one row per period"):
        st.srm_time_weighted([10, 10], [20], [[1, 1, 1]])
    assert st.srm_time_weighted([10, 10, 1], [21], [[1, 1, 0]]).p_value == 0.0
    assert math.isnan(st.srm_time_weighted([0, 0], [0], [[1, 1]]).p_value)


# Thompson-like allocations of three arms over five periods of unequal length (the share of arrivals).
_PERIOD_WEIGHTS = [
    [1 / 3, 1 / 3, 1 / 3],
    [0.45, 0.35, 0.20],
    [0.70, 0.20, 0.10],
    [0.85, 0.10, 0.05],
    [0.90, 0.05, 0.05],
]
_PERIOD_SHARE = [0.1, 0.15, 0.2, 0.25, 0.3]


def _thompson_split(
    rng: np.random.Generator, customers: int, *, lose_from: int | None = None, loss: float = 0.0
) -> tuple[list[int], list[int]]:
    """Customers assigned by the real assignment (hash of a fresh salt and the customer id, cut points
    of the weights in force when they first arrive); observed first variants and arrivals per period.
    `lose_from`: that arm loses `loss` of its customers (a logging bug)."""
    from recadmin.experiments.assignment import cumulative_thresholds, hash_bucket

    salt = f"{rng.integers(1 << 62):x}"
    thresholds = [cumulative_thresholds(w) for w in _PERIOD_WEIGHTS]
    periods = rng.choice(len(_PERIOD_WEIGHTS), size=customers, p=_PERIOD_SHARE)
    observed = [0, 0, 0]
    arrivals = [0] * len(_PERIOD_WEIGHTS)
    for i, period in enumerate(periods):
        arm = int(np.searchsorted(thresholds[period], hash_bucket(salt, f"c{i}"), side="right"))
        if arm == lose_from and rng.random() < loss:
            continue
        observed[arm] += 1
        arrivals[period] += 1
    return observed, arrivals


def test_srm_under_a_changing_allocation_without_a_bug_gives_uniform_p_values() -> None:
    rng = np.random.default_rng(11)
    p_values = []
    pearson = []
    for _ in range(200):
        observed, arrivals = _thompson_split(rng, 4000)
        test = st.srm_time_weighted(observed, arrivals, _PERIOD_WEIGHTS)
        p_values.append(test.p_value)
        pearson.append(sps.chisquare(observed, test.expected).pvalue)
    flagged = sum(st.srm_flagged(p) for p in p_values)
    uniformity = sps.kstest(p_values, "uniform").pvalue
    print(
        f"time-weighted SRM, 200 clean simulations: {flagged} flagged at 0.001; KS p = {uniformity:.3f}; "
        f"mean p {np.mean(p_values):.3f} (Pearson against the summed expectation: {np.mean(pearson):.3f})"
    )
    assert flagged <= 2  # 0.2 expected
    assert uniformity > 0.01
    # Pearson's statistic against the summed expectation ignores that the weights moved: conservative.
    assert np.mean(pearson) > np.mean(p_values)


def test_srm_under_a_changing_allocation_flags_an_arm_that_loses_ten_percent_of_its_customers() -> None:
    rng = np.random.default_rng(12)
    flagged = 0
    for _ in range(40):
        observed, arrivals = _thompson_split(rng, 20_000, lose_from=1, loss=0.10)
        flagged += st.srm_flagged(st.srm_time_weighted(observed, arrivals, _PERIOD_WEIGHTS).p_value)
    print(f"time-weighted SRM, arm 2 losing 10 % of its customers: {flagged} of 40 flagged")
    assert flagged >= 38


# --- the latency guardrail's percentile -------------------------------------------------------------


def test_a_quantile_read_from_histogram_buckets_is_within_the_bucket_width_of_numpys() -> None:
    from recadmin.metrics.models import LATENCY_EDGES_MS as edges

    rng = np.random.default_rng(3)
    for sample in (rng.lognormal(np.log(60), 0.5, 5000), rng.exponential(20, 300), rng.uniform(1, 900, 51)):
        counts: dict[int, int] = {}
        for value in sample:
            bucket = bisect.bisect_right(edges, value)
            counts[bucket] = counts.get(bucket, 0) + 1
        for q in (0.5, 0.95, 0.99):
            assert st.histogram_quantile(edges, counts, q) == pytest.approx(np.percentile(sample, q * 100), rel=0.02)


def test_a_histogram_quantile_by_hand() -> None:
    # Ten values in [10, 20) and ten in [20, 40): the median's position 9.5 is the last value of the
    # first bucket, read as 10 + 10 x (9.5 + 0.5) / 10 = 20; the 95th (18.05) lies in the second.
    edges = (10.0, 20.0, 40.0)
    assert st.histogram_quantile(edges, {1: 10, 2: 10}, 0.5) == pytest.approx(20.0)
    assert st.histogram_quantile(edges, {1: 10, 2: 10}, 0.95) == pytest.approx(20 + 20 * (18.05 - 10 + 0.5) / 10)
    assert st.histogram_quantile(edges, {0: 4}, 0.5) == pytest.approx(10 * 2 / 4)  # below the first edge: from 0
    assert st.histogram_quantile(edges, {3: 5}, 0.95) == 40.0  # past the last edge: the last edge
    assert st.histogram_quantile(edges, {}, 0.95) is None
