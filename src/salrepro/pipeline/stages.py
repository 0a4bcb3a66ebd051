"""The pipeline's stages, one function each, called by the notebooks.

    out = run_stage("area_sweep", "digits", params_file="params.yaml", out_dir="results/quick/area_sweep/digits")

A stage instance reads its settings from params.yaml (config.py), loads its
dataset, runs its grid through the resumable run store (`out_dir/runs/`),
and writes small files that DVC tracks and the report reads:

    summary.csv      mean and std over seeds of the final-epoch metrics
    runs.csv         every run's final metrics (diverged, unstable): what the claims are tested on
    comparison.csv   (area_sweep) ours beside the paper's Tables 2 and 3
    curves/*.csv     per-epoch means over seeds, one file per curve (DVC plots)
    curves_all.csv   per-epoch values of every run (for the notebooks' figures)
    occupancy.csv    final-epoch validation samples per area (routed layers)
    metrics.json     the headline numbers (`dvc metrics show`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import runs as ex
from . import paper
from . import registry
from .config import load_params, stage_settings
from .settings import Instance
from ..runs import write_json_atomic


@dataclass
class StageOutput:
    settings: Instance  # config.stage_settings: the stage's settings class
    records: list
    runs: pd.DataFrame  # one row per run (write_runs): the claims' input
    summary: pd.DataFrame
    curves: pd.DataFrame
    occupancy: pd.DataFrame
    comparison: pd.DataFrame | None
    metrics: dict


TABLE2_STAGES = tuple(st.name for st in registry.STAGES if st.table2)  # Tables 2/3: the preset sweep under a preset


def stage_configs(stage: str, s) -> list[ex.RunConfig]:
    """The runs of one stage instance, in table order: its settings class's `configs` (the settings
    from config.stage_settings)."""
    if s.stage != stage:
        raise ValueError(f"settings of stage {s.stage!r} given for stage {stage!r}")
    return s.configs()


# A run's columns in runs.csv: what identifies it and its final metrics; never its seconds or machine,
# so that a retrain that reproduces the numbers rewrites the same file.
RUN_COLUMNS = ["dataset", "display", "method", "areas", "reading", "label", "depth", "hidden", "lr", "epochs",
               "batch_size", "seed", "input_norm", "val_accuracy_pct", "train_loss", "val_loss", "diverged", "unstable"]


def runs_table(records) -> pd.DataFrame:
    """Every run's final metrics, one row each, in RUN_COLUMNS (the claims read these)."""
    return ex.runs_frame(records).reindex(columns=RUN_COLUMNS)


def write_curves(curves: pd.DataFrame, stage: str, folder: Path) -> None:
    """One CSV per curve (mean over seeds per epoch), named by label and shape."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    keys = ["label", "depth", "hidden", "epoch"]
    mean = curves.groupby(keys, sort=False)[["val_accuracy_pct", "train_loss", "val_loss"]].mean().reset_index()
    axis = registry.STAGE[stage].axis
    for (lab, depth, hidden), g in mean.groupby(["label", "depth", "hidden"], sort=False):
        name = {"depth": f"{lab}-depth{depth}", "hidden": f"{lab}-width{hidden}"}.get(axis, lab)
        g[["epoch", "val_accuracy_pct", "train_loss", "val_loss"]].round(6).to_csv(folder / f"{name}.csv", index=False)


def headline_metrics(stage: str, summary: pd.DataFrame, comparison: pd.DataFrame | None = None) -> dict:
    """What `dvc metrics show` prints: mean final validation accuracy per method (depth and width:
    per method and shape) and, for Tables 2/3, how many accuracy cells agree with the paper.
    The full numbers (stds, losses) are in summary.csv."""
    acc: dict = {}
    axis = registry.STAGE[stage].axis
    for r in summary.itertuples():
        v = round(float(r.val_accuracy_pct_mean), 2)
        if axis == "depth":
            acc.setdefault(r.label, {})[f"depth_{r.depth}"] = v
        elif axis == "hidden":
            acc.setdefault(r.label, {})[f"width_{r.hidden}"] = v
        else:
            acc[r.label] = v
    out = {"val_accuracy_pct": acc}
    if comparison is not None:
        count = paper.agreement_count(comparison[comparison["metric"] == "val_accuracy_pct"])
        out["accuracy_cells_within"], out["accuracy_cells"] = count["within"], count["cells"]
    return out


def run_stage(stage: str, dataset: str, *, params_file="params.yaml", out_dir=None, progress=None,
              results=None, executor=None) -> StageOutput:
    """Run (or resume) one stage instance and write its outputs to `out_dir`.

    results: the profile's results folder, whose stages' stored runs this stage reuses where its Stage
    says so (moe: the area sweep's SAL runs; preset_sweep: its BP runs and the protocol study's runs of
    the preset); default: two levels above `out_dir`. executor: the runs not stored yet train as cluster
    jobs (pipeline/cluster.py; runs.run_all), which may raise before any output is written (jobs
    still queued or running, or failed)."""
    cfg = load_params(params_file)
    s = stage_settings(cfg, stage, dataset)
    out_dir = Path(out_dir if out_dir is not None else f"results/{cfg['profile']}/{stage}/{dataset}")
    data = s.load()
    configs = stage_configs(stage, s)
    if any(c.batch_size > data.x_train.shape[0] for c in configs):
        raise ValueError(f"{stage}.batch_size: {s.batch_size} exceeds the {data.x_train.shape[0]} training samples of {dataset}")
    results = Path(results) if results is not None else out_dir.parent.parent
    read_from = [results / other / dataset / "runs" for other in registry.STAGE[stage].reuses]  # a stored run of
    # the same configuration is reused, not retrained
    records = ex.run_all(configs, data, store=out_dir / "runs", read_from=read_from, device=s.device, plan=s.batching(),
                         progress=progress, desc=f"{stage} {dataset}", executor=executor)
    summary = ex.summarize(records)
    runs = runs_table(records)
    curves = ex.curves_frame(records)
    occupancy = ex.occupancy_frame(records)
    comparison = paper.compare_area_sweep(summary, cfg["report"]["sigma"]) if stage in TABLE2_STAGES else None
    metrics = headline_metrics(stage, summary, comparison)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out_dir / "summary.csv", index=False)
    runs.to_csv(out_dir / "runs.csv", index=False)
    curves.to_csv(out_dir / "curves_all.csv", index=False)
    occupancy.to_csv(out_dir / "occupancy.csv", index=False)
    write_curves(curves, stage, out_dir / "curves")
    if comparison is not None:
        comparison.to_csv(out_dir / "comparison.csv", index=False)
    write_json_atomic(out_dir / "metrics.json", metrics)
    return StageOutput(s, records, runs, summary, curves, occupancy, comparison, metrics)


def dataset_table(params_file="params.yaml", out_dir="results/quick/datasets") -> pd.DataFrame:
    """Table 1 from the loaders for all ten datasets (those present under the
    data root decoded into a temporary cache, so that this stage writes no
    cache file of its own), saved as table1.csv."""
    import tempfile

    from ..data import data_root
    from .paper import table1

    cfg = load_params(params_file)
    with tempfile.TemporaryDirectory() as tmp:
        table = table1(cfg["data"]["root"], cache_dir=tmp, options=cfg["datasets"])
    root = str(data_root(cfg["data"]["root"]))  # no path of the rendering machine in the committed table
    table["status"] = table["status"].str.replace(root, "the data root", regex=False)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out_dir) / "table1.csv", index=False)
    return table
