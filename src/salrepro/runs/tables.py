"""Result tables from run records: one row per run (`runs_frame`), per configuration over its seeds (`summarize`),
per epoch (`curves_frame`) and the areas' occupancy (`occupancy_frame`); and which runs were unstable."""

from __future__ import annotations

import json
import logging
import math

import pandas as pd

from ..data import DATA_OPTIONS, DATASETS, NUM_CLASSES, display_name
from ..method.models import reading_of
from .store import record_input_norm

log = logging.getLogger("salrepro")


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------
def unstable(record: dict) -> bool:
    """Did this run fail to train stably? Its final training loss is not finite (it diverged), is above
    ln(C) (worse than predicting the class frequencies of C balanced classes: it learned nothing, or lost
    it), or is more than twice the lowest training loss of its epochs (it blew up late). Such a run is
    a fact about its configuration, not noise: an lr with an unstable selection run has failed
    (pipeline/tuned.py), and a reported point with unstable runs is flagged, never silently averaged."""
    if record.get("diverged") is not None:
        return True
    losses = [h["train_loss"] for h in record.get("history") or []]
    final = (record.get("final") or {}).get("train_loss", math.nan)
    if not losses or not math.isfinite(final):
        return True
    classes = NUM_CLASSES.get(record["config"]["dataset"])
    return (classes is not None and final > math.log(classes)) or final > 2 * min(losses)


def runs_frame(records) -> pd.DataFrame:
    """One row per run: configuration and final metrics (`unstable`: see `unstable`)."""
    rows = []
    for r in records:
        c = r["config"]
        data_opts = c.get("data_options") or {}
        reading = reading_of(c["method"], c.get("options") or {})
        rows.append({
            "dataset": c["dataset"], "method": c["method"], "areas": c["areas"], "depth": c["depth"],
            "hidden": c["hidden"], "seed": c["seed"], "reading": reading,
            "label": r["label"] + ("" if reading == "default" else f" [{reading}]"),
            "input_norm": record_input_norm(r),
            "display": display_name(c["dataset"], data_opts) if c["dataset"] in DATASETS else c["dataset"],
            "options": json.dumps(c.get("options") or {}, sort_keys=True),
            "split": data_opts.get("split", DATA_OPTIONS["split"][1]),
            "lr": c["lr"], "epochs": c["epochs"],
            "batch_size": c["batch_size"], "val_accuracy_pct": 100 * r["final"]["val_accuracy"], "train_loss": r["final"]["train_loss"],
            "val_loss": r["final"]["val_loss"], "params_total": r["parameters"]["total"],
            "params_active": r["parameters"]["active"], "seconds": r["seconds"],
            "step_seconds": (r.get("resources") or {}).get("step_seconds"),
            "peak_memory_gb": (lambda b: b / 1e9 if b is not None else None)((r.get("resources") or {}).get("peak_memory_bytes")),
            "diverged": r.get("diverged") is not None, "unstable": unstable(r),
        })
    return pd.DataFrame(rows)


# What tells two configurations apart in a runs_frame: every setting of a run but its seed. A summary
# groups by all of them, so that a sweep over any setting (an lr, a batch size, an option, an input map)
# is never averaged across it as if its values were seeds.
CONFIG_COLUMNS = ("dataset", "method", "areas", "depth", "hidden", "reading", "options", "input_norm", "split", "lr",
                  "epochs", "batch_size")


def summarize(records, by=CONFIG_COLUMNS) -> pd.DataFrame:
    """Mean and std over seeds of the final-epoch metrics (std with ddof=1,
    as numpy/pandas report a sample standard deviation), one row per
    configuration (`by`: every setting but the seed, CONFIG_COLUMNS). Diverged
    runs are never averaged in: `seeds` counts the runs that finished,
    `diverged` the others."""
    df = runs_frame(records)
    metrics = ["val_accuracy_pct", "train_loss", "val_loss"]
    if df.empty:  # nothing ran (e.g. every lr of a selection failed): a summary with no rows
        return pd.DataFrame(columns=[*by, *(f"{m}_{s}" for m in metrics for s in ("mean", "std")), "seeds", "diverged"])
    g = df.groupby(list(by), sort=False)
    finished = df[~df["diverged"]].groupby(list(by), sort=False)
    out = finished[metrics].agg(["mean", "std"]).reindex(g.size().index)
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["seeds"] = finished.size().reindex(g.size().index).fillna(0).astype(int)
    out["diverged"] = g["diverged"].sum().astype(int)
    out["params_total"] = g["params_total"].first()
    out["step_seconds"] = g["step_seconds"].mean()  # records from before resources were recorded: NaN
    out["peak_memory_gb"] = g["peak_memory_gb"].max()
    out["params_active"] = g["params_active"].first()
    out["label"] = g["label"].first()
    for col in ("input_norm", "display"):
        if col not in by:
            out[col] = g[col].first()
    return out.reset_index()


def curves_frame(records) -> pd.DataFrame:
    """Per-epoch history of every run, long format (one row per run and epoch)."""
    rows = []
    for r in records:
        c = r["config"]
        for h in r["history"]:
            rows.append({
                "dataset": c["dataset"], "method": c["method"], "areas": c["areas"], "depth": c["depth"],
                "hidden": c["hidden"], "seed": c["seed"], "label": r["label"], "epoch": h["epoch"],
                "diverged": bool(h.get("diverged")),
                "train_loss": h["train_loss"], "val_loss": h["val_loss"], "val_accuracy_pct": 100 * h["val_accuracy"],
            })
    return pd.DataFrame(rows)


def occupancy_frame(records) -> pd.DataFrame:
    """Final-epoch area occupancy: validation samples per area, per routed layer."""
    rows = []
    for r in records:
        c = r["config"]
        if not r["history"]:
            continue
        for layer, counts in r["history"][-1]["occupancy"].items():
            for area, n in enumerate(counts):
                rows.append({"dataset": c["dataset"], "method": c["method"], "areas": c["areas"], "depth": c["depth"],
                             "hidden": c["hidden"], "seed": c["seed"], "layer": int(layer), "area": area, "samples": n})
    return pd.DataFrame(rows)
