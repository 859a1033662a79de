"""The tests the verdicts rest on, against hand computations and direct SciPy/NumPy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from lab.statistics import (
    correlation_test,
    paired_relative_benefit,
    t_estimate,
    two_way_shares,
    within_group_slope,
)


def test_t_interval_and_p_by_hand():
    # values 0.1, 0.2, 0.15: mean 0.15, sd 0.05, se 0.05/√3, t = 0.15 / (0.05/√3) = 5.196, df 2
    e = t_estimate([0.1, 0.2, 0.15])
    se = 0.05 / math.sqrt(3)
    t_crit = 4.302652729911275  # t(0.975, df=2)
    assert e.mean == pytest.approx(0.15)
    assert e.ci == pytest.approx((0.15 - t_crit * se, 0.15 + t_crit * se))
    assert e.p == pytest.approx(2 * stats.t.sf(0.15 / se, 2))
    assert e.p == pytest.approx(0.0350987, rel=1e-5)
    assert e.outcome() == "positive" and e.n == 3


def test_one_value_is_not_tested():
    e = t_estimate([0.3])
    assert e.mean == 0.3 and e.p is None and e.ci is None and e.outcome() == "untested"
    assert t_estimate([]).outcome() == "untested"


def test_inconclusive_and_negative():
    assert t_estimate([0.1, -0.1, 0.05]).outcome() == "inconclusive"
    assert t_estimate([-0.2, -0.21, -0.19, -0.2]).outcome() == "negative"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=-5, max_value=5, allow_nan=False), min_size=2, max_size=8))
def test_t_estimate_matches_scipy(values):
    e = t_estimate(values)
    if np.std(values, ddof=1) <= 1e-12 * max(abs(v) for v in values):  # no spread: no t statistic
        assert e.ci == (e.mean, e.mean)
        return
    ref = stats.ttest_1samp(values, 0.0)
    assert e.p == pytest.approx(float(ref.pvalue), abs=1e-12)
    ci = ref.confidence_interval(0.95)
    assert e.ci == pytest.approx((float(ci.low), float(ci.high)))


def test_paired_benefit_uses_the_same_seed():
    base = {"1": 2.0, "2": 4.0, "3": 3.0}
    var = {"1": 1.8, "2": 3.6, "3": 2.7, "9": 0.1}  # seed 9 has no baseline partner: left out
    e = paired_relative_benefit(base, var)
    assert e.values == pytest.approx((0.1, 0.1, 0.1))
    assert e.outcome() == "positive", "the same 10% on every seed is certain, whatever the seeds' spread"


def test_correlation_matches_scipy():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 6.0]
    c = correlation_test(x, y)
    ref = stats.pearsonr(x, y)
    assert (c.n, c.r, c.p) == (5, pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert correlation_test([1, 2], [1, 2]).r is None
    assert correlation_test([1, 1, 1], [1, 2, 3]).p is None


def test_within_group_slope_by_hand():
    # Two tasks whose means differ a lot; inside each, y rises with x by 2 (plus noise).
    x = [0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0]
    noise = [0.1, -0.1, 0.05, -0.05, -0.1, 0.1, -0.05, 0.05]
    y = [10 + 2 * a + e for a, e in zip(x[:4], noise[:4])] + [-10 + 2 * a + e for a, e in zip(x[4:], noise[4:])]
    g = ["a"] * 4 + ["b"] * 4
    s = within_group_slope(x, y, g)
    xd = np.array(x) - np.repeat([np.mean(x[:4]), np.mean(x[4:])], 4)
    yd = np.array(y) - np.repeat([np.mean(y[:4]), np.mean(y[4:])], 4)
    assert s.slope == pytest.approx(float(xd @ yd / (xd @ xd)))
    assert s.df == 8 - 2 - 1 and s.groups == 2 and s.p < 1e-6 and s.ci[0] < s.slope < s.ci[1]


def test_pooling_hides_a_negative_within_task_relation():
    """Between tasks the points rise, inside each task they fall: pooled r is positive, the slope negative."""
    x = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
    y = [3.0, 2.0, 1.0, 13.0, 12.0, 11.0]
    g = ["a"] * 3 + ["b"] * 3
    assert correlation_test(x, y).r > 0.9
    s = within_group_slope(x, y, g)
    assert s.slope == pytest.approx(-1.0) and s.ci[1] < 0


def test_within_group_slope_needs_degrees_of_freedom():
    assert within_group_slope([1, 2], [1, 2], ["a", "b"]) is None
    assert within_group_slope([1, 1, 2, 2], [1, 2, 3, 4], ["a", "a", "b", "b"]) is None  # x constant inside groups


def test_anova_shares_pure_timing_effect():
    starts, ratios, values = [], [], []
    rng = np.random.default_rng(0)
    for s, effect in ((10, 0.0), (30, 1.0), (50, 2.0)):
        for r in (0.1, 0.3, 0.8):
            for _ in range(3):
                starts.append(s), ratios.append(r), values.append(effect + 0.01 * rng.standard_normal())
    v = two_way_shares(starts, ratios, values)
    assert v.replicated and v.n == 27
    assert v.start_share > 0.99 and v.ratio_share < 0.005 and v.interaction_share < 0.005
    assert v.start_p < 1e-10 and v.ratio_p > 0.01
    assert v.start_share + v.ratio_share + v.interaction_share + v.residual_share == pytest.approx(1.0)


def test_anova_by_hand_without_replicates():
    # 2 × 2 grid, one value per cell: y = [[1, 2], [3, 6]]. Grand mean 3; start means 1.5, 4.5; ratio means 2, 4.
    v = two_way_shares([1, 1, 2, 2], [1, 2, 1, 2], [1.0, 2.0, 3.0, 6.0])
    total = (1 - 3) ** 2 + (2 - 3) ** 2 + (3 - 3) ** 2 + (6 - 3) ** 2  # 14
    assert v.start_share == pytest.approx(4 * (1.5 - 3) ** 2 / total)  # 9/14
    assert v.ratio_share == pytest.approx(4 * (2 - 3) ** 2 / total)  # 4/14
    assert v.interaction_share == pytest.approx(1 / 14) and v.interaction_p is None and not v.replicated


def test_anova_interaction_detected():
    """Early starts tolerate higher ratios: the ratio hurts only at the late start."""
    starts, ratios, values = [], [], []
    rng = np.random.default_rng(1)
    for s in (10, 50):
        for r in (0.2, 0.8):
            for _ in range(4):
                starts.append(s), ratios.append(r)
                values.append((-1.0 if (s == 50 and r == 0.8) else 0.0) + 0.02 * rng.standard_normal())
    v = two_way_shares(starts, ratios, values)
    assert v.interaction_p < 1e-6 and v.interaction_share > 0.1
    assert two_way_shares([1, 1, 1], [1, 2, 3], [1.0, 2.0, 3.0]) is None
