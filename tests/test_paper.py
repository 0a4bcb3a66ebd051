"""The paper's numbers, cell verdicts and claims (paper.py)."""

import pandas as pd
import pytest

from salrepro import paper


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


def test_claims_need_significance():
    clear = summary([("digits", "bp", 1, 30.0, 1.0, 2.0), ("digits", "sal", 1, 35.0, 1.0, 2.0),
                     ("digits", "sal", 16, 60.0, 1.0, 1.5)])
    noisy = summary([("digits", "bp", 1, 30.0, 9.0, 2.0), ("digits", "sal", 1, 31.0, 9.0, 2.0),
                     ("digits", "sal", 16, 33.0, 9.0, 2.0)])
    assert paper.claim_sal_beats_bp(clear)["verdict"] == "supported"
    assert paper.claim_accuracy_rises_with_k(clear)["verdict"] == "supported"
    assert paper.claim_train_loss_falls_with_k(clear)["verdict"] == "supported"
    assert paper.claim_accuracy_rises_with_k(noisy)["verdict"] == "not supported"
    assert "inconclusive" in paper.claim_accuracy_rises_with_k(noisy)["evidence"]
    reverse = summary([("digits", "sal", 1, 60.0, 1.0, 1.5), ("digits", "sal", 16, 30.0, 1.0, 2.0)])
    assert "1 contradict it" in paper.claim_accuracy_rises_with_k(reverse)["evidence"]
    assert paper.claim_sal_beats_moe(clear)["verdict"] == "not testable"


def test_gap_and_depth_claims():
    rows = []
    for depth, bp, sal in [(2, 30, 31), (8, 30, 40), (32, 30, 55)]:
        rows += [dict(dataset="semeion", method="bp", areas=1, depth=depth, val_accuracy_pct_mean=bp, val_accuracy_pct_std=1.0, seeds=5),
                 dict(dataset="semeion", method="sal", areas=4, depth=depth, val_accuracy_pct_mean=sal, val_accuracy_pct_std=1.0, seeds=5)]
    s = pd.DataFrame(rows).astype({"val_accuracy_pct_mean": float})
    assert paper.claim_gap_grows_with(s, "depth")["verdict"] == "supported"
    assert paper.claim_trains_at_depth(s)["verdict"] == "supported"
    s.loc[(s["method"] == "sal") & (s["depth"] == 32), "val_accuracy_pct_mean"] = 5.0
    assert paper.claim_trains_at_depth(s)["verdict"] == "not supported"
    # above chance by less than 2 standard errors of the seed mean is not training (Semeion, defaults: 10.7 +- 4.6, 5 seeds)
    s.loc[(s["method"] == "sal") & (s["depth"] == 32), ["val_accuracy_pct_mean", "val_accuracy_pct_std"]] = [10.7, 4.6]
    assert paper.claim_trains_at_depth(s)["verdict"] == "not supported"
    s.loc[(s["method"] == "sal") & (s["depth"] == 32), "val_accuracy_pct_std"] = 0.5  # 10.7 - 2 x 0.22 > 10
    assert paper.claim_trains_at_depth(s)["verdict"] == "supported"


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
    assert "USPS (training split rebuilt): best SAL-16" in paper.claim_sal_beats_bp(s)["evidence"]
    assert set(paper.compare_area_sweep(s.drop(columns="display"))["display"]) == {"USPS"}  # no data options known


def test_summaries_name_the_rebuilt_usps_split_from_the_runs_data_options():
    from salrepro import experiments as ex
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


def test_claim_verdicts_are_pinned_to_two_standard_errors():
    """A difference is significant at SIG_SE = 2 standard errors of the seed means, not 1.9, not 3."""
    assert paper.SIG_SE == 2.0
    se = (2 * 1.0**2 / 5) ** 0.5  # both rows std 1, 5 seeds
    for z, expected in ((2.1, "supported"), (1.9, "inconclusive"), (-2.1, "contradicted")):
        s = summary([("digits", "bp", 1, 40.0, 1.0, 2.0), ("digits", "sal", 4, 40.0 + z * se, 1.0, 2.0)])
        c = paper.claim_sal_beats_bp(s)
        assert f"({expected})" in c["evidence"]
        assert c["verdict"] == ("supported" if expected == "supported" else "not supported")
