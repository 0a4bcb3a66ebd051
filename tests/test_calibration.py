"""Tests of salrepro.pipeline.calibration: BP under each input map, against the paper's BP row."""

import json

import pandas as pd
import pytest

from salrepro.pipeline import calibration
from salrepro.pipeline.config import load_params

TEST_PARAMS = "tests/notebooks/params-test.yaml"


def cell(dataset, norm, metric, z, verdict, ours=1.0):
    return {"dataset": dataset, "display": dataset.title(), "input_norm": norm, "metric": metric, "ours_mean": ours,
            "ours_std": 0.1, "seeds": 5, "diverged": 0, "paper_mean": 1.0, "paper_std": 0.1, "diff": 0.0, "z": z,
            "verdict": verdict}


def test_best_map_has_the_most_agreeing_cells_then_the_smallest_z():
    rows = []
    for ds in ("digits", "semeion"):
        for metric in calibration.METRIC_NAMES:
            rows += [cell(ds, "pm1", metric, 0.5, "within"), cell(ds, "unit", metric, -3.0, "outside"),
                     cell(ds, "standard", metric, 1.5, "within")]
    table = pd.DataFrame(rows)
    agree = calibration.agreement(table)
    assert agree.index.tolist() == ["pm1", "standard", "unit"]  # 6 within each for pm1 and standard: |z| decides
    assert agree.loc["unit", "within"] == 0 and agree.loc["pm1", "cells"] == 6
    text = calibration.conclusion(table)
    assert "Maps under which every BP cell agrees with the paper: `pm1`, `standard`; closest: `pm1` 6/6" in text
    assert "The protocol's default `pm1`: `pm1` 6/6 (mean |z| 0.5) -- it reproduces the paper's BP row." in text
    assert "Maps that miss: `unit` 0/6" in text
    table.loc[table["input_norm"] == "pm1", ["verdict", "z"]] = ["outside", 3.0]
    text = calibration.conclusion(table)
    assert "every BP cell agrees with the paper: `standard`; closest: `standard` 6/6" in text
    assert "it does NOT reproduce the paper's BP row" in text and "`pm1` 0/6" in text


def test_run_calibration_trains_bp_per_map_and_resumes(tmp_path):
    out = tmp_path / "calibration"
    table = calibration.run_calibration(TEST_PARAMS, out, progress=False)
    cfg = load_params(TEST_PARAMS)
    maps = cfg["calibration"]["input_norms"]
    assert sorted(set(table["input_norm"])) == sorted(maps) and set(table["metric"]) == set(calibration.METRIC_NAMES)
    assert (table["seeds"] == cfg["area_sweep"]["seeds"]).all() and table["paper_mean"].notna().all()
    runs = sorted((out / "digits" / "runs").glob("*.json"))
    assert len(runs) == len(maps) * cfg["area_sweep"]["seeds"]
    norms = {json.loads(p.read_text())["config"]["data_options"]["input_norm"] for p in runs}
    assert norms == set(maps)  # each run names its map
    stamp = {p: p.stat().st_mtime_ns for p in runs}
    again = calibration.run_calibration(TEST_PARAMS, out, progress=False)  # every run stored: nothing retrains
    assert {p: p.stat().st_mtime_ns for p in runs} == stamp
    pd.testing.assert_frame_equal(again, table)
    assert (out / "conclusion.md").read_text().startswith("- Calibration over 3 BP cells per map")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_map"] in maps and set(metrics["cells_within"]) == set(maps)
    shown = calibration.side_by_side(table)
    assert shown.index.names == ["dataset", "input map"] and len(shown) == len(maps)


def test_unit_and_pm1_give_different_bp_runs(tmp_path):
    table = calibration.run_calibration(TEST_PARAMS, tmp_path, progress=False)
    acc = table[table["metric"] == "val_accuracy_pct"].set_index("input_norm")["ours_mean"]
    assert acc["pm1"] != pytest.approx(acc["unit"])


def test_the_agreement_table_shows_mean_abs_z_rounded():
    rows = [cell("digits", norm, metric, z, "within") for norm, z in (("pm1", 0.357190123), ("unit", -8.256695))
            for metric in calibration.METRIC_NAMES]
    view = calibration.agreement_view(pd.DataFrame(rows))
    assert view["mean |z|"].tolist() == [0.36, 8.26] and "mean_abs_z" not in view
    assert "0.357" not in view.to_html()
    from pathlib import Path
    cells = json.loads(Path("notebooks/calibration.ipynb").read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells)
    assert "calibration.agreement_view(table)" in source and "calibration.agreement(table)\n" not in source
