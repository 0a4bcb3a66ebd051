"""Calibration: the shared protocol checked on BP, the one method with no open choice.

The paper's BP baseline (input -> 256 -> classes, ReLU, plain SGD, Table 2's
settings) leaves nothing to read into its prose, so its row in Tables 2 and 3
measures the protocol itself: the input map, the splits, the loss. This stage
trains BP on every dataset of the profile under every input map
(`data.INPUT_NORMS`: pm1, unit, standard, global) and puts its three cells
(validation accuracy, training loss, validation loss) beside the paper's, with
z and the verdict of the report (`paper.compare_cell`). The map whose BP row
agrees with the paper is the one every other stage must use; the conclusion
names it and counts the cells.

    table = run_calibration("params.yaml", "results/quick/calibration")
    print(conclusion(table))
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import runs as ex
from . import paper
from .config import load_params
from ..data import DATA_OPTIONS
from .settings import Training, table2_training
from ..runs import write_json_atomic

DEFAULT_MAP = DATA_OPTIONS["input_norm"][1]
METRIC_NAMES = paper.METRIC_NAMES


def calibration_configs(input_norm: str, s: Training) -> list[ex.RunConfig]:
    """BP at Table 2's settings (`s`: settings.table2_training), one run per seed, under one input map."""
    return [ex.make_config(s.dataset, "bp", hidden=s.hidden, seed=i,
                           **s.training(data_options={**s.data_options, "input_norm": input_norm}))
            for i in range(s.seeds)]


def compare(summary: pd.DataFrame, sigma: float) -> pd.DataFrame:
    """BP's three cells per (dataset, map) beside the paper's BP row (paper.compare_area_sweep)."""
    parts = [paper.compare_area_sweep(g, sigma).assign(input_norm=norm)
             for norm, g in summary.groupby("input_norm", sort=False)]
    out = pd.concat(parts, ignore_index=True)
    out = out[out["method"] == "bp"]
    cols = ["dataset", "display", "input_norm", "metric", "ours_mean", "ours_std", "seeds", "diverged",
            "paper_mean", "paper_std", "diff", "z", "verdict"]
    return out[cols].reset_index(drop=True)


def run_calibration(params_file="params.yaml", out_dir="results/quick/calibration", progress=None,
                    results=None, executor=None) -> pd.DataFrame:
    """Train (or resume) BP on every dataset and map of `calibration:`; write the tables; return the comparison.
    (`results`, the profile's results folder, is the registry's common argument: calibration reuses no
    other stage's runs.) `executor`: the runs train as cluster jobs (pipeline/cluster.py); every map's
    jobs are submitted before it says they are pending."""
    cfg = load_params(params_file)
    cal = cfg["calibration"]
    out = Path(out_dir)
    summaries, pending, submitted = [], None, executor.Pending if executor is not None else ()
    for dataset in cal["datasets"]:
        s = table2_training(cfg, "calibration", dataset)
        for norm in cal["input_norms"]:
            try:
                records = ex.run_all(calibration_configs(norm, s), s.load(input_norm=norm), store=out / dataset / "runs",
                                     device=s.device, plan=s.batching(), progress=progress,
                                     desc=f"calibration {dataset} {norm}", executor=executor)
            except submitted as e:  # its jobs are queued: the other maps' go too before this returns
                pending = e
                continue
            summaries.append(ex.summarize(records))
    if pending is not None:
        raise pending
    summary = pd.concat(summaries, ignore_index=True)
    table = compare(summary, cfg["report"]["sigma"])
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "summary.csv", index=False)
    table.round(6).to_csv(out / "comparison.csv", index=False)
    (out / "conclusion.md").write_text(conclusion(table, cfg["report"]["sigma"]) + "\n")
    write_json_atomic(out / "metrics.json", headline(table))
    return table


def agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per map: cells within, cells compared, mean |z|, over every dataset; best first."""
    cells = table[table["z"].notna()]
    g = cells.groupby("input_norm", sort=False)
    out = pd.DataFrame.from_dict({m: paper.agreement_count(x) for m, x in g}, orient="index")
    out["mean_abs_z"] = g["z"].apply(lambda z: float(z.abs().mean()))
    return out.sort_values(["within", "mean_abs_z"], ascending=[False, True])


def agreement_view(table: pd.DataFrame) -> pd.DataFrame:
    """`agreement` as the notebook shows it: mean |z| to two decimals (a cell agrees at |z| <= sigma; digits
    beyond the second tell a reader nothing)."""
    return agreement(table).round({"mean_abs_z": 2}).rename(columns={"mean_abs_z": "mean |z|"})


def best_map(table: pd.DataFrame) -> str:
    """The map whose BP cells agree with the paper most often (ties: the smaller mean |z|)."""
    return str(agreement(table).index[0])


def headline(table: pd.DataFrame) -> dict:
    """metrics.json: per map, the cells that agree; per dataset and map, BP's accuracy."""
    agree = agreement(table)
    acc = table[table["metric"] == "val_accuracy_pct"]
    return {"best_map": best_map(table),
            "cells_within": {r.Index: {"within": int(r.within), "cells": int(r.cells), "mean_abs_z": round(r.mean_abs_z, 3)}
                             for r in agree.itertuples()},
            "bp_accuracy": {ds: {r.input_norm: round(float(r.ours_mean), 2) for r in g.itertuples()}
                            for ds, g in acc.groupby("dataset", sort=False)}}


def conclusion(table: pd.DataFrame, sigma: float = 2.0) -> str:
    """Plain-language conclusion, generated: which maps reproduce the paper's BP row (every cell
    within), which is closest, where the default stands, and BP's accuracy per dataset and map."""
    agree = agreement(table)
    datasets = list(dict.fromkeys(table["display"]))
    scope = (f"{int(agree['cells'].max())} BP cells per map (accuracy, training loss and validation loss on "
             f"{len(datasets)} dataset(s): {', '.join(datasets)}); a cell agrees within {sigma:g} combined standard deviations")
    full = [m for m, r in agree.iterrows() if r["within"] == r["cells"]]
    best = best_map(table)

    def count(m):
        r = agree.loc[m]
        return f"`{m}` {int(r['within'])}/{int(r['cells'])} (mean |z| {r['mean_abs_z']:.1f})"

    lines = [f"Calibration over {scope}."]
    if full:
        lines.append(f"Maps under which every BP cell agrees with the paper: {', '.join(f'`{m}`' for m in full)}; "
                     f"closest: {count(best)}.")
    else:
        lines.append(f"No map reproduces the paper's BP row in every cell; the closest is {count(best)}.")
    default_ok = DEFAULT_MAP in full or DEFAULT_MAP == best
    lines.append(f"The protocol's default `{DEFAULT_MAP}`: "
                 + (count(DEFAULT_MAP) if DEFAULT_MAP in agree.index else "not run")
                 + (" -- it reproduces the paper's BP row." if default_ok else " -- it does NOT reproduce the paper's BP row."))
    misses = [count(m) for m in agree.index if m not in full and m != best]
    if misses:
        lines.append("Maps that miss: " + ", ".join(misses) + ".")
    acc = table[table["metric"] == "val_accuracy_pct"]
    for ds, g in acc.groupby("display", sort=False):
        p = g.iloc[0]
        cells = ", ".join(f"{x.input_norm} {x.ours_mean:.1f}" + (f" +- {x.ours_std:.1f}" if pd.notna(x.ours_std) else "")
                          for x in g.itertuples())
        lines.append(f"{ds}: BP accuracy % {cells}; paper {p.paper_mean:.2f} +- {p.paper_std:.2f}.")
    return "\n".join(f"- {line}" for line in lines)


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """For display: one row per (dataset, map), ours and the paper's 'mean ± std' and the verdict per metric."""
    out = paper.side_by_side(table.assign(label=table["input_norm"]))
    out.index.names = ["dataset", "input map"]
    return out
