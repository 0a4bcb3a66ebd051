"""The replication report: every number we produced beside the paper's, a
verdict per cell, a verdict per testable claim, and what we could not run.

    rep = build_report("results/quick", params)   # a Report: one profile's results, tables and claims
    write_report(rep, "results/quick/report")     # report.json, comparison.csv, summary.md
    update_readme("README.md", summary_markdown(rep), "replication-quick")   # the README's verdict block
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import calibration as calibration_stage
from . import claims as claims_table
from . import paper, stats
from .analysis import (accuracy_agreement, areas_versus_rule, cell_counts, depth_dips, input_maps, run_costs,
                       tuned_lrs, wrapped)
from . import registry
from .config import STAGES, read_yaml
from ..data import DATASETS, DISPLAY_NAMES, available, data_options, project_root
from ..data import data_root as resolve_data_root
from ..runs import record_input_norm, stored_records, write_json_atomic

def _empty() -> pd.DataFrame:
    return pd.DataFrame()


@dataclass
class Report:
    """One profile's report (`build_report`): what every page, table and README block is written from.
    A table the profile did not produce is empty."""

    comparison: pd.DataFrame = field(default_factory=_empty)  # Tables 2/3 under the defaults, cell by cell
    preset_comparison: pd.DataFrame = field(default_factory=_empty)  # ... under the named preset
    preset: str = "paper_fit"  # the preset_sweep's preset (models.PRESETS)
    claims: list = field(default_factory=list)  # claims.claim_cells: every claim under every column
    claims_table: pd.DataFrame = field(default_factory=_empty)  # claims.claims_table of `claims`
    bottom_line: str = ""  # claims.bottom_line: the report's first sentence
    tuned_choice: pd.DataFrame = field(default_factory=_empty)  # the tuned stage's lr choices
    fit_datasets: list = field(default_factory=list)  # the protocol study's fit set (the preset was chosen on)
    held_out: list = field(default_factory=list)  # ... and its held-out set (the preset tested once on)
    not_run: pd.DataFrame = field(default_factory=_empty)  # datasets of the paper not run, and why
    stages: dict = field(default_factory=dict)  # each sweep stage's summary (read_stage_outputs)
    runs: dict = field(default_factory=dict)  # each sweep stage's runs (read_stage_runs): what the claims test
    sigma: float = 2.0  # a cell agrees when |z| <= sigma
    profile: str | None = None
    protocol: pd.DataFrame = field(default_factory=_empty)  # the protocol study's readings
    protocol_runs: pd.DataFrame = field(default_factory=_empty)  # ... and their runs
    calibration: pd.DataFrame = field(default_factory=_empty)  # BP per dataset and input map
    times: pd.DataFrame = field(default_factory=_empty)  # each stage's training time (stage_times)


def read_stage_outputs(results="results", params: dict | None = None) -> dict[str, pd.DataFrame]:
    """The summary.csv of every stage instance under `results/`, concatenated
    per stage (the report's input); with `params`, only the datasets each
    stage lists and only results under the input map `params` gives each
    dataset (outputs of another profile, or left from another protocol, are left out)."""
    out = {}
    for stage in STAGES:
        files = sorted(Path(results, stage).glob("*/summary.csv"))
        frames = []
        for f in files:
            frame = pd.read_csv(f)
            if params is not None:
                ds = f.parent.name
                if ds not in params[stage]["datasets"]:
                    continue
                if "input_norm" in frame:
                    frame = frame[frame["input_norm"] == data_options(ds, params["datasets"].get(ds, {}))["input_norm"]]
            frames.append(frame)
        frames = [f for f in frames if len(f)]
        out[stage] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def read_stage_runs(results="results", params: dict | None = None) -> dict[str, pd.DataFrame]:
    """The runs.csv of every stage instance under `results/` (one row per run: the claims' input),
    concatenated per stage, limited as `read_stage_outputs` limits the summaries."""
    out = {}
    for stage in STAGES:
        frames = []
        for f in sorted(Path(results, stage).glob("*/runs.csv")):
            frame = pd.read_csv(f)
            ds = f.parent.name
            if params is not None:
                if ds not in params[stage]["datasets"]:
                    continue
                frame = frame[frame["input_norm"] == data_options(ds, params["datasets"].get(ds, {}))["input_norm"]]
            frames.append(frame)
        frames = [f for f in frames if len(f)]
        out[stage] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def stage_times(results="results", params: dict | None = None) -> pd.DataFrame:
    """Training wall time of every stage instance under `results/`: the seconds of
    its stored runs summed (a batch's time is divided among its models, so the
    sum is the batches' time, data loading and rendering not counted), with the
    machines the runs name. With `params`, only the datasets each stage lists and
    runs under the input map `params` gives each dataset (the calibration: all maps)."""
    stages = {s: (registry.datasets_of(s, params) if params else None) for s in registry.retrain_order()}
    rows = []
    for stage, datasets in stages.items():
        for runs in sorted(Path(results, stage).glob("*/runs")):
            ds = runs.parent.name
            if datasets is not None and ds not in datasets:
                continue
            records = stored_records(runs)
            if params is not None and stage != "calibration":
                norm = data_options(ds, params["datasets"].get(ds, {}))["input_norm"]
                records = [r for r in records if record_input_norm(r) == norm]
            if records:
                rows.append({"stage": stage, "dataset": ds, "runs": len(records),
                             "train_minutes": round(sum(r["seconds"] for r in records) / 60, 1),
                             "machine": "; ".join(sorted({r.get("device", "?").replace(" 1 threads)", " 1 thread)")
                                                          for r in records}))})
    return pd.DataFrame(rows, columns=["stage", "dataset", "runs", "train_minutes", "machine"])


def not_run_reasons(params: dict, ran: set, data_root=None) -> pd.DataFrame:
    """For each paper dataset we have no Table 2/3 numbers for: why (no machine's paths in the text)."""
    root = resolve_data_root(data_root if data_root is not None else params["data"]["root"])
    avail = available(root, params["datasets"])
    profile_file = project_root() / "conf" / "profile" / f"{params['profile']}.yaml"
    in_profile = (read_yaml(profile_file)["area_sweep"]["datasets"] if profile_file.exists()
                  else params["area_sweep"]["datasets"])
    rows = []
    for ds in DATASETS:
        if ds in ran:
            continue
        if ds in in_profile and ds not in params["area_sweep"]["datasets"]:  # rendered from a profile cut short
            why = f"in the '{params['profile']}' profile, not yet run under these parameters (a rerun in progress; see README)"
        elif ds not in params["area_sweep"]["datasets"]:
            why = f"not in the '{params['profile']}' profile (see conf/profile/; the paper profile runs all ten)"
            if not avail[ds]:
                why += f"; files not present here: {avail[ds]}"
        else:
            why = f"in the profile but not run: {avail[ds] or 'stage output missing'}"
        why = why.replace(str(root), "the data root")  # machine-independent: no absolute path of this machine
        why = why.replace(f"{project_root()}/", "")
        rows.append({"dataset": ds, "display": DISPLAY_NAMES[ds], "reason": why})
    return pd.DataFrame(rows, columns=["dataset", "display", "reason"])


def build_report(results="results/quick", params: dict | None = None, data_root=None) -> Report:
    stages = read_stage_outputs(results, params)
    sigma = params["report"]["sigma"] if params else 2.0
    sweep = stages["area_sweep"]
    comparison = paper.compare_area_sweep(sweep, sigma) if not sweep.empty else pd.DataFrame()
    ran = set(sweep["dataset"]) if not sweep.empty else set()
    preset = stages["preset_sweep"]
    preset_name = params["preset_sweep"]["preset"] if params else "paper_fit"
    preset_comparison = paper.compare_area_sweep(preset, sigma) if not preset.empty else pd.DataFrame()
    # every claim under each reading and learning-rate regime (claims.py): the report's headline
    runs = read_stage_runs(results, params)
    cells = claims_table.claim_cells(runs, params, preset_name, params["area_sweep"]["lr"] if params else 1e-4,
                                     fit=tuple(params["protocol_study"]["fit"]) if params else ())
    missing = not_run_reasons(params, ran, data_root) if params else pd.DataFrame()
    calibration = read_calibration(results, params)
    readings = Path(results, "protocol_study", "readings.csv")
    protocol = pd.read_csv(readings) if readings.exists() else pd.DataFrame()
    if params is not None and len(protocol):
        study = params["protocol_study"]
        protocol = protocol[protocol["dataset"].isin(study["fit"] + study["held_out"])]
    runs_file = Path(results, "protocol_study", "runs.csv")
    protocol_runs = pd.read_csv(runs_file) if runs_file.exists() and len(protocol) else pd.DataFrame()
    if len(protocol_runs):
        protocol_runs = protocol_runs[protocol_runs["dataset"].isin(set(protocol["dataset"]))]
    return Report(protocol_runs=protocol_runs, comparison=comparison, preset_comparison=preset_comparison,
                  preset=preset_name, claims=cells, claims_table=claims_table.claims_table(cells),
                  bottom_line=claims_table.bottom_line(cells), tuned_choice=read_tuned_choice(results, params),
                  fit_datasets=params["protocol_study"]["fit"] if params else [], not_run=missing, stages=stages, runs=runs,
                  held_out=params["protocol_study"]["held_out"] if params else [],
                  sigma=sigma, profile=params["profile"] if params else None, protocol=protocol,
                  calibration=calibration, times=stage_times(results, params))


def read_tuned_choice(results, params: dict | None = None) -> pd.DataFrame:
    """The tuned stage's lr choices (choice.csv of each dataset it ran on, those the profile lists)."""
    frames = [pd.read_csv(f) for f in sorted(Path(results, "tuned").glob("*/choice.csv"))
              if params is None or f.parent.name in params["tuned"]["datasets"]]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_calibration(results, params: dict | None = None) -> pd.DataFrame:
    """The calibration stage's comparison (BP per dataset and input map), limited to the profile's datasets and maps."""
    path = Path(results, "calibration", "comparison.csv")
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if params is not None and len(table):
        cal = params["calibration"]
        table = table[table["dataset"].isin(cal["datasets"]) & table["input_norm"].isin(cal["input_norms"])]
    return table.reset_index(drop=True)


def glossary(rep: Report) -> str:
    """One line for each term the verdicts use, before they use it."""
    from ..method.models import PRESETS

    preset = rep.preset
    choices = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in PRESETS.get(preset, {}).items())
    fit = ", ".join(paper.DISPLAY_NAMES[d] for d in rep.fit_datasets) or "a fit set"
    held = ", ".join(paper.DISPLAY_NAMES[d] for d in rep.held_out)
    return "\n".join(f"- {line}" for line in (
        f"`{calibration_stage.DEFAULT_MAP}`: inputs mapped to [-1, 1], the input map under which BP (the one method with "
        "no open choice) reproduces the paper's BP row; every result here uses it.",
        "*Reading*: one choice for each choice the paper's text leaves open (docs/method.md); `default` is the "
        "defaults of docs/method.md.",
        (f"`{preset}`: the reading closest to the paper's Tables 2/3 on {fit} ({choices}), chosen there by the "
         f"protocol study and tested once on {held}, datasets that played no part in choosing it." if held else
         f"`{preset}`: a named preset of the package ({choices}), the reading the cpu profile's protocol study found "
         "closest to the paper's Tables 2/3; this profile holds no dataset out, so it cannot test the preset on data "
         "that played no part in choosing it (the cpu profile does)."),
        "*Tuned lr*: each method (BP, MoE, SAL under each reading, at each K and depth) at the learning rate of "
        "its grid that does best by the mean of several runs that never read the paper's validation split, on "
        "which every number is reported: 3-fold cross-validation of the training split on datasets of fewer than "
        "10,000 training samples, else a 15% split carved out of the training split.",
        "mean |z|: the mean over Table 2/3 cells of |ours - paper| / combined standard deviation; a cell *agrees* "
        f"when |z| <= {rep.sigma:g}.",
    ))


AGGREGATION = (
    "Each cell: the verdict, the datasets (supporting / contradicting / inconclusive), and the pooled effect across "
    "datasets (random effects) with its 95% interval, in the units of the claim's effect. Per dataset, one effect "
    "with its 95% interval from every run: SAL-16 minus BP (K fixed in advance: the paper's best row; Welch's t); "
    "the slope per doubling of K (OLS on every run at every K); SAL's slope minus BP's per doubling of depth or "
    "width (the interaction, OLS on every run; depth on the residual nets, depth >= 4, only); SAL's worst depth "
    "minus its best (non-inferior when above -5 points); SAL minus MoE at equal K > 1. A dataset supports or "
    "contradicts a claim when its Holm-adjusted p (across the cell's datasets) is below 0.05, by the effect's "
    "sign; a trend that peaks inside its range and then falls significantly does not support \"grows\"; points "
    "with fewer than 3 finished runs are shown, never tested. Over datasets: *supported* when more than half "
    "support it (SAL beats BP: 85% once ten datasets run), *contradicted* when more than half contradict it, "
    "*mixed* when some do each, *inconclusive* otherwise; *limited evidence* when fewer than 3 datasets test it. "
    "*not run*: no runs of that reading and learning-rate regime. Benjamini-Hochberg q over the whole table, "
    "each dataset's effect and interval: `report/claims.json` and the report's forest plot.")


def sal_cells(comparison: pd.DataFrame, datasets=None) -> dict:
    """{"within", "cells"}: SAL's validation-accuracy cells (BP's are the calibration), on `datasets` if given."""
    c = comparison[(comparison["method"] == "sal") & (comparison["metric"] == "val_accuracy_pct")] if len(comparison) else comparison
    if datasets is not None and len(c):
        c = c[c["dataset"].isin(datasets)]
    return paper.agreement_count(c) if len(c) else {"within": 0, "cells": 0}


def in_short(rep: Report) -> str:
    """The top of the README: one plain sentence, the terms, the claims table, then the calibration and
    SAL's Table 2/3 cells (under the preset: in-sample and held out apart), counted as the blocks below."""
    text = rep.bottom_line + "\n\n" + glossary(rep) + "\n\n" + claims_table.table_markdown(rep.claims_table)
    text += "\n\n" + AGGREGATION + "\n\n"
    lines = []
    calib = rep.calibration
    if len(calib):
        agree = calibration_stage.agreement(calib)
        row = agree.loc[calibration_stage.DEFAULT_MAP] if calibration_stage.DEFAULT_MAP in agree.index else None
        lines.append("Calibration: BP agrees with the paper in "
                     + (f"{int(row['within'])}/{int(row['cells'])} cells under the protocol's map "
                        f"`{calibration_stage.DEFAULT_MAP}`" if row is not None else "no cell under the protocol's map")
                     + "; " + ", ".join(f"`{m}` {int(r['within'])}/{int(r['cells'])}" for m, r in agree.iterrows()
                                        if m != calibration_stage.DEFAULT_MAP) + ".")
    comp = rep.comparison
    if not comp.empty:
        c = sal_cells(comp)
        lines.append(f"Tables 2/3, SAL under the defaults: {c['within']} of {c['cells']} SAL accuracy cells agree with "
                     "the paper (BP's cells are the calibration's).")
    pre = rep.preset_comparison
    if pre is not None and not pre.empty:
        ran = list(dict.fromkeys(pre.loc[pre["seeds"] > 0, "dataset"]))
        fit = [d for d in ran if d in rep.fit_datasets]
        held = [d for d in ran if d not in fit]
        parts = []
        for name, ds in (("in-sample", fit), ("held out", held)):
            if ds:
                c = sal_cells(pre, ds)
                parts.append(f"{name} ({', '.join(paper.display_of(pre, d) for d in ds)}) {c['within']} of {c['cells']}")
        lines.append(f"Tables 2/3, SAL under `{rep.preset}`: SAL accuracy cells that agree, " + "; ".join(parts)
                     + (" (in-sample: the datasets the reading was chosen on)." if fit else "."))
    return text + "\n".join(f"- {line}" for line in lines)


def summary_markdown(rep: Report) -> str:
    """The verdict of the replication, generated from the data: in short, then the calibration,
    the Table 2/3 verdicts and the protocol study."""
    lines = []
    comp = rep.comparison
    calib = rep.calibration
    text = ("**In short.**\n\n" + in_short(rep) + "\n\n") if (len(calib) or not comp.empty) else ""
    if len(calib):
        text += ("Calibration (BP, the one method with no open choice, under each input map):\n\n"
                + calibration_stage.conclusion(calib, rep.sigma) + "\n\n")
    if comp.empty:
        return text + "No Table 2/3 results yet: run `dvc repro`."
    ds = ", ".join(paper.display_of(comp, d) for d in dict.fromkeys(comp.loc[comp["seeds"] > 0, "dataset"]))
    counts = cell_counts(comp)
    maps = input_maps(rep.stages["area_sweep"])
    lines.append(f"Profile `{rep.profile}`; Tables 2/3 run on: {ds}, inputs under `input_norm` "
                 f"{', '.join(f'`{m}`' for m in maps)}"
                 + (" (the first protocol, [0, 1]: not the calibrated map; see the calibration above)" if maps == ["unit"] else "")
                 + f". A cell agrees when |ours - paper| <= {rep.sigma:g} combined standard deviations.")
    names = paper.METRIC_NAMES
    sal_counts = cell_counts(comp[comp["method"] == "sal"])
    lines.append("SAL's cells that agree with the paper (BP's are the calibration's): " + "; ".join(
        f"{names[m]} {v['within']}/{v['cells']}" for m, v in sal_counts.items()) + ".")
    acc = comp[(comp["metric"] == "val_accuracy_pct") & (comp["seeds"] > 0)]
    for d, g in acc.groupby("dataset", sort=False):
        cells = ", ".join(f"{r.label} {r.ours_mean:.1f} ({r.paper_mean:.1f})" for r in g.itertuples() if pd.notna(r.paper_mean))
        lines.append(f"{paper.display_of(comp, d)} accuracy %, ours (paper): {cells}.")
    pre = rep.preset_comparison
    if len(pre):
        pacc = pre[(pre["metric"] == "val_accuracy_pct") & (pre["seeds"] > 0)]
        pc = sal_cells(pre)
        lines.append(f"Under the preset `{rep.preset}` (docs/method.md; SAL runs only, BP is unchanged): SAL's validation "
                     f"accuracy cells that agree {pc['within']}/{pc['cells']} (in-sample and held out apart: above).")
        for d, g in pacc.groupby("dataset", sort=False):
            cells = ", ".join(f"{r.label} {r.ours_mean:.1f}" for r in g.itertuples() if r.method == "sal")
            lines.append(f"{paper.display_of(pre, d)} accuracy % under `{rep.preset}`: {cells}.")
    lines.append("Claims: the table above; each cell's evidence, dataset by dataset, is in the report "
                 "(`report/claims.json`, and the report notebook's claims section).")
    choice = rep.tuned_choice
    if len(choice):
        lines.append("Learning rates chosen without reading the reported split (3-fold cross-validation of the training "
                     "split below 10,000 training samples, else a 15% tuning split carved out of it): "
                     + tuned_lrs(choice) + ".")
    dips = depth_dips(rep.stages.get("depth", pd.DataFrame()), rep.runs.get("depth", pd.DataFrame()))
    if dips:
        lines.append(dips)
    width = rep.stages.get("width", pd.DataFrame())
    if len(width):
        for ds, g in width.groupby("dataset", sort=False):
            costs = run_costs(g[g["hidden"] >= 2048])
            if costs:
                lines.append(f"Width's widest nets on {paper.display_of(width, ds)} (depth {int(g['depth'].iloc[0])}). {costs}")
    if len(rep.not_run):
        lines.append("Not run here: " + ", ".join(rep.not_run["display"]) + " (see the report for why).")
    text += "Verdicts:\n\n" + "\n".join(f"- {line}" for line in lines)
    if len(rep.protocol):
        from .protocol import conclusion

        text += "\n\nProtocol study (which reading of the paper's text reproduces it):\n\n" + conclusion(rep.protocol)
        runs = rep.protocol_runs
        if len(runs):
            from .protocol import consistency, consistency_conclusion

            text += ("\n\nLoss against accuracy, every run of every reading (a paper point where no run falls is "
                     "evidence about the paper):\n\n" + consistency_conclusion(consistency(runs)))
    moe = rep.stages.get("moe", pd.DataFrame())
    if len(moe) and "salbp" in set(moe["method"]):
        text += "\n\nBeyond the paper, the areas or the learning rule (SAL-BP: SAL's areas and routing trained by backpropagation):\n\n" + areas_versus_rule(moe)
    return text


def write_report(rep: Report, out_dir="results/quick/report") -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep.comparison.to_csv(out / "comparison.csv", index=False)
    rep.preset_comparison.to_csv(out / "preset_comparison.csv", index=False)
    rep.not_run.to_csv(out / "not_run.csv", index=False)
    rep.times.to_csv(out / "stage_times.csv", index=False)
    rep.claims_table.to_csv(out / "claims_table.csv", index=False)
    claims_table.forest_frame(rep.claims).to_csv(out / "claims_forest.csv", index=False)
    (out / "summary.md").write_text(summary_markdown(rep) + "\n")
    (out / "finding.md").write_text(finding_markdown(rep) + "\n")
    calib = rep.calibration
    counts, preset = cell_counts(rep.comparison), cell_counts(rep.preset_comparison)
    metrics = {**({"calibration_within": {m: v["within"] for m, v in calibration_stage.headline(calib)["cells_within"].items()},
                   "calibration_cells_per_map": int(len(calib[calib["z"].notna()]) // max(calib["input_norm"].nunique(), 1))}
                  if len(calib) else {}),
               "cells_within": {m: v["within"] for m, v in counts.items()},
               f"cells_within_preset_{rep.preset}": {m: v["within"] for m, v in preset.items()},
               "cells_per_metric": max((v["cells"] for v in counts.values()), default=0),
               "claims": {col: {c["id"]: c["verdict"] for c in rep.claims if c["column"] == col}
                          for col in dict.fromkeys(c["column"] for c in rep.claims)}}
    write_json_atomic(out / "report.json", metrics)  # every count and verdict, numbers and short words only
    write_json_atomic(out / "headline.json", headline(rep))  # a few numbers: what `dvc metrics show` prints
    write_json_atomic(out / "claims.json", rep.claims)  # each claim in words, with its evidence
    return metrics


def headline(rep: Report) -> dict:
    """A profile's results in a few numbers, one row of `dvc metrics show`: BP's calibration cells under pm1,
    SAL's agreeing accuracy cells under each reading, and per column of the claims table how many of the
    claims it could test are supported."""
    out = {}
    calib = rep.calibration
    if len(calib):
        row = calibration_stage.agreement(calib).loc[calibration_stage.DEFAULT_MAP]
        out["BP calibration"] = f"{int(row['within'])}/{int(row['cells'])}"
    for name, table in (("defaults", rep.comparison), (rep.preset, rep.preset_comparison)):
        if table is not None and len(table):
            c = sal_cells(table)
            out[f"SAL cells {name}"] = f"{c['within']}/{c['cells']}"
    for col in dict.fromkeys(c["column"] for c in rep.claims):
        tested = [c for c in rep.claims if c["column"] == col and c["verdict"] not in ("not run", "not testable")]
        if tested:
            out[f"claims {col}"] = f"{sum(c['verdict'] == 'supported' for c in tested)}/{len(tested)} supported"
    return out


def markers(name: str) -> tuple[str, str]:
    return (f"<!-- {name}:begin (generated; do not edit) -->", f"<!-- {name}:end -->")


def update_readme(readme: str | Path, body: str, block_name: str) -> bool:
    """Replace the README's block `block_name` (between its markers, e.g.
    replication-quick, one per profile) with `body`. False if no markers."""
    path = Path(readme)
    text = path.read_text()
    begin, end = markers(block_name)
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda _: block, text)
    if new != text:
        path.write_text(new)
    return True


# The generated blocks a profile's report writes, and the file each comes from: the finding (README.md's
# first screen) and the whole summary (docs/results.md).
BLOCKS = {"finding": "finding.md", "replication": "summary.md"}


def write_readme_blocks(readme: str | Path, results: str | Path) -> list[str]:
    """Copy a profile's generated blocks into README.md and docs/results.md beside it, wherever their
    markers are: `finding-<profile>` (the finding and the claims table) and `replication-<profile>` (the
    whole summary: calibration, verdicts, protocol study). The report stage alone calls this, so one
    stage writes these pages. Returns the blocks written, as 'page: block'."""
    results, readme = Path(results), Path(readme)
    written = []
    for page in (readme, readme.parent / "docs" / "results.md"):
        if not page.exists():
            continue
        for kind, name in BLOCKS.items():
            block, source = f"{kind}-{results.name}", results / "report" / name
            if source.exists() and update_readme(page, source.read_text(), block):
                written.append(f"{page.name}: {block}")
    return written


def finding_markdown(rep: Report) -> str:
    """The finding in a few plain sentences, each term defined before it is used, then the claims table
    with its legend: README.md's first screen. Generated from the claims, so it says whatever they say."""
    cells = {(c["id"], c["column"]): c for c in rep.claims}
    get = lambda cid, col: cells.get((cid, col), {"verdict": "not run"})  # noqa: E731
    say = lambda cid, col: _plain(get(cid, col))  # noqa: E731
    names = lambda ds: ", ".join(paper.DISPLAY_NAMES[d] for d in ds)  # noqa: E731
    terms = (f"*Terms.* BP: backpropagation, the paper's baseline. SAL-K: SAL with K areas. Readings of the paper's "
             f"open choices: the *defaults* (docs/method.md) and `{rep.preset}`, the reading whose Tables 2/3 come "
             f"closest to the paper's (a protocol study over 23 readings, on {names(rep.fit_datasets) or 'a fit set'}"
             + (f"; then tested on {names(rep.held_out)}, held out of choosing it). " if rep.held_out else
                "; no dataset held out in this profile). ")
             + "Learning rates: the paper's (1e-4 for every method) and *tuned* (each method's own best, chosen by "
               "cross-validation on the training split, never on the split reported). MoE: a mixture of experts with "
               "top-1 routing trained by backpropagation, the paper's other baseline. An effect reads: points of "
               "accuracy, [its 95% interval], pooled over datasets by a random-effects meta-analysis.")
    first = (f"At the paper's learning rate, SAL-16 against BP is **{say('sal_beats_bp', 'preset')}** under "
             f"`{rep.preset}`, and **{say('sal_beats_bp', 'defaults')}** under the defaults.")
    bp = _bp_accuracy(rep)
    if bp:
        first += (f" At that rate BP is far from trained: {bp[1]:.1f}% on average over {names(bp[0])}, against "
                  f"{bp[2]:.1f}% at its own learning rate.")
    trend = get("accuracy_rises_with_k", "preset_tuned")
    moves = {"supported": "rises", "contradicted": "falls"}.get(trend["verdict"], "shows no clear trend")
    tuned_on = list(dict.fromkeys(rep.tuned_choice["dataset"])) if len(rep.tuned_choice) else []
    second = (f"With every method at its own learning rate{f' (chosen so far on {names(tuned_on)})' if tuned_on else ''}, "
              f"SAL-16 against BP is "
              f"**{say('sal_beats_bp', 'preset_tuned')}** under `{rep.preset}`, and "
              f"**{say('sal_beats_bp', 'defaults_tuned')}** under the defaults; accuracy {moves} with K "
              f"({say('accuracy_rises_with_k', 'preset_tuned').replace(' points', ' points per doubling of K')}).")
    legend = ("The table: one row per claim of the paper, one column per reading and learning-rate regime. Each cell: "
              "the verdict; the datasets (supporting / contradicting / inconclusive; for "
              f"`{rep.preset}`, then the same for those held out of choosing it); the effect pooled over datasets (a "
              "random-effects meta-analysis) with its 95% interval, in the claim's units: accuracy points (SAL-16 - "
              "BP, SAL - MoE), points per doubling of K, depth or width (trends; a gap's growth), training loss per "
              "doubling of K, SAL's worst depth minus its best ('trains at every depth': -5 or above passes). "
              "*Limited evidence*: fewer than 3 datasets test it. How each claim is tested: docs/results.md; each "
              "dataset's effect and interval: the report's first figure.")
    return "\n\n".join([terms, first, second, legend, claims_table.table_markdown(rep.claims_table)])


def _plain(cell: dict) -> str:
    """A cell in words: 'supported on 5 of 5 datasets (3 of 3 held out), +7.3 points [+4.9, +9.7] pooled';
    'limited evidence: contradicted on 1 of 1 dataset, ...'; 'mixed: supported on 8, contradicted on 1,
    inconclusive on 1 of 10 datasets, ...' (the verdict's own kind first, then by count)."""
    if cell["verdict"] in ("not run", "not testable"):
        return cell["verdict"]
    c = cell["counts"]
    n = sum(c.values())
    kinds = sorted((k for k in ("supported", "contradicted", "inconclusive") if c.get(k)),
                   key=lambda k: (k != cell["verdict"], -c[k]))
    text = ("" if kinds and kinds[0] == cell["verdict"] else f"{cell['verdict']}: ")  # 'supported on 5 of 5', once
    text += ", ".join(f"{k} on {c[k]}" for k in kinds) + f" of {n} dataset{'s' if n != 1 else ''}"
    h = cell.get("held_out")
    if h and kinds:
        text += f" ({h.get(kinds[0], 0)} of {sum(h.values())} held out)"
    p = cell.get("pooled")
    if p:
        d = p.get("digits", 1)
        text += f", {p['estimate']:+.{d}f} points [{p['low']:+.{d}f}, {p['high']:+.{d}f}] pooled"
    return text


def _bp_accuracy(rep: Report) -> tuple[list[str], float, float] | None:
    """(datasets, BP's mean accuracy at the paper's lr, at its tuned lr), over the datasets both regimes ran."""
    a, t = rep.runs.get("area_sweep", pd.DataFrame()), rep.runs.get("tuned", pd.DataFrame())
    if a.empty or t.empty:
        return None
    a, t = a[a["method"] == "bp"], t[(t["method"] == "bp") & (t["depth"] == 2)]
    both = sorted(set(a["dataset"]) & set(t["dataset"]), key=DATASETS.index)
    if not both:
        return None
    mean = lambda f: f[f["dataset"].isin(both)].groupby("dataset")["val_accuracy_pct"].mean().mean()  # noqa: E731
    return both, float(mean(a)), float(mean(t))


