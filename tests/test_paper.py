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


def test_claims_need_significance():
    clear = summary([("digits", "bp", 1, 30.0, 1.0, 2.0), ("digits", "sal", 1, 35.0, 1.0, 2.0),
                     ("digits", "sal", 16, 60.0, 1.0, 1.5)])
    noisy = summary([("digits", "bp", 1, 30.0, 9.0, 2.0), ("digits", "sal", 1, 31.0, 9.0, 2.0),
                     ("digits", "sal", 16, 33.0, 9.0, 2.0)])
    assert paper.claim_sal_beats_bp(clear)["verdict"] == "supported"
    assert paper.claim_accuracy_rises_with_k(clear)["verdict"] == "supported"
    assert paper.claim_train_loss_falls_with_k(clear)["verdict"] == "supported"
    assert paper.claim_accuracy_rises_with_k(noisy)["verdict"] == "inconclusive"
    assert "inconclusive" in paper.claim_accuracy_rises_with_k(noisy)["evidence"]
    reverse = summary([("digits", "sal", 1, 60.0, 1.0, 1.5), ("digits", "sal", 16, 30.0, 1.0, 2.0)])
    assert "1 contradict it" in paper.claim_accuracy_rises_with_k(reverse)["evidence"]
    assert paper.claim_sal_beats_moe(clear)["verdict"] == "not testable"


def test_gap_and_depth_claims():
    rows = []
    for depth, bp, sal in [(2, 30, 31), (8, 30, 40), (32, 30, 55)]:
        rows += [dict(dataset="semeion", method="bp", num_areas=1, depth=depth, val_accuracy_pct_mean=bp, val_accuracy_pct_std=1.0, seeds=5),
                 dict(dataset="semeion", method="sal", num_areas=4, depth=depth, val_accuracy_pct_mean=sal, val_accuracy_pct_std=1.0, seeds=5)]
    s = pd.DataFrame(rows).astype({"val_accuracy_pct_mean": float})
    assert paper.claim_gap_grows_with(s, "depth")["verdict"] == "supported"
    assert paper.claim_trains_at_depth(s)["verdict"] == "supported"
    s.loc[(s["method"] == "sal") & (s["depth"] == 32), "val_accuracy_pct_mean"] = 5.0
    assert paper.claim_trains_at_depth(s)["verdict"] == "contradicted"
    # above chance by less than 2 standard errors of the seed mean is not training (Semeion, defaults: 10.7 +- 4.6, 5 seeds)
    s.loc[(s["method"] == "sal") & (s["depth"] == 32), ["val_accuracy_pct_mean", "val_accuracy_pct_std"]] = [10.7, 4.6]
    assert paper.claim_trains_at_depth(s)["verdict"] == "contradicted"
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
        assert c["verdict"] == expected  # one dataset: its verdict is the claim's


def test_a_z_score_divides_by_the_combined_std():
    """z = (ours - paper) / sqrt(std_ours^2 + std_paper^2): 10 / sqrt(3^2 + 4^2) = 2.0, not 10 / 4."""
    cell = paper.compare_cell(60.0, 3.0, 50.0, 4.0)
    assert cell["combined_std"] == pytest.approx(5.0) and cell["z"] == pytest.approx(2.0)
    assert paper.compare_cell(50.0, 0.0, 60.0, 4.0)["z"] == pytest.approx(-2.5)


@pytest.mark.parametrize("counts,need,expected", [
    ((3, 0, 2), 0.5, "supported"), ((2, 0, 3), 0.5, "inconclusive"), ((0, 3, 2), 0.5, "contradicted"),
    ((2, 2, 1), 0.5, "mixed"), ((9, 0, 1), 0.85, "supported"), ((8, 0, 2), 0.85, "inconclusive"),
    ((6, 3, 1), 0.85, "mixed"), ((0, 0, 0), 0.5, "not testable"), ((1, 1, 0), 0.5, "mixed"), ((0, 1, 1), 0.5, "inconclusive"),
])
def test_overall_verdict_from_per_dataset_counts(counts, need, expected):
    """Worked by hand: supported needs more than need x n supporters, contradicted more than half
    contradicting; both present and neither rule: mixed; otherwise inconclusive."""
    got = paper.overall_verdict(dict(zip(("supported", "contradicted", "inconclusive"), counts)), need)
    assert got == expected


def _curve(axis, values):
    """(value, bp accuracy, sal accuracy) -> a depth or width summary, std 1, 5 seeds."""
    rows = []
    for v, bp, sal in values:
        shape = {"depth": v, "hidden": 256} if axis == "depth" else {"depth": 64, "hidden": v}
        rows += [dict(dataset="semeion", method="bp", num_areas=1, **shape, val_accuracy_pct_mean=float(bp), val_accuracy_pct_std=1.0, seeds=5),
                 dict(dataset="semeion", method="sal", num_areas=4, **shape, val_accuracy_pct_mean=float(sal), val_accuracy_pct_std=1.0, seeds=5)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("axis", ["depth", "hidden"])
def test_gap_claims_compare_the_largest_value_with_the_smallest(axis):
    """The gap rises from the first to the second value and falls below its start at the last: comparing
    the smallest with the largest says contradicted (the second would say supported)."""
    s = _curve(axis, [(2, 50, 50), (8, 50, 70), (32, 50, 40)])
    c = paper.claim_gap_grows_with(s, axis)
    assert c["verdict"] == "contradicted" and c["counts"] == {"supported": 0, "contradicted": 1, "inconclusive": 0}
    s = _curve(axis, [(2, 50, 50), (8, 50, 40), (32, 50, 70)])
    assert paper.claim_gap_grows_with(s, axis)["verdict"] == "supported"
    # a gap that grows while SAL trails BP everywhere: the verdict line says both
    s = _curve(axis, [(2, 90, 20), (8, 90, 40), (32, 90, 60)])
    c = paper.claim_gap_grows_with(s, axis)
    assert c["verdict"] == "supported" and c["note"].startswith("SAL trails BP at every")


def test_sal_beats_moe_reads_the_direction_and_the_majority_over_k_above_one():
    def moe(rows):
        return summary([("digits", m, k, a, 0.5, 1.0) for m, k, a in rows])

    ahead = moe([("sal", 1, 30.0), ("moe", 1, 40.0), ("sal", 4, 60.0), ("moe", 4, 50.0), ("sal", 16, 61.0), ("moe", 16, 50.0)])
    c = paper.claim_sal_beats_moe(ahead)
    assert c["verdict"] == "supported"  # K = 1 (MoE-1 is BP) is outvoted by K > 1
    behind = moe([("sal", 1, 50.0), ("moe", 1, 40.0), ("sal", 4, 40.0), ("moe", 4, 50.0), ("sal", 16, 41.0), ("moe", 16, 50.0)])
    assert paper.claim_sal_beats_moe(behind)["verdict"] == "contradicted"
    split = moe([("sal", 4, 60.0), ("moe", 4, 50.0), ("sal", 16, 40.0), ("moe", 16, 50.0)])
    assert paper.claim_sal_beats_moe(split)["counts"]["inconclusive"] == 1  # a tie over K is no majority


def test_the_paper_own_numbers_pass_the_table_claims_by_our_rule():
    own = paper.paper_summary()
    assert len(own) == 10 * 6 and set(own["seeds"]) == {5}
    assert paper.claim_sal_beats_bp(own)["counts"]["supported"] == 9
    assert paper.claim_train_loss_falls_with_k(own)["verdict"] == "supported"


def test_a_lead_of_sal_with_one_area_says_so():
    lead_at_one = summary([("digits", "bp", 1, 30.0, 0.5, 2.0), ("digits", "sal", 1, 40.0, 0.5, 2.0),
                           ("digits", "sal", 16, 35.0, 0.5, 2.0)])
    c = paper.claim_sal_beats_bp(lead_at_one)
    assert c["verdict"] == "supported" and c["note"].endswith("its best is SAL-1 (one area: no routing, the feedback rule alone) on Digits")
    lead_at_16 = lead_at_one.assign(val_accuracy_pct_mean=[30.0, 35.0, 40.0])
    assert paper.claim_sal_beats_bp(lead_at_16)["note"] == ""
