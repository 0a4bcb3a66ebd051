"""The statistics every verdict rests on, each a thin call into scipy or statsmodels (none hand-rolled).

    welch(a, b)                        difference of means, 95% interval (Welch's t, Satterthwaite df)
    trend(y, levels)                   slope of y per doubling of the level (OLS on log2(level)), every run
    gap_trend(y, levels, is_a)         the interaction: a's slope minus b's, per doubling (OLS, every run)
    group_effect(y, is_a, strata)      a minus b averaged over strata (OLS with a term per stratum)
    holm(p), bh(p)                     multiplicity: Holm within a family, Benjamini-Hochberg across a table
    pool(effects)                      a random-effects (DerSimonian-Laird) pooled effect across datasets

Each returns an `Effect`: the estimate in the units of y (accuracy points, or loss), its two-sided 95%
interval, the two-sided p of "no effect", the degrees of freedom and the runs it rests on. A verdict
reads the interval and p against ALPHA; nothing here decides what a claim means.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
import statsmodels.api as sm
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05  # two-sided: 95% intervals
MIN_RUNS = 3  # a point (a configuration at one level) with fewer finished runs enters no test: descriptive only


@dataclass(frozen=True)
class Effect:
    estimate: float
    low: float  # the 95% interval
    high: float
    p: float  # two-sided, of "no effect"; NaN where the data cannot say (no variance, too few runs)
    df: float
    n: int  # runs it rests on

    @property
    def se(self) -> float:
        """The standard error implied by the interval (for pooling)."""
        q = sps.t.ppf(1 - ALPHA / 2, self.df) if self.df and math.isfinite(self.df) else sps.norm.ppf(1 - ALPHA / 2)
        return (self.high - self.low) / (2 * q)

    def text(self, unit: str = "", digits: int = 1) -> str:
        """'+4.1 [+1.2, +7.0] pts': the estimate and its 95% interval, then `unit`."""
        f = f"{{:+.{digits}f}}"
        return f"{f.format(self.estimate)} [{f.format(self.low)}, {f.format(self.high)}]" + (f" {unit}" if unit else "")


def _exact(estimate: float, n: int) -> Effect:
    """An effect measured without noise (every run equal within each group): the interval is the point."""
    return Effect(estimate, estimate, estimate, 0.0 if estimate else 1.0, math.inf, n)


def welch(a, b) -> Effect:
    """mean(a) - mean(b) with Welch's 95% interval and two-sided p (unequal variances, Satterthwaite df)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if a.var() == 0 and b.var() == 0:
        return _exact(diff, len(a) + len(b))
    r = sps.ttest_ind(a, b, equal_var=False)
    ci = r.confidence_interval(1 - ALPHA)
    return Effect(diff, float(ci.low), float(ci.high), float(r.pvalue), float(r.df), len(a) + len(b))


def _ols_term(y, design: pd.DataFrame, term: str) -> Effect:
    fit = sm.OLS(np.asarray(y, float), sm.add_constant(design, has_constant="add")).fit()
    est = float(fit.params[term])
    if fit.df_resid <= 0 or not np.isfinite(fit.bse[term]):
        return Effect(est, math.nan, math.nan, math.nan, float(fit.df_resid), len(design))
    if fit.bse[term] == 0:
        return _exact(est, len(design))
    low, high = fit.conf_int(ALPHA).loc[term]
    return Effect(est, float(low), float(high), float(fit.pvalues[term]), float(fit.df_resid), len(design))


def trend(y, levels) -> Effect:
    """The slope of y per doubling of the level: OLS of every run's y on log2(level)."""
    x = np.log2(np.asarray(levels, float))
    return _ols_term(y, pd.DataFrame({"log2_level": x}), "log2_level")


def gap_trend(y, levels, is_a) -> Effect:
    """How much faster y grows per doubling for group a than for group b: the interaction of
    y ~ a + log2(level) + a:log2(level), OLS over every run of both groups (a: 1 for group a, 0 for b)."""
    x = np.log2(np.asarray(levels, float))
    a = np.asarray(is_a, float)
    return _ols_term(y, pd.DataFrame({"a": a, "log2_level": x, "a_x_log2_level": a * x}), "a_x_log2_level")


def group_effect(y, is_a, strata) -> Effect:
    """Group a minus group b, averaged over strata (e.g. K): OLS of every run's y on a and one term per
    stratum (the strata's own levels absorbed, the a-b difference common to all of them)."""
    dummies = pd.get_dummies(pd.Series(np.asarray(strata)).astype(str), prefix="s", drop_first=True, dtype=float)
    design = pd.concat([pd.DataFrame({"a": np.asarray(is_a, float)}), dummies], axis=1)
    return _ols_term(y, design, "a")


def holm(p) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN)."""
    return _adjust(p, "holm")


def bh(p) -> list[float]:
    """Benjamini-Hochberg's false-discovery-rate adjustment (NaN stays NaN)."""
    return _adjust(p, "fdr_bh")


def _adjust(p, method: str) -> list[float]:
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        gc.freeze()  # statsmodels' Holm calls gc.collect(): 0.7 s each beside torch's heap, unless it is frozen
        try:
            out[ok] = multipletests(p[ok], alpha=ALPHA, method=method)[1]
        finally:
            gc.unfreeze()
    return out.tolist()


def pool(effects: list[Effect]) -> Effect | None:
    """The random-effects (DerSimonian-Laird) pooled estimate across datasets, with its 95% interval;
    one dataset's effect is its own pool; None where none has an interval. An effect measured without
    noise (every run equal: e.g. a training loss of exactly 0 at every level) has no variance to weight
    it by and stays out of the pool (it is still its dataset's finding)."""
    usable = [e for e in effects if math.isfinite(e.low) and math.isfinite(e.high) and e.high > e.low]
    if not usable:
        return None
    if len(usable) == 1:
        return usable[0]
    est = np.array([e.estimate for e in usable])
    var = np.array([max(e.se, 1e-12) ** 2 for e in usable])
    with np.errstate(divide="ignore", invalid="ignore"):  # statsmodels divides by Q, 0 when the effects agree
        res = combine_effects(est, var, method_re="dl", row_names=list(range(len(usable))))
        frame = res.summary_frame()
    # tau^2 = 0 (no spread between datasets beyond their own noise): the random-effects estimate is the
    # fixed-effect one, which statsmodels then reports without the division by Q
    r = frame.loc["random effect" if res.tau2 > 0 else "fixed effect"]
    z = r["eff"] / r["sd_eff"] if r["sd_eff"] > 0 else math.inf
    return Effect(float(r["eff"]), float(r["ci_low"]), float(r["ci_upp"]), float(2 * sps.norm.sf(abs(z))), math.inf,
                  sum(e.n for e in usable))
