"""The paper's numbers, cell verdicts and claims (paper.py)."""

import pandas as pd
import pytest

from salrepro.pipeline import paper


def summary(rows):
    """rows: (dataset, method, areas, acc_mean, acc_std, loss_mean) -> a summarize()-like frame."""
    return pd.DataFrame([{
        "dataset": d, "method": m, "areas": k, "depth": 2, "hidden": 256, "label": paper.label(m, k), "seeds": 5,
        "val_accuracy_pct_mean": a, "val_accuracy_pct_std": s, "train_loss_mean": l, "train_loss_std": 0.01,
        "val_loss_mean": l, "val_loss_std": 0.01,
    } for d, m, k, a, s, l in rows])


def test_paper_table_is_complete():
    t = paper.paper_table2()
    assert len(t) == 10 * 6 * 3 and set(t["dataset"]) == set(paper.DISPLAY_NAMES)
    row = t[(t["dataset"] == "digits") & (t["label"] == "SAL-16") & (t["metric"] == "val_accuracy_pct")]
    assert float(row["mean"].iloc[0]) == 71.63


def test_compare_cell_verdicts_and_print_floor():
    assert paper.compare_cell(50.0, 1.0, 51.0, 1.0)["verdict"] == "within"
    assert paper.compare_cell(50.0, 1.0, 54.0, 1.0)["verdict"] == "outside"
    # the paper prints 0.00: its std is floored at half a printed digit, not taken as exactly zero
    assert paper.compare_cell(1.905, 0.0, 1.90, 0.00)["verdict"] == "within"
    assert paper.compare_cell(1.93, 0.0, 1.90, 0.00)["verdict"] == "outside"


def test_compare_area_sweep_marks_cells_not_run():
    s = summary([("digits", "bp", 1, 38.0, 5.0, 1.8), ("digits", "sal", 16, 70.0, 5.0, 1.6)])
    c = paper.compare_area_sweep(s)
    acc = c[c["metric"] == "val_accuracy_pct"].set_index("label")
    assert acc.loc["BP", "verdict"] == "within" and acc.loc["SAL-4", "verdict"] == "not run"
    assert acc.loc["SAL-16", "diff"] == pytest.approx(70.0 - 71.63)
    assert set(paper.side_by_side(c).index.get_level_values("method")) >= {"BP", "SAL-16", "SAL-4"}


def test_diverged_runs_are_reported_not_averaged():
    s = summary([("digits", "bp", 1, 38.0, 5.0, 1.8), ("digits", "sal", 16, 70.0, 5.0, 1.6)])
    s["diverged"] = [0, 2]
    s.loc[1, "seeds"] = 3
    c = paper.compare_area_sweep(s)
    v = c[(c["label"] == "SAL-16") & (c["metric"] == "val_accuracy_pct")]["verdict"].iloc[0]
    assert v.startswith("within") and "(2 of 5 runs diverged)" in v
    s.loc[1, ["seeds", "val_accuracy_pct_mean"]] = [0, float("nan")]
    c = paper.compare_area_sweep(s)
    assert c[(c["label"] == "SAL-16") & (c["metric"] == "val_accuracy_pct")]["verdict"].iloc[0] == "diverged (2 of 2 runs diverged)"


def test_results_on_the_rebuilt_usps_split_say_so_in_tables_and_claims():
    s = summary([("usps", "bp", 1, 81.0, 0.4, 0.8), ("usps", "sal", 1, 85.0, 0.4, 0.6),
                 ("usps", "sal", 16, 86.0, 0.4, 0.5)]).assign(display="USPS (training split rebuilt)")
    comp = paper.compare_area_sweep(s)
    assert set(comp["display"]) == {"USPS (training split rebuilt)"}
    assert set(paper.compare_area_sweep(s.drop(columns="display"))["display"]) == {"USPS"}  # no data options known


def test_summaries_name_the_rebuilt_usps_split_from_the_runs_data_options():
    from salrepro import runs as ex
    record = {"config": {"dataset": "usps", "method": "bp", "areas": 1, "depth": 2, "hidden": 8, "seed": 0, "lr": 0.1,
                         "epochs": 1, "batch_size": 16, "options": {},
                         "data_options": {"input_norm": "pm1", "usps_train": "rebuilt"}},
              "label": "BP", "final": {"val_accuracy": 0.8, "train_loss": 0.5, "val_loss": 0.6},
              "parameters": {"total": 1, "active": 1}, "seconds": 1.0, "diverged": None, "history": []}
    s = ex.summarize([record])
    assert s["display"].tolist() == ["USPS (training split rebuilt)"] and s["input_norm"].tolist() == ["pm1"]


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_cell_verdict_is_pinned_to_sigma(sigma):
    combined = (0.6**2 + 0.8**2) ** 0.5  # = 1.0
    assert paper.compare_cell(50.0 + 0.99 * sigma, 0.6, 50.0, 0.8, sigma)["verdict"] == "within"
    assert paper.compare_cell(50.0 + 1.01 * sigma * combined, 0.6, 50.0, 0.8, sigma)["verdict"] == "outside"


def test_a_z_score_divides_by_the_combined_std():
    """z = (ours - paper) / sqrt(std_ours^2 + std_paper^2): 10 / sqrt(3^2 + 4^2) = 2.0, not 10 / 4."""
    cell = paper.compare_cell(60.0, 3.0, 50.0, 4.0)
    assert cell["combined_std"] == pytest.approx(5.0) and cell["z"] == pytest.approx(2.0)
    assert paper.compare_cell(50.0, 0.0, 60.0, 4.0)["z"] == pytest.approx(-2.5)


def test_the_paper_own_numbers_as_runs_have_its_printed_mean_and_std():
    own, runs = paper.paper_summary(), paper.paper_runs()
    assert len(own) == 10 * 6 and set(own["seeds"]) == {5} and len(runs) == 10 * 6 * 5
    g = runs.groupby(["dataset", "method", "areas"])["val_accuracy_pct"]
    merged = own.set_index(["dataset", "method", "areas"]).join(g.mean().rename("m")).join(g.std().rename("s"))
    assert merged["m"].to_numpy() == pytest.approx(merged["val_accuracy_pct_mean"].to_numpy())
    assert merged["s"].to_numpy() == pytest.approx(merged["val_accuracy_pct_std"].clip(lower=paper.PRINT_FLOOR).to_numpy())


