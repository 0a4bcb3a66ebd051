"""The statistics of the verdicts (pipeline/stats.py) against their libraries' own definitions."""

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from salrepro.pipeline import stats


def test_welch_is_scipys_welch_interval():
    a, b = [61.0, 64.5, 59.2, 66.0, 62.2], [55.1, 58.0, 57.4]
    e = stats.welch(a, b)
    r = sps.ttest_ind(a, b, equal_var=False)
    ci = r.confidence_interval(0.95)
    assert e.estimate == pytest.approx(np.mean(a) - np.mean(b))
    assert (e.low, e.high, e.p, e.df) == pytest.approx((ci.low, ci.high, r.pvalue, r.df))
    # Satterthwaite's df, by its formula, is what scipy used
    va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 3
    assert e.df == pytest.approx((va + vb) ** 2 / (va**2 / 4 + vb**2 / 2))
    assert e.se == pytest.approx(math.sqrt(va + vb))


def test_trend_and_gap_trend_are_statsmodels_ols_on_every_run():
    rng = np.random.default_rng(0)
    levels = np.repeat([256, 512, 1024, 2048], 3)
    bp = 60 + 1.0 * np.log2(levels) + rng.normal(0, 1, levels.size)
    sal = 50 + 4.0 * np.log2(levels) + rng.normal(0, 1, levels.size)
    t = stats.trend(sal, levels)
    fit = smf.ols("y ~ np.log2(x)", pd.DataFrame({"y": sal, "x": levels})).fit()
    assert (t.estimate, t.p) == pytest.approx((fit.params["np.log2(x)"], fit.pvalues["np.log2(x)"]))
    assert (t.low, t.high) == pytest.approx(tuple(fit.conf_int().loc["np.log2(x)"]))
    y = np.concatenate([sal, bp])
    x = np.concatenate([levels, levels])
    m = np.array(["sal"] * levels.size + ["bp"] * levels.size)
    g = stats.gap_trend(y, x, m == "sal")
    fit = smf.ols("y ~ C(m, Treatment('bp')) * np.log2(x)", pd.DataFrame({"y": y, "x": x, "m": m})).fit()
    term = "C(m, Treatment('bp'))[T.sal]:np.log2(x)"
    assert (g.estimate, g.p) == pytest.approx((fit.params[term], fit.pvalues[term]))
    assert g.estimate == pytest.approx(3.0, abs=1.0) and g.low > 0  # the slopes differ by 3 points per doubling


def test_holm_and_bh_adjust_as_statsmodels_defines_them():
    p = [0.01, 0.04, 0.03, 0.2, float("nan")]
    assert stats.holm(p)[:4] == pytest.approx(list(multipletests(p[:4], method="holm")[1]))
    assert stats.bh(p)[:4] == pytest.approx(list(multipletests(p[:4], method="fdr_bh")[1]))
    assert math.isnan(stats.holm(p)[4])
    # by their definitions, worked by hand: Holm multiplies the i-th smallest by (m - i + 1), monotone
    assert stats.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert stats.bh([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.0533333, 0.0533333, 0.2])


def test_pool_is_dersimonian_laird_and_one_effect_is_its_own_pool():
    effects = [stats.welch([1, 2, 3, 4], [0, 1, 0, 1]), stats.welch([5, 6, 7, 6], [1, 2, 1, 2]),
               stats.welch([2, 2.5, 3, 2], [2, 1, 2, 1.5])]
    pooled = stats.pool(effects)
    est = np.array([e.estimate for e in effects])
    w = 1 / np.array([e.se for e in effects]) ** 2
    q = np.sum(w * (est - np.sum(w * est) / w.sum()) ** 2)
    tau2 = max(0.0, (q - 2) / (w.sum() - np.sum(w**2) / w.sum()))  # DerSimonian-Laird
    w_re = 1 / (1 / w + tau2)
    assert pooled.estimate == pytest.approx(np.sum(w_re * est) / w_re.sum())
    assert pooled.low < pooled.estimate < pooled.high
    assert stats.pool(effects[:1]) == effects[0]
    assert stats.pool([]) is None
    exact = stats.welch([0.0] * 3, [0.0] * 3)  # no variance: nothing to weight it by
    assert stats.pool([*effects, exact]) == pooled


def test_group_effect_averages_the_difference_over_strata():
    y = [10, 11, 5, 6, 20, 21, 11, 12]  # a - b is +5 in stratum 1, +9 in stratum 2: +7 on average
    a = [1, 1, 0, 0, 1, 1, 0, 0]
    s = [1, 1, 1, 1, 2, 2, 2, 2]
    assert stats.group_effect(y, a, s).estimate == pytest.approx(7.0)


def test_no_variance_gives_an_exact_effect_not_nan():
    e = stats.welch([50.0] * 3, [40.0] * 3)
    assert (e.estimate, e.low, e.high, e.p) == (10.0, 10.0, 10.0, 0.0)
