"""Protocol study: which reading of the paper's text reproduces its numbers?

docs/method.md leaves choices open (update divisor, feedback scale, router
width, prototype normalisation, selector learning rate, initialisation,
Digits input scaling). A *reading* is one set of those choices; the study
runs Table 2/3's grid (bp and SAL-1..16, the area sweep's training settings)
under each reading and measures, per dataset:

- the distance to the paper's rows: mean |z| over every cell of Tables 2 and
  3 for that dataset (z = (ours - paper) / combined std, as in the report),
  and the root-mean-square accuracy difference in percentage points;
- whether the reading shows the paper's qualitative claims: SAL (best K)
  above BP, and accuracy rising with K (SAL-16 against SAL-1), each tested
  for significance as in the report.

The defaults of docs/method.md are never moved to fit the paper: a reading
that fits better is reported as such, by name.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd

from .. import runs as ex
from . import claims, paper, registry
from .config import DATASET_OPTIONS, load_params
from ..data import DISPLAY_NAMES, load_dataset
from .area_sweep import Table2Settings
from .settings import instance_fields


def split_reading(reading: dict) -> tuple[dict, dict]:
    """(model options, data options) of a reading."""
    data = {k: v for k, v in reading.items() if k in DATASET_OPTIONS}
    return {k: v for k, v in reading.items() if k not in DATASET_OPTIONS}, data


def applies(reading: dict, dataset: str) -> bool:
    """Digits' input scaling means nothing for another dataset."""
    return dataset == "digits" or not split_reading(reading)[1]


def reading_configs(reading: dict, s: Table2Settings) -> list[ex.RunConfig]:
    """The area sweep's grid (`s`: study_settings) under the reading's choices."""
    options, data_options = split_reading(reading)
    return replace(s, options=options, data_options={**s.data_options, **data_options}).configs()


def score(summary: pd.DataFrame, sigma: float, runs: pd.DataFrame) -> dict:
    """Distance to the paper and the two qualitative claims (claims.py's tests on this one dataset's
    runs: SAL-16 above BP, accuracy rising with K; p < 0.05, no adjustment: a description of each
    reading, not a verdict), for one dataset and reading."""
    comp = paper.compare_area_sweep(summary, sigma)
    cells = comp[comp["z"].notna()]
    acc = cells[cells["metric"] == "val_accuracy_pct"]
    count = paper.agreement_count(comp)
    out = {
        "mean_abs_z": float(cells["z"].abs().mean()) if len(cells) else math.nan,
        "acc_rmse_pp": float(math.sqrt((acc["diff"] ** 2).mean())) if len(acc) else math.nan,
        "cells_within": count["within"], "cells": count["cells"],
    }
    for col, test in (("sal_above_bp", claims.findings_sal_beats_bp), ("rises_with_k", claims.findings_accuracy_rises_with_k)):
        found = test(runs)
        f = found[0] if found else None
        if f is not None and f.effect is not None:
            f.p_holm = f.effect.p  # one dataset: no family to adjust over
            f.verdict = f.decide()
        out[col] = f is not None and f.verdict == "supported"
        out[f"{col}_evidence"] = f.line() if f is not None else "not testable"
    return out


# Short names of the choices, for reading names ("area_fb10" is divisor=area, feedback_scale=10).
ABBREV = {"divisor": "", "feedback_scale": "fb", "feedback_dist": "fbdist_", "selector_lr_scale": "sel", "router_width": "r",
          "prototype_norm": "proto_", "init": "", "digits_scale": "digits_"}


def _defaults() -> dict:
    from ..data import DATA_OPTIONS
    from ..method.models import COMMON_OPTIONS, OPTIONS

    return {**OPTIONS["sal"], "init": COMMON_OPTIONS["init"], **{k: v[1] for k, v in DATA_OPTIONS.items()}}


def normalise(choices: dict) -> dict:
    """The choices that differ from the defaults (a reading equal to the defaults is {}), so that runs
    equal to another stage's (the area sweep's defaults, a preset's) have that stage's keys."""
    defaults = _defaults()
    return {k: v for k, v in choices.items() if k not in defaults or v != defaults[k]}


def reading_name(choices: dict) -> str:
    """'default' for the defaults, else the choices that differ, abbreviated and joined by '_'."""
    parts = [f"{ABBREV.get(k, k + '=')}{v:g}" if isinstance(v, float) else f"{ABBREV.get(k, k + '=')}{v}"
             for k, v in normalise(choices).items()]
    return "_".join(parts) or "default"


def grid_readings(grid: dict) -> dict[str, dict]:
    """Every combination of the grid's choices, named (`reading_name`), in grid order."""
    combos = [{}]
    for key, values in grid.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return {reading_name(c): normalise(c) for c in combos}


def one_at_a_time(base_name: str, base: dict, choices: dict) -> dict[str, dict]:
    """From `base`, each listed choice changed alone: '<base>+<choice>'."""
    out = {}
    for key, values in choices.items():
        for v in values:
            reading = normalise({**base, key: v})
            if reading != base:
                out[f"{base_name}+{reading_name({key: v})}"] = reading
    return out


def fit_ranking(table: pd.DataFrame) -> pd.DataFrame:
    """Per reading, its scores averaged over the fit datasets it ran on; closest to the paper first
    (mean |z|, then accuracy RMS)."""
    fit = table[table["set"] == "fit"]
    g = fit.groupby("reading", sort=False)
    out = g.agg(choices=("choices", "first"), phase=("phase", "first"), mean_abs_z=("mean_abs_z", "mean"),
                acc_rmse_pp=("acc_rmse_pp", "mean"), cells_within=("cells_within", "sum"), cells=("cells", "sum"),
                sal_above_bp=("sal_above_bp", "sum"), rises_with_k=("rises_with_k", "sum"), datasets=("dataset", "count"))
    return out.sort_values(["mean_abs_z", "acc_rmse_pp"]).reset_index()


def study_settings(cfg: dict, dataset: str) -> Table2Settings:
    """The study's grid on `dataset`: the area sweep's, with the study's seeds (each reading sets the options)."""
    return Table2Settings(**{**instance_fields(cfg, "protocol_study", dataset),
                             **Table2Settings.read(cfg, "area_sweep", dataset), "seeds": cfg["protocol_study"]["seeds"]})


def run_study(params_file="params.yaml", out_dir="results/quick/protocol_study", progress=None,
              results: str | Path | None = None, executor=None) -> pd.DataFrame:
    """The protocol study, in three phases; one row per (dataset, reading):

    1. fit set: the grid's readings (every combination) and the named extra readings;
    2. fit set: from the grid reading closest to the paper, each `one_at_a_time` choice alone;
    3. held-out set: the defaults and the `held_out_readings` readings closest to the paper on the
       fit set, run once each (reusing the area sweep's and preset sweep's stored runs where the
       configuration is the same: `results`, the profile's results folder; default: above `out_dir`).

    `executor`: the runs train as cluster jobs (pipeline/cluster.py); each phase submits every reading's
    jobs before it says they are pending (a phase starts once the one before is stored: it reads its table).
    """
    cfg = load_params(params_file)
    study = cfg["protocol_study"]
    sigma = cfg["report"]["sigma"]
    results = Path(results) if results is not None else Path(out_dir).parent
    rows, summaries, finals, every, loaded = [], [], [], {}, {}
    pending, submitted = [], executor.Pending if executor is not None else ()

    def run(dataset, name, reading, set_, phase):
        every[name] = reading
        if not applies(reading, dataset):
            return
        options = {**cfg["datasets"].get(dataset, {}), **split_reading(reading)[1]}
        key = (dataset, tuple(sorted(options.items())))
        if key not in loaded:  # readings that share a dataset's data options share its tensors: loaded once
            loaded[key] = load_dataset(dataset, root=cfg["data"]["root"], download=cfg["data"]["download"], **options)
        data = loaded[key]
        read_from = [p for stage in registry.STAGE["protocol_study"].reads
                     if (p := results / stage / dataset / "runs").is_dir()]
        s = study_settings(cfg, dataset)
        try:
            records = ex.run_all(reading_configs(reading, s), data, store=Path(out_dir) / dataset / "runs",
                                 read_from=read_from, device=cfg["device"], plan=s.batching(), progress=progress,
                                 desc=f"{dataset} {name}", executor=executor)
        except submitted as e:  # its jobs are queued: the phase's other readings' go too (end_of_phase)
            pending.append(e)
            return
        summary = ex.summarize(records)
        summaries.append(summary.assign(reading=name, set=set_))
        finals.append(final_metrics(records).assign(reading=name, set=set_))
        rows.append({"dataset": dataset, "reading": name, "set": set_, "phase": phase, "choices": _describe(reading),
                     **score(summary, sigma, ex.runs_frame(records))})

    def end_of_phase():
        if pending:
            raise pending[0]

    grid = grid_readings(study["grid"]) if study["grid"] else {}
    named = {**grid, **{n: r for n, r in study["readings"].items() if n not in grid}}
    for dataset in study["fit"]:
        for name, reading in named.items():
            run(dataset, name, reading, "fit", "grid" if name in grid else "named")
    end_of_phase()
    table = pd.DataFrame(rows)
    if study["one_at_a_time"] and len(table):
        ranked = fit_ranking(table)
        base = ranked[ranked["reading"].isin(list(grid) or list(named))].iloc[0]["reading"]
        for dataset in study["fit"]:
            for name, reading in one_at_a_time(base, named[base], study["one_at_a_time"]).items():
                run(dataset, name, reading, "fit", "one_at_a_time")
        end_of_phase()
        table = pd.DataFrame(rows)
    chosen = chosen_readings(table, study["held_out_readings"])
    for dataset in study["held_out"]:
        for name in chosen:
            run(dataset, name, every[name], "held_out", "test")
    end_of_phase()
    table = pd.DataFrame(rows)
    out = Path(out_dir)  # results/<profile>/protocol_study: the tables beside the runs
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "readings.csv", index=False)
    pd.concat(summaries, ignore_index=True).to_csv(out / "summary.csv", index=False)
    pd.concat(finals, ignore_index=True).to_csv(out / "runs.csv", index=False)
    (out / "conclusion.md").write_text(conclusion(table) + "\n")
    return table


def chosen_readings(table: pd.DataFrame, n: int) -> list[str]:
    """The defaults and the n readings closest to the paper on the fit set (the held-out test's readings)."""
    if table.empty:
        return ["default"]
    best = [r for r in fit_ranking(table)["reading"] if r != "default"][:n]
    return ["default", *best]


def final_metrics(records: list[dict]) -> pd.DataFrame:
    """One row per run: its configuration and final metrics (the loss-accuracy consistency figure)."""
    rows = []
    for r in records:
        if r is None or r.get("diverged"):
            continue
        c = r["config"]
        rows.append({"dataset": c["dataset"], "method": c["method"], "areas": c["areas"], "seed": c["seed"],
                     "val_accuracy_pct": 100 * r["final"]["val_accuracy"], "val_loss": r["final"]["val_loss"],
                     "train_loss": r["final"]["train_loss"]})
    return pd.DataFrame(rows)


def _describe(reading: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in reading.items()) or "the defaults of docs/method.md"


def _scores(r) -> str:
    return (f"mean |z| {r['mean_abs_z']:.1f}, accuracy off by {r['acc_rmse_pp']:.1f} pp RMS, "
            f"{int(r['cells_within'])}/{int(r['cells'])} cells within")


def conclusion(table: pd.DataFrame) -> str:
    """A plain-language conclusion, generated from the table: the fit set's ranking, then the
    held-out test of the chosen readings against the defaults, then the two claims."""
    if table.empty:
        return "- No reading run yet."
    if "set" not in table:  # a table of the first study (one set, no phases)
        table = table.assign(set="fit", phase="named")
    lines = []
    fit, held = table[table["set"] == "fit"], table[table["set"] == "held_out"]
    ranked = fit_ranking(table)
    fit_names = ", ".join(DISPLAY_NAMES[d] for d in dict.fromkeys(fit["dataset"]))
    best = ranked.iloc[0]
    default = ranked[ranked["reading"] == "default"]
    line = (f"Fit set ({fit_names}; {len(ranked)} readings): the reading closest to the paper is '{best['reading']}' "
            f"({best['choices']}): {_scores(best)}")
    if len(default):
        line += f"; the defaults: {_scores(default.iloc[0])}"
    lines.append(line + " (scores averaged over the fit datasets, cells summed).")
    for dataset, g in fit.groupby("dataset", sort=False):
        both = g[g["sal_above_bp"] & g["rises_with_k"]]["reading"].tolist()
        lines.append(f"{DISPLAY_NAMES[dataset]} (fit): readings showing both qualitative claims (SAL above BP, accuracy "
                     f"rising with K): " + (", ".join(both) if both else "none") + ".")
    for dataset, g in held.groupby("dataset", sort=False):
        parts = [f"'{r['reading']}' {_scores(r)}" + (" (SAL above BP" + (", rising with K)" if r["rises_with_k"] else ")")
                                                      if r["sal_above_bp"] else (" (rising with K)" if r["rises_with_k"] else ""))
                 for _, r in g.iterrows()]
        lines.append(f"{DISPLAY_NAMES[dataset]} (held out, run once): " + "; ".join(parts) + ".")
    for claim, col in (("SAL above BP", "sal_above_bp"), ("accuracy rising with K", "rises_with_k")):
        for name, part in (("fit", fit), ("held-out", held)):
            if part.empty:
                continue
            n, total = int(part[col].sum()), len(part)
            survive = "holds under every" if n == total else ("holds under no" if n == 0 else f"holds under {n} of {total}")
            lines.append(f"The claim '{claim}' {survive} (dataset, reading) pair{'s' if total > 1 else ''} of the {name} set.")
    return "\n".join(f"- {line}" for line in lines)


def consistency(runs: pd.DataFrame, window_pp: float = 3.0) -> pd.DataFrame:
    """For every paper cell of the datasets run: the validation losses that our runs of the same method
    (any K, any reading) reach at an accuracy within `window_pp` of the paper's, and whether the paper's
    loss lies in that range (0.05 of slack). A paper point outside every reading's range is evidence
    about the paper, not about one reading."""
    p = paper.paper_table2()
    rows = []
    for (dataset, method), g in runs.groupby(["dataset", "method"], sort=False):
        cells = p[(p["dataset"] == dataset) & (p["method"] == method)]
        for areas, cell in cells.groupby("areas"):
            cell = cell.set_index("metric")["mean"]
            if "val_accuracy_pct" not in cell or "val_loss" not in cell:
                continue
            acc, loss = float(cell["val_accuracy_pct"]), float(cell["val_loss"])
            near = g[(g["val_accuracy_pct"] - acc).abs() <= window_pp]
            lo, hi = (float(near["val_loss"].min()), float(near["val_loss"].max())) if len(near) else (math.nan, math.nan)
            rows.append({"dataset": dataset, "method": method, "areas": int(areas), "paper_accuracy_pct": acc,
                         "paper_val_loss": loss, "runs_near": len(near), "our_loss_min": lo, "our_loss_max": hi,
                         "paper_inside": bool(len(near)) and lo - 0.05 <= loss <= hi + 0.05})
    return pd.DataFrame(rows)


def _span(lo: float, hi: float) -> str:
    """'1.34-1.94', or one number where both ends round alike ('3.37', one run or runs alike)."""
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"


def consistency_conclusion(table: pd.DataFrame, window_pp: float = 3.0) -> str:
    if table.empty:
        return "- No run to compare."
    lines = []
    for dataset, g in table.groupby("dataset", sort=False):
        sal = g[g["method"] == "sal"]
        outside = sal[(sal["runs_near"] > 0) & ~sal["paper_inside"]]
        unreached = sal[sal["runs_near"] == 0]
        inside = len(sal) - len(outside) - len(unreached)
        line = (f"{DISPLAY_NAMES[dataset]}: of the paper's {len(sal)} SAL points, {inside} lie{'s' if inside == 1 else ''} "
                f"where our SAL runs fall (its loss within the range that our SAL runs, any K and any reading, reach within "
                f"{window_pp:g} pp of its accuracy)")
        if len(outside):
            line += ("; outside every reading's range: " + ", ".join(
                f"SAL-{r.areas} ({r.paper_accuracy_pct:.1f}% at loss {r.paper_val_loss:.2f}; ours {_span(r.our_loss_min, r.our_loss_max)})"
                for r in outside.itertuples()))
        if len(unreached):
            line += "; at an accuracy no run reaches: " + ", ".join(f"SAL-{r.areas} ({r.paper_accuracy_pct:.1f}%)" for r in unreached.itertuples())
        lines.append(line + ".")
    return "\n".join(f"- {line}" for line in lines)
