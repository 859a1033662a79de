"""The numbers reports compare runs with, in one place.

- benefit of run R over baseline B on a task: ``(L_B - L_R) / L_B`` with L the SFT
  validation loss (positive: R is better). The same relative form, with the sign turned,
  measures forgetting: ``(C_R - C_B) / C_B`` with C the held-out C4 loss after SFT
  (positive: R forgot more).
- seed spread of a baseline: ``(max - min) / mean`` of its per-seed losses.
- Pearson's r = sum((x - x̄)(y - ȳ)) / sqrt(sum((x - x̄)²) · sum((y - ȳ)²)), undefined
  (None) with fewer than 3 points or when either variable has no variance.

Every test a verdict rests on comes from SciPy or statsmodels (no hand-written
distributions): t-intervals and p-values over seeds (``t_estimate``, paired with the
baseline's run of the same seed), Pearson's r with its p-value, the within-task slope of
benefit on proximity (OLS with an intercept per task), and a two-way ANOVA over a sweep's
grid. This module imports neither torch nor matplotlib: reading results must stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def mean_or_none(values: Sequence[float]) -> float | None:
    """The mean, or None for no values."""
    return float(np.mean(values)) if values else None


def relative_benefit(base: float | None, value: float | None) -> float | None:
    """``(base - value) / base``: the fraction by which ``value`` is lower than ``base`` (None when undefined)."""
    if base is None or value is None or base == 0 or not (math.isfinite(base) and math.isfinite(value)):
        return None
    return (base - value) / base


def relative_change(base: float | None, value: float | None) -> float | None:
    """``(value - base) / base``: the fraction by which ``value`` is higher than ``base`` (None when undefined)."""
    if base is None or value is None or base == 0 or not (math.isfinite(base) and math.isfinite(value)):
        return None
    return (value - base) / base


def relative_spread(values: Sequence[float]) -> float | None:
    """Seed spread ``(max - min) / mean`` of a baseline's losses; None with fewer than two seeds."""
    if len(values) < 2:
        return None
    mean = float(np.mean(values))
    if mean == 0:
        return None
    return (max(values) - min(values)) / mean


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r of paired samples; None with fewer than 3 points or zero variance in x or y."""
    if len(x) != len(y):
        raise ValueError(f"pearson: x has {len(x)} values, y has {len(y)}")
    if len(x) < 3:
        return None
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    da = a - a.mean()
    db = b - b.mean()
    sa = float(np.dot(da, da))
    sb = float(np.dot(db, db))
    scale = max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    if sa <= (1e-12 * scale) ** 2 * len(a) or sb <= (1e-12 * scale) ** 2 * len(b):
        return None
    r = float(np.dot(da, db)) / math.sqrt(sa * sb)
    return max(-1.0, min(1.0, r))



# ----------------------------------------------------------------------------- tests a verdict rests on

ALPHA = 0.05  # two-sided significance level of every test in the reports
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean effect over seeds with its 95% t-interval and two-sided p-value (H0: the effect is 0).

    ``values`` are the per-seed effects (paired: each the variant's seed against the baseline's
    run of the same seed). With fewer than two values nothing is tested (``p`` is None).
    """

    values: tuple[float, ...]
    mean: float | None
    ci: tuple[float, float] | None
    p: float | None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def tested(self) -> bool:
        return self.p is not None

    def outcome(self, alpha: float = ALPHA) -> str:
        """"positive" / "negative" (significant at ``alpha``), "inconclusive", or "untested"."""
        if not self.tested:
            return "untested"
        if self.p < alpha and self.mean is not None and self.mean != 0:
            return "positive" if self.mean > 0 else "negative"
        return "inconclusive"


def t_estimate(values: Sequence[float]) -> Estimate:
    """Mean, 95% t-interval and one-sample two-sided t-test p-value of ``values`` (SciPy)."""
    vals = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not vals:
        return Estimate((), None, None, None)
    mean = float(np.mean(vals))
    if len(vals) < 2:
        return Estimate(vals, mean, None, None)
    if float(np.std(vals, ddof=1)) <= 1e-12 * max(abs(v) for v in vals):  # no spread: t is undefined
        return Estimate(vals, mean, (mean, mean), 1.0 if mean == 0 else 0.0)
    res = stats.ttest_1samp(vals, 0.0)
    ci = res.confidence_interval(CONFIDENCE)
    return Estimate(vals, mean, (float(ci.low), float(ci.high)), float(res.pvalue))


def paired_relative_benefit(baseline: Mapping[str, float], variant: Mapping[str, float]) -> Estimate:
    """Per seed s present in both, ``(L_base,s − L_var,s) / L_base,s``, tested across seeds.

    Pairing by seed removes what the two runs of a seed share (its initialisation and data
    order), so the test measures the variant's effect, not the seeds' spread.
    """
    per_seed = [relative_benefit(baseline[s], variant[s]) for s in variant if s in baseline]
    return t_estimate([v for v in per_seed if v is not None])


def paired_relative_change(baseline: Mapping[str, float], variant: Mapping[str, float]) -> Estimate:
    """Per seed s present in both, ``(C_var,s − C_base,s) / C_base,s`` (positive: the variant's loss is higher)."""
    per_seed = [relative_change(baseline[s], variant[s]) for s in variant if s in baseline]
    return t_estimate([v for v in per_seed if v is not None])


@dataclass(frozen=True)
class CorrelationTest:
    """Pearson's r with its two-sided p-value (SciPy) and n; r and p None when undefined."""

    n: int
    r: float | None
    p: float | None


def correlation_test(x: Sequence[float], y: Sequence[float]) -> CorrelationTest:
    r = pearson(x, y)
    if r is None:
        return CorrelationTest(len(x), None, None)
    res = stats.pearsonr(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return CorrelationTest(len(x), float(res.statistic), float(res.pvalue))


@dataclass(frozen=True)
class Slope:
    """The within-group slope of y on x (a fixed intercept per group), with its 95% CI, p-value and df."""

    n: int
    groups: int
    slope: float
    ci: tuple[float, float]
    p: float
    df: int


def within_group_slope(x: Sequence[float], y: Sequence[float], groups: Sequence[str]) -> Slope | None:
    """OLS of ``y ~ x + C(group)`` (statsmodels): the slope of y on x inside each group, pooled.

    Pooling points of different SFT tasks into one Pearson r mostly measures which task a
    point belongs to; an intercept per task removes that, leaving the within-task relation
    (the fixed-effects counterpart of the paper's random intercept per task). The slope equals
    ``Σ (x − x̄_g)(y − ȳ_g) / Σ (x − x̄_g)²``. None when the residual has no degree of freedom
    or x does not vary inside any group.
    """
    import statsmodels.api as sm

    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    labels = list(dict.fromkeys(groups))
    if len(xs) != len(ys) or len(xs) != len(groups):
        raise ValueError("within_group_slope: x, y and groups differ in length")
    dummies = np.array([[1.0 if g == label else 0.0 for label in labels] for g in groups]).reshape(len(xs), len(labels))
    demeaned = xs - dummies @ np.array([xs[dummies[:, k] == 1].mean() for k in range(len(labels))]) if len(xs) else xs
    df = len(xs) - len(labels) - 1
    if df < 1 or float(np.dot(demeaned, demeaned)) <= 1e-24 * max(1.0, float(np.abs(xs).max())) ** 2:
        return None
    fit = sm.OLS(ys, np.column_stack([xs, dummies])).fit()
    low, high = fit.conf_int(alpha=1 - CONFIDENCE)[0]
    return Slope(len(xs), len(labels), float(fit.params[0]), (float(low), float(high)), float(fit.pvalues[0]), df)


@dataclass(frozen=True)
class VarianceShares:
    """Two-way ANOVA of one outcome over a grid: the share of the total sum of squares per source.

    ``replicated``: some cell has two or more values, so the interaction is estimated apart from
    the noise and tested; otherwise the interaction cannot be told from noise and its share is
    the residual's (``interaction_p`` None).
    """

    n: int
    start_share: float
    ratio_share: float
    interaction_share: float
    residual_share: float
    start_p: float | None
    ratio_p: float | None
    interaction_p: float | None
    replicated: bool


def two_way_shares(start: Sequence[float], ratio: Sequence[float], value: Sequence[float]) -> VarianceShares | None:
    """Type-II two-way ANOVA (statsmodels) of ``value ~ C(start) * C(ratio)`` (additive without replicates).

    share(source) = SS(source) / SS(total); None with fewer than two levels on an axis or too few points.
    """
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    frame = pd.DataFrame({"start": list(start), "ratio": list(ratio), "value": list(value)}).dropna()
    frame = frame[np.isfinite(frame["value"].to_numpy(dtype=np.float64))]
    if frame["start"].nunique() < 2 or frame["ratio"].nunique() < 2:
        return None
    replicated = bool(frame.groupby(["start", "ratio"]).size().max() >= 2)
    formula = "value ~ C(start) * C(ratio)" if replicated else "value ~ C(start) + C(ratio)"
    fit = smf.ols(formula, data=frame).fit()
    if fit.df_resid < 1:
        return None
    table = anova_lm(fit, typ=2)
    total = float(((frame["value"] - frame["value"].mean()) ** 2).sum())
    if total <= 0:
        return None

    def row(name: str) -> tuple[float, float | None]:
        if name not in table.index:
            return 0.0, None
        p = table.loc[name, "PR(>F)"]
        return float(table.loc[name, "sum_sq"]) / total, (None if not math.isfinite(p) else float(p))

    s_share, s_p = row("C(start)")
    r_share, r_p = row("C(ratio)")
    i_share, i_p = row("C(start):C(ratio)")
    resid = float(table.loc["Residual", "sum_sq"]) / total
    if not replicated:
        i_share, i_p = resid, None
    return VarianceShares(len(frame), s_share, r_share, i_share, resid, s_p, r_p, i_p, replicated)
