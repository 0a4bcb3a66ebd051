"""The protocol study (protocol.py)."""

import copy

import pandas as pd
import pytest

from salrepro.pipeline import protocol
from salrepro.pipeline.config import ParamsError, read_yaml, validate


def test_readings_split_into_model_and_data_choices():
    assert protocol.split_reading({"divisor": "sum", "digits_scale": "raw"}) == ({"divisor": "sum"}, {"digits_scale": "raw"})
    assert protocol.applies({"digits_scale": "raw"}, "digits") and not protocol.applies({"digits_scale": "raw"}, "semeion")
    assert protocol.applies({"divisor": "sum"}, "semeion")


def test_reading_configs_carry_their_choices():
    s = protocol.Table2Settings(stage="protocol_study", dataset="digits", profile="test", device="cpu", data_root=None,
                                download=False, data_options={}, methods=("bp", "sal-4"), epochs=2, batch_size=16, lr=0.1,
                                hidden=8, seeds=2)
    configs = protocol.reading_configs({"divisor": "sum", "init": "torch_default", "digits_scale": "raw"}, s)
    bp, sal = configs[0], configs[-1]
    assert dict(bp.options) == {"init": "torch_default"} and dict(sal.options) == {"divisor": "sum", "init": "torch_default"}
    assert dict(sal.data_options) == {"digits_scale": "raw", "input_norm": "pm1", "split": "official"}  # defaults named
    default = protocol.reading_configs({}, s)
    assert {c.key() for c in default}.isdisjoint({c.key() for c in configs})  # different readings never share runs


def _row(dataset, reading, set_, z, within, above, rises, phase="grid"):
    return {"dataset": dataset, "reading": reading, "set": set_, "phase": phase, "choices": reading, "mean_abs_z": z,
            "acc_rmse_pp": 10 * z, "cells_within": within, "cells": 18, "sal_above_bp": above, "rises_with_k": rises}


def test_conclusion_ranks_on_the_fit_set_and_reports_the_held_out_test_apart():
    table = pd.DataFrame([
        _row("digits", "default", "fit", 4.0, 2, False, False), _row("semeion", "default", "fit", 6.0, 0, False, False),
        _row("digits", "sum", "fit", 2.0, 9, True, False), _row("semeion", "sum", "fit", 2.0, 8, True, True),
        _row("mnist", "default", "held_out", 0.1, 1, False, False, "test"),  # would rank the defaults first if read
        _row("mnist", "sum", "held_out", 30.0, 12, True, True, "test"),
    ])
    ranked = protocol.fit_ranking(table)
    assert list(ranked["reading"]) == ["sum", "default"] and ranked.iloc[1]["mean_abs_z"] == 5.0  # held-out rows play no part
    assert ranked.iloc[0]["mean_abs_z"] == 2.0 and list(ranked["datasets"]) == [2, 2]
    text = protocol.conclusion(table)
    assert "Fit set (Digits, Semeion; 2 readings): the reading closest to the paper is 'sum'" in text
    assert "the defaults: mean |z| 5.0" in text
    assert "MNIST (held out, run once): 'default' mean |z| 0.1" in text and "'sum' mean |z| 30.0" in text
    assert "'accuracy rising with K' holds under 1 of 4 (dataset, reading) pairs of the fit set" in text
    assert "'SAL above BP' holds under 1 of 2 (dataset, reading) pairs of the held-out set" in text
    assert protocol.chosen_readings(table, 1) == ["default", "sum"]


def test_grid_readings_are_named_by_their_choices_and_equal_defaults_drop_out():
    grid = protocol.grid_readings({"divisor": ["batch", "area"], "feedback_scale": [1.0, 10.0]})
    assert grid == {"default": {}, "fb10": {"feedback_scale": 10.0}, "area": {"divisor": "area"},
                    "area_fb10": {"divisor": "area", "feedback_scale": 10.0}}
    more = protocol.one_at_a_time("area", {"divisor": "area"}, {"init": ["torch_default", "kaiming_normal"]})
    assert more == {"area+torch_default": {"divisor": "area", "init": "torch_default"}}  # kaiming_normal is the base itself


def test_consistency_places_the_paper_point_among_our_runs():
    runs = pd.DataFrame([{"dataset": "digits", "method": "sal", "areas": k, "seed": s, "val_accuracy_pct": acc,
                          "val_loss": loss, "train_loss": loss} for s, (k, acc, loss) in enumerate([(1, 35.0, 1.9), (16, 37.0, 1.8), (4, 60.0, 1.2)])])
    full = protocol.consistency(runs)
    table = full.set_index("areas")
    assert len(table) == 5  # SAL-1..16 of the paper, each placed among runs of any K
    row = table.loc[1]  # paper Digits SAL-1: 36.4% at validation loss 2.2x; our runs near it: 1.8-1.9
    assert row["runs_near"] == 2 and row["our_loss_min"] == 1.8 and row["our_loss_max"] == 1.9
    assert not row["paper_inside"]
    assert "outside every reading's range: SAL-1" in protocol.consistency_conclusion(full)


def test_bad_readings_are_rejected():
    cfg = read_yaml("conf/profile/cpu.yaml")
    bad = copy.deepcopy(cfg)
    bad["protocol_study"]["readings"]["x"] = {"divisr": "sum"}
    with pytest.raises(ParamsError, match="protocol_study.readings.x.divisr: not a choice"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["protocol_study"]["held_out"] = ["svhn"]
    with pytest.raises(ParamsError, match="protocol_study.held_out: 'svhn' is not listed under datasets"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["protocol_study"]["grid"]["feedback_dist"] = ["cauchy"]
    with pytest.raises(ParamsError, match="protocol_study.grid.feedback_dist: feedback_dist: must be one of"):
        validate(bad)


@pytest.mark.parametrize("rows", [1, 4, None])
def test_the_protocol_figure_s_legend_covers_no_tick_and_no_label(rows):
    """The legend sat at a fixed fraction of the axes below them: with few readings the axes are short and it
    covered the x ticks and label (the quick profile's figure). Drawn, its box lies below both."""
    from salrepro.pipeline import figures

    table = pd.read_csv("tests/notebooks/results/protocol_study/readings.csv")
    readings = list(dict.fromkeys(table["reading"]))[:rows]
    fig = figures.protocol_distances(table[table["reading"].isin(readings)])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = (fig.legends[0] if fig.legends else ax.get_legend()).get_window_extent(renderer)
    below = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    below.append(ax.xaxis.label.get_window_extent(renderer))
    assert below and all(legend.y1 <= b.y0 for b in below), (legend, below)
    assert legend.y0 >= 0  # inside the figure
