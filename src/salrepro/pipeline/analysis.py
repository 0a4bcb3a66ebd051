"""What a stage's notebook says about its own runs: the tables and sentences the area sweep, depth, width,
MoE, tuned and datasets notebooks print beside their figures. The report stage reads them too; nothing
here reads another stage's outputs, so an edit to the report (report.py) leaves these stages up to date."""

from __future__ import annotations

import pandas as pd

from . import claims as claims_table
from . import paper, stats


def input_maps(summary: pd.DataFrame) -> list[str]:
    """The input maps a stage's results were trained under (summaries written before input_norm
    existed have no such column: every run then used [0, 1], now called `unit`)."""
    if summary.empty:
        return []
    return sorted(set(summary["input_norm"])) if "input_norm" in summary else ["unit"]


def wrapped(frame: pd.DataFrame, precision: int = 1):
    """A table for reading in a notebook or its HTML: long text wraps instead of being cut, left aligned,
    numbers with `precision` decimals (pandas' Styler would print six)."""
    return (frame.style.hide(axis="index").format(precision=precision)
            .set_properties(**{"text-align": "left", "white-space": "pre-wrap", "vertical-align": "top"})
            .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}]))


def table1_view(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 compact enough for a page: each of ours beside the paper's in one column."""
    def pair(ours, theirs):
        return [f"{o} ({t})" if pd.notna(o) else f"— ({t})" for o, t in zip(table[ours], table[theirs])]

    return pd.DataFrame({
        "dataset": table["dataset"], "classes (paper)": pair("classes", "paper_classes"),
        "samples (paper)": pair("total_samples", "paper_total_samples"),
        "resolution (paper)": pair("resolution", "paper_resolution"),
        "channels (paper)": pair("channel_processing", "paper_channel_processing"),
        "matches": table["matches"].map({True: "yes", False: "NO"}).fillna("—"),
        "status": [f"{s}; {n}" if n else s for s, n in zip(table["status"], table["note"])],
    })


def cell_counts(comparison: pd.DataFrame) -> dict:
    if comparison.empty:
        return {}
    c = comparison[comparison["z"].notna()]
    return {metric: paper.agreement_count(g) for metric, g in c.groupby("metric")}


def accuracy_agreement(comparison: pd.DataFrame) -> str:
    """'N of M accuracy cells agree with the paper.' (counted as cell_counts counts them)."""
    c = cell_counts(comparison).get("val_accuracy_pct", {"within": 0, "cells": 0})
    return f"{c['within']} of {c['cells']} accuracy cells agree with the paper."


def areas_versus_rule(summary: pd.DataFrame) -> str:
    """The ablation, generated: SAL-BP-K against SAL-BP-1 (= BP: what the areas give under
    backpropagation) and SAL-K against SAL-BP-K (what the feedback rule gives at equal areas)."""
    lines = []
    for ds, s in summary.groupby("dataset", sort=False):
        acc = {(r.method, int(r.areas)): (r.val_accuracy_pct_mean, r.val_accuracy_pct_std) for r in s.itertuples()}
        ks = sorted(k for m, k in acc if m == "salbp" and ("sal", k) in acc)
        if not ks or ("salbp", 1) not in acc:
            continue
        kmax = ks[-1]
        sb1, sbk = acc[("salbp", 1)], acc[("salbp", kmax)]
        best = max(ks, key=lambda k: acc[("salbp", k)][0])
        gaps = ", ".join(f"K = {k} {acc[('sal', k)][0] - acc[('salbp', k)][0]:+.1f}" for k in ks)
        lines.append(f"{paper.display_of(summary, ds)}: under backpropagation the areas move accuracy from "
                     f"{sb1[0]:.1f} +- {sb1[1]:.1f}% (SAL-BP-1, that is BP) to {sbk[0]:.1f} +- {sbk[1]:.1f}% at K = {kmax} "
                     f"(best K = {best}, {acc[('salbp', best)][0]:.1f}%); the feedback rule in place of backpropagation, "
                     f"SAL-K minus SAL-BP-K in accuracy points: {gaps}.")
    return "\n".join(f"- {line}" for line in lines) or "- SAL-BP was not run beside SAL here."


def tuned_lrs(choice: pd.DataFrame) -> str:
    """'Digits: BP 0.03 (~0.01), SAL-1 0.3*, ...; Semeion: ...' for the shallow nets (depth 2): each choice, its
    near-ties in parentheses (within one standard error), * where it is the grid's smallest or largest lr
    (one beyond it might have done better)."""
    parts = []
    edge = choice["at_grid_edge"] if "at_grid_edge" in choice else pd.Series(False, index=choice.index)
    ties = choice["near_ties"] if "near_ties" in choice else pd.Series("", index=choice.index)
    for ds, g in choice[choice["depth"] == 2].groupby("dataset", sort=False):
        parts.append(f"{paper.DISPLAY_NAMES[ds]}: " + ", ".join(
            f"{r.label} {'none (every lr failed)' if pd.isna(r.lr) else f'{r.lr:g}'}{'*' if edge[i] else ''}"
            + (f" (~{' ~'.join(str(ties[i]).split())})" if isinstance(ties[i], str) and ties[i].strip() else "")
            for i, r in zip(g.index, g.itertuples())))
    return "; ".join(parts) + ("; (~x) near-ties within one standard error" if ties.astype(object).fillna("").astype(str).str.strip().any() else "") \
        + ("; * the grid's smallest or largest lr: one beyond it might have done better" if edge.any() else "")


def run_costs(summary: pd.DataFrame, axis: str = "hidden") -> str:
    """What each point of a depth or width figure rests on and cost: seeds, mean seconds per step and
    peak memory, per method and value (where the runs recorded them)."""
    if summary.empty or "step_seconds" not in summary or summary["step_seconds"].isna().all():
        return ""
    name = "width" if axis == "hidden" else "depth"
    parts = []
    for r in summary.sort_values([axis, "label"]).itertuples():
        if pd.notna(r.step_seconds):
            parts.append(f"{r.label} {name} {getattr(r, axis)}: {int(r.seeds)} seed(s), {r.step_seconds:.2f} s a step, "
                         f"peak memory {r.peak_memory_gb:.1f} GB")
    return "Runs: " + "; ".join(parts) + "." if parts else ""


def depth_dips(summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    """BP's accuracy dips against depth, diagnosed from the runs: a depth whose runs lie significantly below
    both neighbours' (Welch's t, p < 0.05 each, Holm across the depths tested), with its training and
    validation losses beside theirs (a training loss near zero under a high validation loss is
    overfitting, not seed noise)."""
    if summary.empty or runs.empty:
        return ""
    candidates = []
    for ds, g in summary[(summary["method"] == "bp")].groupby("dataset", sort=False):
        g = g.sort_values("depth").reset_index(drop=True)
        r = claims_table.finished(runs[(runs["dataset"] == ds) & (runs["method"] == "bp")])
        acc = {d: r.loc[r["depth"] == d, "val_accuracy_pct"].to_numpy() for d in g["depth"]}
        for i in range(1, len(g) - 1):
            mid, lo, hi = g.iloc[i], g.iloc[i - 1], g.iloc[i + 1]
            if all(len(acc[x["depth"]]) >= stats.MIN_RUNS for x in (mid, lo, hi)):
                tests = [stats.welch(acc[n["depth"]], acc[mid["depth"]]) for n in (lo, hi)]
                if all(t.estimate > 0 for t in tests):
                    candidates.append((ds, mid, lo, hi, max(t.p for t in tests)))
    notes = []
    for (ds, mid, lo, hi, _), p in zip(candidates, stats.holm([c[4] for c in candidates])):
        if not p < stats.ALPHA:
            continue
        fits = (mid["train_loss_mean"] < min(lo["train_loss_mean"], hi["train_loss_mean"])
                and mid["val_loss_mean"] > max(lo["val_loss_mean"], hi["val_loss_mean"]))
        notes.append(
            f"{paper.display_of(summary, ds)}, BP at depth {mid['depth']}: {mid['val_accuracy_pct_mean']:.1f} "
            f"+- {mid['val_accuracy_pct_std']:.1f}% ({int(mid['seeds'])} seeds) against "
            f"{lo['val_accuracy_pct_mean']:.1f}% at {lo['depth']} and {hi['val_accuracy_pct_mean']:.1f}% at "
            f"{hi['depth']} (Holm-adjusted p {p:.3f}); training loss {mid['train_loss_mean']:.3f} against "
            f"{lo['train_loss_mean']:.3f} and {hi['train_loss_mean']:.3f}, validation loss {mid['val_loss_mean']:.2f} "
            f"against {lo['val_loss_mean']:.2f} and {hi['val_loss_mean']:.2f}: "
            + ("the lowest training loss and the highest validation loss of the three: the net fits its "
               "training set closest and generalises worst (overfitting)" if fits else "not explained by its losses"))
    return ("BP's dips against depth (a depth significantly below both neighbours, Welch's t, Holm across "
            "depths): " + "; ".join(notes) + ".") if notes else ""
