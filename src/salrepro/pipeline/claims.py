"""The paper's claims, each tested on every run, and the claims table that judges them in every column.

Rows are the paper's claims (CLAIMS); columns (`columns`) are where we judge them: the paper's own
numbers; SAL under the defaults of docs/method.md and under the preset (`paper_fit`), every method at the
paper's lr (1e-4); the same two readings with every method at its own lr (the `tuned` stage).

A claim's test reads a frame of runs (one row per trained model: runs.runs_frame, or a stage's
runs.csv) and, per dataset, estimates one effect with its 95% interval (stats.py):

- SAL beats BP: SAL-16 (the paper's best row, fixed in advance) minus BP, Welch's t; every other K is
  shown beside it, descriptive.
- Accuracy rises / training loss falls with K: the slope per doubling of K, OLS on every run at every K.
- The gap grows with depth / width: SAL's slope minus BP's per doubling (the method x log2(level)
  interaction, OLS on every run); depth on the residual nets only (depth >= 4: depth 2 is the shallow
  ReLU net, another architecture, shown apart).
- SAL trains at every depth: each residual depth within NI_MARGIN points of SAL's best depth
  (non-inferiority by the 95% interval of the difference: all must pass, so no adjustment inside a dataset).
- SAL beats MoE at equal K: SAL minus MoE averaged over K > 1, OLS with a term per K.

A trend whose best level is interior is named ("peaks at K = 4, then flat"); if the levels after the
peak fall significantly, the claim that it grows is not supported there. A point (one configuration at
one level) with fewer than stats.MIN_RUNS finished runs enters no test: it is drawn and listed,
marked descriptive. Runs whose training was unstable (runs.unstable) stay in (they are what
that configuration does) and are counted in the evidence; a level whose runs all diverged counts
against "trains at every depth".

Multiplicity: within a cell, Holm across its datasets decides each dataset's verdict (supported or
contradicted when its Holm-adjusted p < ALPHA, by the effect's sign; inconclusive otherwise);
Benjamini-Hochberg q over every dataset test of the whole table is shown beside it. Over datasets: a
random-effects pooled effect with its interval beside the count; the verdict counts datasets
(supported when more than half support it, SAL beats BP: 85% once ten datasets run; contradicted when
more than half contradict it; mixed when some do each; inconclusive otherwise), and a cell resting on
fewer than MIN_DATASETS datasets reads "limited evidence".

    cells = claim_cells(runs_by_stage, params)        # runs_by_stage: report.read_stage_runs(...)
    table = claims_table(cells)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import paper, stats
from .schema import parse_method
from .stats import ALPHA, MIN_RUNS, Effect

VERDICTS = ("supported", "contradicted", "mixed", "inconclusive", "limited evidence", "not testable")
MIN_DATASETS = 3  # a cell resting on fewer datasets reads "limited evidence"
SAL_K = 16  # "SAL beats BP" compares SAL-16 with BP: the paper's best row, fixed before looking at ours
NI_MARGIN = 5.0  # "trains at every depth": each depth within this many points of the best depth
MIN_DEPTH = 4  # the depth claims read the residual nets only (depth 2 is the shallow ReLU net)
VALUE = "val_accuracy_pct"


# ---------------------------------------------------------------------------
# Per-dataset evidence
# ---------------------------------------------------------------------------
def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that finished (a diverged run has no final metrics)."""
    return runs[~runs["diverged"].astype(bool)] if "diverged" in runs else runs


def _values(runs: pd.DataFrame, metric: str = VALUE) -> np.ndarray:
    return finished(runs)[metric].to_numpy(float)


def _unstable(runs: pd.DataFrame) -> int:
    return int(runs["unstable"].astype(bool).sum()) if "unstable" in runs else 0


def _pick(runs: pd.DataFrame, method: str, areas: int | None = None, **shape) -> pd.DataFrame:
    r = runs[runs["method"] == method]
    if areas is not None:
        r = r[r["areas"] == areas]
    for k, v in shape.items():
        r = r[r[k] == v]
    return r


def _mean(v) -> str:
    return f"{np.mean(v):.1f}" if len(v) else "n/a"


def _point(runs: pd.DataFrame, metric: str = VALUE, digits: int = 1) -> str:
    """'37.7 (5)' or '12.1 (3 of 5: 2 diverged), 1 unstable': a point's mean, its runs and their troubles."""
    v = _values(runs, metric)
    text = f"{np.mean(v):.{digits}f}" if len(v) else "none finished"
    n, done, bad = len(runs), len(v), _unstable(runs)
    text += f" ({done})" if done == n else f" ({done} of {n}: {n - done} diverged)"
    if bad and done == n:
        text += f", {bad} unstable"
    return text + ("" if done >= MIN_RUNS else " [descriptive]")


def _testable(runs: pd.DataFrame) -> bool:
    return len(_values(runs)) >= MIN_RUNS


@dataclass
class Finding:
    """One dataset's test of one claim: its effect, its shape, and what it rests on."""

    dataset: str
    display: str
    effect: Effect | None  # None: this dataset cannot test the claim (too few runs or levels)
    direction: int  # +1: the claim predicts a positive effect, -1 a negative one
    text: str  # the evidence in words (levels, means, runs)
    shape: str = ""  # "peaks at K = 4, then flat"
    blocks: bool = False  # the shape forbids "supported" (a significant fall after an interior peak)
    forced: str = ""  # a verdict that needs no test (e.g. every run of a depth diverged: "contradicted")
    unit: str = "pts"
    reference: float = 0.0  # the effect is read against this (non-inferiority: -NI_MARGIN)
    digits: int = 1  # decimals of the effect (losses: 3)
    p_holm: float = math.nan
    q_bh: float = math.nan
    verdict: str = "inconclusive"

    def decide(self) -> str:
        """The verdict, once p_holm is set (see the module docstring)."""
        if self.forced:
            return self.forced
        e = self.effect
        if e is None or not (self.p_holm < ALPHA):
            return "inconclusive"
        if np.sign(e.estimate - self.reference) == self.direction:
            return "inconclusive" if self.blocks else "supported"
        return "contradicted"

    def as_dict(self) -> dict:
        """For claims.json: numbers that do not exist are null."""
        e = self.effect
        return {"dataset": self.dataset, "display": self.display, "verdict": self.verdict, "unit": self.unit,
                "reference": self.reference,
                **{k: _num(getattr(e, k)) if e else None for k in ("estimate", "low", "high", "p", "df")},
                "p_holm": _num(self.p_holm), "q_bh": _num(self.q_bh), "runs": e.n if e else 0,
                "shape": self.shape, "evidence": self.text}

    def line(self) -> str:
        e = self.effect
        if self.forced:
            return f"{self.display}: {self.text}; {self.shape} ({self.verdict})"
        if e is None:
            return f"{self.display}: {self.text} (cannot test: too few runs or levels)"
        stat = f"{e.text(self.unit, self.digits)}, p {_p(e.p)}, Holm {_p(self.p_holm)}" + (
            f", BH q {_p(self.q_bh)}" if math.isfinite(self.q_bh) else "")
        return f"{self.display}: {self.text}; effect {stat}{f'; {self.shape}' if self.shape else ''} ({self.verdict})"


def _num(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _p(p) -> str:
    return "n/a" if p is None or not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _levels(runs: pd.DataFrame, axis: str) -> list:
    return sorted(set(runs[axis]))


def _peak(means: dict, tail, direction: int, name: str) -> tuple[str, bool]:
    """(shape, blocks): where the best level (by the claim's direction) is interior, name it; `tail` is the
    trend over the levels from the best to the last: a significant move against the claim there blocks
    "supported"."""
    levels = sorted(means)
    best = max(levels, key=lambda v: direction * means[v])
    if best == levels[-1] or tail is None:
        return "", False
    fell = tail.p < ALPHA and np.sign(tail.estimate) == -direction
    return f"peaks at {name} {best}, then {'reverses' if fell else 'flat'}", fell


def _dataset_groups(runs: pd.DataFrame):
    for ds in dict.fromkeys(runs["dataset"]):
        yield ds, paper.display_of(runs, ds), runs[runs["dataset"] == ds]


def findings_sal_beats_bp(runs: pd.DataFrame) -> list[Finding]:
    """SAL-16 against BP per dataset (Welch); each other K beside it, descriptive."""
    out = []
    for ds, name, r in _dataset_groups(runs):
        bp, sal = _pick(r, "bp", 1), _pick(r, "sal")
        if bp.empty or sal.empty:
            continue
        ks = sorted(set(sal["areas"]))
        k = SAL_K if SAL_K in ks else None
        others = ", ".join(f"SAL-{j} {_point(_pick(sal, 'sal', j))}" for j in ks if j != k)
        text = f"BP {_point(bp)}" + (f", SAL-{k} {_point(_pick(sal, 'sal', k))}" if k else "") + \
               (f"; beside it {others}" if others else "")
        a = _pick(sal, "sal", k) if k else None
        effect = stats.welch(_values(a), _values(bp)) if k and _testable(a) and _testable(bp) else None
        out.append(Finding(ds, name, effect, +1, text + ("" if k else f" (no SAL-{SAL_K} run)")))
    return out


def _trend(runs: pd.DataFrame, axis: str, metric: str, direction: int, name: str, method="sal", areas=None,
           what: str = "") -> list[Finding]:
    """One method's metric against a level (K, depth or width): the slope per doubling over every testable
    level, every run."""
    out = []
    for ds, dname, r in _dataset_groups(runs):
        r = _pick(r, method, areas)
        levels = _levels(r, axis)
        if len(levels) < 2:
            continue
        points = {v: r[r[axis] == v] for v in levels}
        used = [v for v in levels if _testable(points[v])]
        text = f"{what}{', '.join(f'{name} {v}: {_point(points[v], metric, 1 if metric == VALUE else 2)}' for v in levels)}"
        if len(used) < 2:
            out.append(Finding(ds, dname, None, direction, text, unit=_unit(metric)))
            continue
        fin = finished(pd.concat([points[v] for v in used]))
        effect = stats.trend(fin[metric], fin[axis])
        means = {v: float(np.mean(_values(points[v], metric))) for v in used}
        best = max(used, key=lambda v: direction * means[v])
        tail_runs = fin[fin[axis] >= best]
        tail = stats.trend(tail_runs[metric], tail_runs[axis]) if best != used[-1] else None
        shape, blocks = _peak(means, tail, direction, name)
        out.append(Finding(ds, dname, effect, direction, text, shape, blocks, unit=_unit(metric) + " per doubling",
                           digits=1 if metric == VALUE else 3))
    return out


def _unit(metric: str) -> str:
    return "pts" if metric == VALUE else "loss"


def findings_accuracy_rises_with_k(runs: pd.DataFrame) -> list[Finding]:
    return _trend(runs, "areas", VALUE, +1, "K", what="SAL accuracy %: ")


def findings_train_loss_falls_with_k(runs: pd.DataFrame) -> list[Finding]:
    return _trend(runs, "areas", "train_loss", -1, "K", what="SAL training loss: ")


def _residual(runs: pd.DataFrame, axis: str) -> pd.DataFrame:
    return runs[runs["depth"] >= MIN_DEPTH] if axis == "depth" else runs


def _shallow_note(runs: pd.DataFrame, axis: str) -> str:
    """Depth 2 (the shallow ReLU net), shown apart from the depth claims."""
    if axis != "depth":
        return ""
    d2 = runs[runs["depth"] < MIN_DEPTH]
    parts = [f"{m.upper() if m == 'bp' else 'SAL'} {_point(g)}" for m, g in d2.groupby("method", sort=False)]
    return f" [depth 2, the shallow ReLU net, apart: {', '.join(parts)}]" if parts else ""


def findings_gap_grows_with(runs: pd.DataFrame, axis: str) -> list[Finding]:
    """SAL's accuracy slope minus BP's per doubling of depth (residual nets) or width: the interaction."""
    name = "depth" if axis == "depth" else "width"
    out = []
    for ds, dname, r_all in _dataset_groups(runs):
        r = _residual(r_all, axis)
        sal, bp = _pick(r, "sal"), _pick(r, "bp", 1)
        levels = sorted(set(sal[axis]) & set(bp[axis]))
        if len(levels) < 2:
            continue
        text = f"SAL - BP gap, accuracy points: " + ", ".join(
            f"{name} {v}: {_gap_text(sal[sal[axis] == v], bp[bp[axis] == v])}" for v in levels) + _shallow_note(r_all, axis)
        used = [v for v in levels if _testable(sal[sal[axis] == v]) and _testable(bp[bp[axis] == v])]
        trailing = bool(used) and all((e := stats.welch(_values(sal[sal[axis] == v]), _values(bp[bp[axis] == v]))).p < ALPHA
                                      and e.estimate < 0 for v in used)
        if len(used) < 2:
            out.append(Finding(ds, dname, None, +1, text, unit="pts per doubling"))
            continue
        fin = finished(pd.concat([sal[sal[axis].isin(used)], bp[bp[axis].isin(used)]]))
        is_sal = (fin["method"] == "sal").to_numpy()
        effect = stats.gap_trend(fin[VALUE], fin[axis], is_sal)
        gaps = {v: float(np.mean(_values(sal[sal[axis] == v])) - np.mean(_values(bp[bp[axis] == v]))) for v in used}
        best = max(used, key=lambda v: gaps[v])
        tail_runs = fin[fin[axis] >= best]
        tail = (stats.gap_trend(tail_runs[VALUE], tail_runs[axis], (tail_runs["method"] == "sal").to_numpy())
                if best != used[-1] else None)
        shape, blocks = _peak(gaps, tail, +1, name)
        if trailing:
            shape = (shape + "; " if shape else "") + f"SAL below BP at every {name}"
        out.append(Finding(ds, dname, effect, +1, text, shape, blocks, unit="pts per doubling"))
    return out


def _gap_text(sal: pd.DataFrame, bp: pd.DataFrame) -> str:
    a, b = _values(sal), _values(bp)
    gap = f"{np.mean(a) - np.mean(b):+.1f}" if len(a) and len(b) else "n/a"
    tag = "" if len(a) >= MIN_RUNS and len(b) >= MIN_RUNS else " [descriptive]"
    return f"{gap} (SAL {len(a)}, BP {len(b)} runs){tag}"


def findings_trains_at_every_depth(runs: pd.DataFrame) -> list[Finding]:
    """Each residual depth's SAL accuracy against SAL's best depth: non-inferior within NI_MARGIN points.
    The effect is the worst depth's difference from the best; its p tests "difference = -margin"
    (two-sided), so a Holm-significant effect above -margin supports, below it contradicts."""
    out = []
    for ds, dname, r_all in _dataset_groups(runs):
        sal = _pick(_residual(r_all, "depth"), "sal")
        levels = _levels(sal, "depth")
        if not levels:
            continue
        points = {v: sal[sal["depth"] == v] for v in levels}
        text = "SAL accuracy %: " + ", ".join(f"depth {v}: {_point(points[v])}" for v in levels) + _shallow_note(
            _pick(r_all, "sal"), "depth")
        failed = [v for v in levels if len(_values(points[v])) == 0]
        if failed:  # every run of these depths diverged: it does not train there
            out.append(Finding(ds, dname, None, +1, text, forced="contradicted",
                               shape=f"every run diverged at depth {', '.join(map(str, failed))}"))
            continue
        used = [v for v in levels if _testable(points[v])]
        if len(used) < 2:
            out.append(Finding(ds, dname, None, +1, text))
            continue
        best = max(used, key=lambda v: np.mean(_values(points[v])))
        diffs = {v: stats.welch(_values(points[v]), _values(points[best])) for v in used if v != best}
        worst = min(diffs, key=lambda v: diffs[v].low)
        e = diffs[worst]
        shifted = stats.welch(_values(points[worst]) + NI_MARGIN, _values(points[best]))  # H0: diff = -margin
        effect = Effect(e.estimate, e.low, e.high, shifted.p, e.df, e.n)
        out.append(Finding(ds, dname, effect, +1, text, f"worst depth {worst} against the best, depth {best}",
                           unit="pts", reference=-NI_MARGIN))
    return out


def findings_sal_beats_moe(runs: pd.DataFrame) -> list[Finding]:
    """SAL minus MoE at equal K, averaged over K > 1 (OLS with a term per K); each K beside it."""
    out = []
    for ds, dname, r in _dataset_groups(runs):
        sal, moe = _pick(r, "sal"), _pick(r, "moe")
        ks = sorted(set(sal["areas"]) & set(moe["areas"]))
        if not ks:
            continue
        text = ", ".join(f"K={k} SAL {_point(_pick(sal, 'sal', k))} vs MoE {_point(_pick(moe, 'moe', k))}" for k in ks)
        used = [k for k in ks if k > 1 and _testable(_pick(sal, "sal", k)) and _testable(_pick(moe, "moe", k))]
        if not used:
            out.append(Finding(ds, dname, None, +1, text))
            continue
        fin = finished(pd.concat([sal[sal["areas"].isin(used)], moe[moe["areas"].isin(used)]]))
        effect = stats.group_effect(fin[VALUE], (fin["method"] == "sal").to_numpy(), fin["areas"].to_numpy())
        out.append(Finding(ds, dname, effect, +1, text + f"; averaged over K = {', '.join(map(str, used))}"))
    return out


# ---------------------------------------------------------------------------
# A claim over datasets
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    id: str  # the key of claims.json and report.json
    statement: str  # the paper's claim, as it states it
    data: str  # which view it reads: "table2", "depth", "width" or "moe"
    test: object  # runs -> [Finding]
    effect: str  # what the effect is, in words (the forest plot's axis)
    need: float = 0.5  # the share of datasets that must support it
    digits: int = 1  # decimals of its effect (a loss: 3)
    short: str = ""  # its name in the claims table


CLAIMS = (
    Claim("sal_beats_bp", "SAL beats BP on nine of ten datasets (Table 2)", "table2", findings_sal_beats_bp,
          f"SAL-{SAL_K} minus BP, accuracy points", need=0.85, short="SAL-16 beats BP (Table 2)"),
    Claim("accuracy_rises_with_k", "Accuracy rises with the number of areas K (Table 2)", "table2",
          findings_accuracy_rises_with_k, "SAL accuracy per doubling of K, points", short="accuracy rises with K (Table 2)"),
    Claim("train_loss_falls_with_k", "Training loss falls as K grows (Table 3)", "table2",
          findings_train_loss_falls_with_k, "SAL training loss per doubling of K", digits=3, short="training loss falls with K (Table 3)"),
    Claim("gap_grows_with_depth", "BP degrades with depth while SAL does not: the gap grows (Figure 2)", "depth",
          lambda r: findings_gap_grows_with(r, "depth"), "SAL's slope minus BP's per doubling of depth, points", short="SAL's lead grows with depth (Fig. 2)"),
    Claim("gap_grows_with_width", "SAL's advantage over BP grows with width (Figure 3)", "width",
          lambda r: findings_gap_grows_with(r, "hidden"), "SAL's slope minus BP's per doubling of width, points", short="SAL's lead grows with width (Fig. 3)"),
    Claim("trains_at_every_depth", "SAL trains at every depth, to 128 (Figure 2)", "depth", findings_trains_at_every_depth,
          f"SAL's worst depth minus its best, points (non-inferior above -{NI_MARGIN:g})", short="SAL trains at every depth (Fig. 2)"),
    Claim("sal_beats_moe", "SAL beats a BP-trained top-1 MoE at equal K (Figures 4-5)", "moe", findings_sal_beats_moe,
          "SAL minus MoE at equal K > 1, accuracy points", short="SAL beats MoE at equal K (Figs. 4-5)"),
)
CLAIM = {c.id: c for c in CLAIMS}


def overall_verdict(counts: dict, need: float = 0.5) -> str:
    """The claim's verdict from its per-dataset counts {supported, contradicted, inconclusive}."""
    n = sum(counts.values())
    if n == 0:
        return "not testable"
    if n < MIN_DATASETS:
        return "limited evidence"
    if counts["supported"] > need * n:
        return "supported"
    if counts["contradicted"] > n / 2:
        return "contradicted"
    return "mixed" if counts["supported"] and counts["contradicted"] else "inconclusive"


def judge(claim: Claim, runs: pd.DataFrame) -> dict:
    """One claim on one frame of runs: every dataset's finding (Holm across them), the pooled effect,
    the counts and the verdict."""
    findings = claim.test(runs)
    tested = [f for f in findings if f.effect is not None or f.forced]
    p_holm = stats.holm([f.effect.p if f.effect is not None and not f.forced else math.nan for f in tested])
    for f, p in zip(tested, p_holm):
        f.p_holm = p
        f.verdict = f.decide()
    for f in findings:
        if f not in tested:
            f.verdict = "cannot test"
    counts = {v: sum(f.verdict == v for f in tested) for v in ("supported", "contradicted", "inconclusive")}
    pooled = stats.pool([f.effect for f in tested if f.effect is not None])
    need = claim.need if len(tested) >= 10 else 0.5
    verdict = overall_verdict(counts, need)
    head = (f"of {len(tested)} dataset(s): {counts['supported']} support it, {counts['contradicted']} contradict it, "
            f"{counts['inconclusive']} inconclusive (Holm-adjusted p < {ALPHA:g} across datasets, by the effect's sign)")
    if pooled is not None:
        head += f"; pooled (random effects) {pooled.text(digits=claim.digits)}"
    return {"id": claim.id, "claim": claim.statement, "verdict": verdict, "counts": counts,
            "pooled": None if pooled is None else {"estimate": pooled.estimate, "low": pooled.low, "high": pooled.high,
                                                   "digits": claim.digits},
            "effect": claim.effect, "note": _note(findings), "findings": findings,
            "evidence": head + ". " + "; ".join(f.line() for f in findings)}


def _note(findings: list[Finding]) -> str:
    """What the verdict alone would hide: named peaks, SAL below BP at every level."""
    parts = [f"{f.display}: {f.shape}" for f in findings if f.shape and ("peaks" in f.shape or "below" in f.shape)]
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# Columns: where each claim is judged
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    id: str
    title: str
    reading: str  # SAL's reading: "default" or a preset's name
    tuned: bool  # every method at its own chosen lr (else the paper's lr)


def columns(preset: str, paper_lr: float = 1e-4) -> tuple[Column, ...]:
    return (Column("defaults", f"defaults, lr {paper_lr:g}", "default", False),
            Column("preset", f"{preset}, lr {paper_lr:g}", preset, False),
            Column("defaults_tuned", "defaults, tuned lr", "default", True),
            Column("preset_tuned", f"{preset}, tuned lr", preset, True))


def reading_view(runs: pd.DataFrame, reading: str) -> pd.DataFrame:
    """The rows of one reading: SAL's runs under `reading` and every other method's (which have none)."""
    if runs.empty:
        return runs
    return runs[(runs["method"] != "sal") | (runs["reading"] == reading)]


def depth_view(runs: pd.DataFrame, methods, depths, hidden: int) -> pd.DataFrame:
    """The rows of the depth figure's nets in a tuned frame: the methods of `tuned.depth` (e.g. BP and
    SAL-4) at the depth stage's depths and width; the shallow configurations that share depth 2 and the
    width (SAL-1, SAL-16, MoE) are left out."""
    pairs = {parse_method(m) for m in methods}
    keep = [(m, int(k)) in pairs for m, k in zip(runs["method"], runs["areas"])]
    return runs[pd.Series(keep, index=runs.index) & runs["depth"].isin(depths) & (runs["hidden"] == hidden)]


def views(stages: dict[str, pd.DataFrame], column: Column, params: dict | None = None) -> dict[str, pd.DataFrame]:
    """The runs a column's claims read: {"table2", "depth", "width", "moe"} (empty where not run).

    At the paper's lr: Tables 2/3 from the area sweep (defaults) or the preset sweep (its SAL runs beside
    the shared BP runs); depth and width from their stages, SAL under the column's reading; MoE from the
    moe stage, beside the SAL runs of the column's Table 2. Tuned: every view from the tuned stage (its
    shallow nets, and its depth nets where it ran them); width was not run at tuned lrs."""
    empty = pd.DataFrame()
    get = lambda name: stages.get(name, empty)  # noqa: E731
    if not column.tuned:
        table2 = get("area_sweep") if column.reading == "default" else get("preset_sweep")
        moe = get("moe")
        if column.reading != "default" and len(moe):
            moe = pd.concat([moe[moe["method"] == "moe"], table2[table2["method"] == "sal"]], ignore_index=True) \
                if len(table2) else empty
        return {"table2": table2, "depth": reading_view(get("depth"), column.reading),
                "width": reading_view(get("width"), column.reading), "moe": moe}
    tuned = reading_view(get("tuned"), column.reading)
    if tuned.empty:
        return {"table2": empty, "depth": empty, "width": empty, "moe": empty}
    shallow_hidden = params["area_sweep"]["hidden"] if params else tuned.loc[tuned["depth"] == 2, "hidden"].mode().iloc[0]
    table2 = tuned[(tuned["depth"] == 2) & (tuned["hidden"] == shallow_hidden)]
    depth = empty
    if params is not None:
        d = params["tuned"]["depth"]
        if column.reading in d["readings"]:
            depth = depth_view(tuned[tuned["dataset"].isin(d["datasets"])], d["methods"], params["depth"]["depths"],
                               params["depth"]["hidden"])
    return {"table2": table2, "depth": depth, "width": empty, "moe": table2}


def claim_cells(stages: dict[str, pd.DataFrame], params: dict | None = None, preset: str = "paper_fit",
                paper_lr: float = 1e-4, fit: tuple[str, ...] = ()) -> list[dict]:
    """Every (claim, column) cell: `judge`'s dict with `column` and `column_title`, or verdict "not run"
    where the column's view lacks the runs the claim needs; then BH q over every dataset test of the
    table (`adjust_table`). `fit`: the datasets the preset was chosen on (the protocol study's fit set):
    a preset column's cell also counts its other datasets alone (`held_out`), the test of the preset on
    data that played no part in choosing it."""
    cells = []
    for col in columns(preset, paper_lr):
        v = views(stages, col, params)
        for claim in CLAIMS:
            data = v[claim.data]
            if data.empty or not (data["method"] == "sal").any():
                cell = {"id": claim.id, "verdict": "not run", "counts": {}, "note": "", "pooled": None,
                        "effect": claim.effect, "findings": [],
                        "evidence": "no runs of this reading and learning-rate regime for this claim"}
            else:
                cell = judge(claim, data)
                tested = [f for f in cell["findings"] if f.verdict != "cannot test"]
                if col.reading != "default" and fit and any(f.dataset in fit for f in tested) \
                        and any(f.dataset not in fit for f in tested):
                    held = [f.verdict for f in tested if f.dataset not in fit]
                    cell["held_out"] = {v: held.count(v) for v in ("supported", "contradicted", "inconclusive")}
            cells.append({**cell, "claim": claim.statement, "column": col.id, "column_title": col.title})
    adjust_table(cells)
    return cells


def adjust_table(cells: list[dict]) -> None:
    """Benjamini-Hochberg over every dataset test of the table (q, shown beside Holm's p); then each
    cell's findings become plain dicts (claims.json) and its evidence is rewritten with q."""
    findings = [f for c in cells for f in c["findings"] if f.effect is not None and not f.forced]
    for f, q in zip(findings, stats.bh([f.effect.p for f in findings])):
        f.q_bh = q
    for c in cells:
        if c["findings"]:
            head = c["evidence"].split(". ", 1)[0]
            c["evidence"] = head + ". " + "; ".join(f.line() for f in c["findings"])
        c["datasets"] = [f.as_dict() for f in c.pop("findings")]


def verdict_text(cell: dict, pooled: bool = False) -> str:
    """'supported (3/0/2)', with the pooled effect if asked: 'supported (3/0/2); +4.1 [+1.2, +7.0]'."""
    if cell["verdict"] in ("not run", "not testable"):
        return cell["verdict"]
    c = cell["counts"]
    n = sum(c.values())
    word = f"limited evidence ({n} dataset{'s' if n != 1 else ''})" if cell["verdict"] == "limited evidence" \
        else cell["verdict"]
    text = f"{word} ({c['supported']}/{c['contradicted']}/{c['inconclusive']})"
    if cell.get("held_out") is not None:
        h = cell["held_out"]
        text += f", held out {h['supported']}/{h['contradicted']}/{h['inconclusive']}"
    if pooled and cell.get("pooled"):
        p = cell["pooled"]
        text += f"; {Effect(p['estimate'], p['low'], p['high'], math.nan, math.inf, 0).text(digits=p.get('digits', 1))}"
    return text + (f"; {cell['note']}" if cell.get("note") and not pooled else "")


def paper_verdicts() -> dict[str, dict]:
    """The paper's own numbers judged by the same tests where it prints them (Tables 2/3, ten datasets;
    each cell's mean and std as 5 runs with exactly that mean and std: the tests depend on nothing
    else); the figures' claims rest on curves it prints no numbers for."""
    own = paper.paper_runs()
    out = {}
    for c in CLAIMS:
        if c.data == "table2":
            cell = judge(c, own)
            cell.pop("findings")
            out[c.id] = cell
        else:
            out[c.id] = {"verdict": "claimed (no numbers printed)"}
    return out


def claims_table(cells: list[dict], pooled: bool = True) -> pd.DataFrame:
    """One row per claim: its short name, its own numbers judged by our tests, then each column's verdict
    with its counts (and, with `pooled`, the pooled effect and its interval)."""
    own = paper_verdicts()
    rows = {c.id: {"claim": c.short, "the paper's numbers": (verdict_text(own[c.id], pooled)
                                                                 if "counts" in own[c.id] else own[c.id]["verdict"])}
            for c in CLAIMS}
    for cell in cells:
        rows[cell["id"]][cell["column_title"]] = verdict_text(cell, pooled)
    return pd.DataFrame(list(rows.values()))


def table_markdown(table: pd.DataFrame) -> str:
    """The claims table in Markdown (the README's and the report's headline)."""
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns)
    return head + "\n" + "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False))


def forest_frame(cells: list[dict]) -> pd.DataFrame:
    """One row per (claim, column, dataset) with a tested effect: the forest plot's data."""
    rows = []
    for c in cells:
        for f in c.get("datasets", []):
            if f["estimate"] is not None and f["low"] is not None and math.isfinite(f["low"]):
                rows.append({"claim": c["id"], "statement": c["claim"], "column": c["column"],
                             "column_title": c["column_title"], "dataset": f["display"], "estimate": f["estimate"],
                             "low": f["low"], "high": f["high"], "verdict": f["verdict"], "effect": c["effect"],
                             "p": f["p"], "p_holm": f["p_holm"], "q_bh": f["q_bh"]})
    return pd.DataFrame(rows)


def claims_markdown(cells: list[dict]) -> str:
    """Claims as a Markdown list: the claim, its verdict in bold, the evidence."""
    return "\n".join(f"- {c['claim']}: **{verdict_text(c)}**. {c['evidence']}" for c in cells)


def claims_frame(cells: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"claim": c["claim"], "verdict": verdict_text(c), "evidence": c["evidence"]} for c in cells])


def bottom_line(cells: list[dict]) -> str:
    """One plain sentence: the headline claim (SAL beats BP) under the paper's protocol and against a
    BP trained at its own best learning rate, under the reading that reproduces Tables 2/3."""
    by = {(c["id"], c["column"]): c for c in cells}
    at_paper, tuned = by.get(("sal_beats_bp", "preset")), by.get(("sal_beats_bp", "preset_tuned"))
    if at_paper is None or at_paper["verdict"] == "not run":
        return "The headline claim (SAL beats BP) has not been tested here yet."
    text = (f"At the paper's learning rate, under the reading that reproduces its Tables 2/3, the headline claim "
            f"(SAL-{SAL_K} beats BP) is {verdict_text(at_paper, True)}")
    if tuned is None or tuned["verdict"] == "not run":
        return text + "; against a BP trained at its own best learning rate it has not been tested yet."
    return text + f"; with every method at its own best learning rate it is {verdict_text(tuned, True)}."
