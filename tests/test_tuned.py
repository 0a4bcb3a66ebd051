"""Every method at its own learning rate (tuned.py): the choice reads the tuning split only, never a failed lr."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from salrepro import runs as ex
from salrepro.pipeline import stages, tuned
from salrepro.pipeline.config import load_params, read_yaml, stage_settings
from salrepro.data import Dataset

ROOT = Path(__file__).resolve().parent.parent


def tiny_params(tmp_path, **tuned_overrides) -> Path:
    p = read_yaml(ROOT / "tests/notebooks/params-test.yaml")
    p["area_sweep"].update(epochs=3, seeds=2)  # enough epochs for a training loss below ln(10): trained, not unstable
    p["tuned"].update(methods=["bp", "sal-4"], lrs=[0.03, 0.1], **tuned_overrides)
    p["tuned"]["depth"]["datasets"] = []
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def test_selection_never_reads_the_reported_split(tmp_path, monkeypatch):
    """The official validation split replaced by noise: the selection runs, their accuracies and the lrs
    chosen are exactly those of the clean data. (Were the choice made on the official split, they
    would move.)"""
    params = tiny_params(tmp_path)
    clean = tuned.run_tuned("digits", params_file=params, out_dir=tmp_path / "clean" / "tuned" / "digits")
    from salrepro.pipeline import settings

    real = settings.load_dataset  # every stage loads its data through settings.Instance.load

    def poisoned(name, split="official", **kw):
        d = real(name, split=split, **kw)
        if split != "official":
            return d
        gen = torch.Generator().manual_seed(1)
        return Dataset(d.name, d.x_train, d.y_train, torch.randn(d.x_val.shape, generator=gen),
                       torch.randint(0, 10, d.y_val.shape, generator=gen), d.meta)

    monkeypatch.setattr(settings, "load_dataset", poisoned)
    dirty = tuned.run_tuned("digits", params_file=params, out_dir=tmp_path / "dirty" / "tuned" / "digits")
    cols = ["label", "lr", "seed", "val_accuracy_pct", "val_loss"]
    pd.testing.assert_frame_equal(clean.selection[cols], dirty.selection[cols])
    pd.testing.assert_frame_equal(clean.choice, dirty.choice)
    # ... while the reported numbers, on the official split, do move: the poison reached only them
    assert not clean.summary["val_accuracy_pct_mean"].equals(dirty.summary["val_accuracy_pct_mean"])
    assert set(clean.selection["lr"]) == {0.03, 0.1} and len(clean.choice) == 3  # BP, SAL-4, SAL-4 [paper_fit]


def test_small_datasets_choose_by_cross_validation_large_ones_on_the_tuning_split(tmp_path):
    """Digits (1,437 training samples) scores each lr by 3 folds, fold i with seed i; with cv_below at 0 (as
    MNIST and Fashion-MNIST, 60,000) by `select_seeds` runs on the tuning split."""
    s = stage_settings(load_params(tiny_params(tmp_path)), "tuned", "digits")
    configs = tuned.selection_configs(s)
    assert s.configs() == configs == stages.stage_configs("tuned", s)  # its configs(), as every sweep's
    assert {(dict(c.data_options)["split"], c.seed) for c in configs} == {("cv3-0", 0), ("cv3-1", 1), ("cv3-2", 2)}
    assert len(configs) == 2 * 3 * 3  # 2 lrs x 3 folds x (BP, SAL-4, SAL-4 [paper_fit])
    big = stage_settings(load_params(tiny_params(tmp_path, cv_below=0, select_seeds=2)), "tuned", "digits")
    assert {(dict(c.data_options)["split"], c.seed) for c in tuned.selection_configs(big)} == {("tuning", 0), ("tuning", 1)}


def test_selection_runs_train_off_the_official_split_and_the_report_on_it(tmp_path):
    params = tiny_params(tmp_path)
    s = stage_settings(load_params(params), "tuned", "digits")
    assert {dict(c.data_options)["split"] for c in tuned.selection_configs(s)} == {"cv3-0", "cv3-1", "cv3-2"}
    out = tuned.run_tuned("digits", params_file=params, out_dir=tmp_path / "tuned" / "digits")
    finals = tuned.final_configs(s, out.choice)
    assert {dict(c.data_options)["split"] for c in finals} == {"official"} and len(finals) == 3 * 2
    chosen = {(r.method, r.reading): r.lr for r in out.choice.itertuples()}
    assert {(c.method, tuned.reading_of(c.method, dict(c.options))): c.lr for c in finals} == chosen


def selection_frame(rows):
    """rows: (lr, seed, accuracy, diverged[, unstable]) of one configuration -> a runs_frame-like selection
    (a diverged run is unstable too)."""
    return pd.DataFrame([{"dataset": "digits", "method": "bp", "areas": 1, "reading": "default", "depth": 2,
                          "hidden": 256, "label": "BP", "lr": r[0], "seed": r[1],
                          "val_accuracy_pct": math.nan if r[3] else r[2], "diverged": r[3],
                          "unstable": r[3] or (len(r) > 4 and r[4])} for r in rows])


def test_a_diverged_lr_is_never_chosen():
    # 0.03 has the best mean of its finished runs, but one of its runs diverged: it failed
    sel = selection_frame([(0.01, 0, 80.0, False), (0.01, 1, 82.0, False), (0.03, 0, 95.0, False), (0.03, 1, 0.0, True),
                           (0.001, 0, 60.0, False), (0.001, 1, 61.0, False)])
    choice = tuned.choose_lr(sel).iloc[0]
    assert choice["lr"] == 0.01 and choice["tuning_accuracy_pct"] == 81.0 and choice["failed_lrs"] == "0.03"
    assert not choice["at_grid_edge"]  # 0.01 lies inside the grid 0.001..0.03
    assert math.isnan(choice["acc@0.03"]) and choice["acc@0.001"] == 60.5
    every = tuned.choose_lr(selection_frame([(0.01, 0, 0.0, True), (0.03, 0, 0.0, True)])).iloc[0]
    assert math.isnan(every["lr"]) and every["failed_lrs"] == "0.01 0.03"


def test_an_unstable_lr_is_never_chosen():
    """0.1 scores best, but one of its runs ended unstable (finite, but its loss blew up): it failed."""
    sel = selection_frame([(0.1, 0, 97.0, False, True), (0.1, 1, 96.0, False), (0.1, 2, 96.5, False),
                           (0.03, 0, 90.0, False), (0.03, 1, 91.0, False), (0.03, 2, 92.0, False),
                           (0.01, 0, 85.0, False), (0.01, 1, 86.0, False), (0.01, 2, 84.0, False)])
    choice = tuned.choose_lr(sel).iloc[0]
    assert choice["lr"] == 0.03 and choice["failed_lrs"] == "0.1" and math.isnan(choice["acc@0.1"])
    assert not choice["at_grid_edge"]  # 0.1 was tried and failed: 0.03 is not the grid's edge


def test_near_ties_within_one_standard_error_are_listed():
    sel = selection_frame([(0.03, 0, 90.0, False), (0.03, 1, 92.0, False), (0.03, 2, 94.0, False),  # mean 92, se 1.15
                           (0.01, 0, 91.0, False), (0.01, 1, 91.0, False), (0.01, 2, 91.0, False),  # 91: within
                           (0.1, 0, 89.0, False), (0.1, 1, 91.0, False), (0.1, 2, 90.0, False)])  # 90: not
    choice = tuned.choose_lr(sel).iloc[0]
    assert choice["lr"] == 0.03 and choice["se"] == pytest.approx(2 / math.sqrt(3)) and choice["near_ties"] == "0.01"
    one = tuned.choose_lr(selection_frame([(0.03, 0, 90.0, False), (0.01, 0, 89.5, False), (0.1, 0, 80.0, False)]),
                          held={"digits": 400}).iloc[0]
    assert one["se"] == pytest.approx(100 * math.sqrt(0.9 * 0.1 / 400)) and one["near_ties"] == "0.01"  # binomial: 1.5


def test_ties_go_to_the_smaller_lr():
    choice = tuned.choose_lr(selection_frame([(0.03, 0, 90.0, False), (0.01, 0, 90.0, False), (0.001, 0, 50.0, False)]))
    assert choice["lr"].iloc[0] == 0.01
    edge = tuned.choose_lr(selection_frame([(0.03, 0, 95.0, False), (0.01, 0, 90.0, False)]))
    assert edge["lr"].iloc[0] == 0.03 and edge["at_grid_edge"].iloc[0]


def test_a_configuration_whose_every_lr_failed_is_not_reported(tmp_path):
    s = stage_settings(load_params(tiny_params(tmp_path)), "tuned", "digits")
    choice = tuned.choose_lr(ex.runs_frame([]).reindex(columns=tuned.SPEC_KEYS + ["label", "lr", "val_accuracy_pct", "diverged"]))
    assert choice.empty and tuned.final_configs(s, pd.DataFrame(columns=tuned.SPEC_KEYS + ["lr"])) == []
    row = {"dataset": "digits", "method": "bp", "areas": 1, "reading": "default", "depth": 2, "hidden": 32, "lr": math.nan}
    assert tuned.final_configs(s, pd.DataFrame([row])) == []


def test_chosen_runs_at_the_paper_lr_are_the_other_stages_runs(tmp_path):
    """Where the lr chosen is the paper's, the reported configuration is the area sweep's (preset sweep's,
    moe's) very run: one key, so its stored record is reused, not retrained."""
    from salrepro.pipeline import stages

    cfg = load_params(ROOT / "params.yaml")
    s = stage_settings(cfg, "tuned", "digits")
    selection = ex.runs_frame([])  # no selection needed: choose the paper's lr for every configuration
    keys = tuned.base_configs(s, lr=s.lr, split="official")
    choice = pd.DataFrame([{"dataset": c.dataset, "method": c.method, "areas": c.num_areas, "depth": c.depth, "hidden": c.hidden,
                            "reading": tuned.reading_of(c.method, dict(c.options)), "lr": s.lr} for c in keys])
    finals = {c.key() for c in tuned.final_configs(s, choice)}
    assert len(finals) == len(keys) and {c.depth for c in keys} == set(cfg["depth"]["depths"])
    others = {c.key() for st in ("area_sweep", "preset_sweep", "moe", "depth")
              for c in stages.stage_configs(st, stage_settings(cfg, st, "digits"))}
    shallow = {c.key() for c in tuned.final_configs(s, choice) if c.depth == 2}
    assert shallow <= others and finals <= others and len(selection) == 0


def test_the_depth_nets_run_under_every_reading_listed_with_bp_shared(tmp_path):
    """tuned.depth.readings [default, paper_fit]: SAL-4's depth nets under both readings, BP's once."""
    p = read_yaml(tiny_params(tmp_path))
    p["tuned"]["depth"].update(datasets=["digits"], readings=["default", "paper_fit"])
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(p))
    s = stage_settings(load_params(path), "tuned", "digits")
    deep = [c for c in tuned.base_configs(s, lr=0.01, split="official") if c.depth > 2]
    readings = {(c.method, tuned.reading_of(c.method, dict(c.options))) for c in deep}
    assert readings == {("bp", "default"), ("sal", "default"), ("sal", "paper_fit")}
    assert len(deep) == len(set(deep)) == 3 * len([d for d in s.depth.depths if d > 2]) * s.depth.seeds
