"""The claims and the claims table (claims.py), on constructed runs whose answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from salrepro.pipeline import claims, paper

DATASETS = ("digits", "semeion", "usps")
PARAMS = {"area_sweep": {"hidden": 256}, "depth": {"hidden": 256, "depths": [2, 8, 32]},
          "tuned": {"depth": {"datasets": ["semeion"], "readings": ["paper_fit"], "methods": ["bp", "sal-4"]}}}


def runs(ds, method, k, acc, *, std=0.5, n=5, depth=2, hidden=256, reading="default", loss=None, lr=1e-4,
         diverged=0, unstable=0):
    """n runs of one configuration whose accuracies have exactly mean `acc` and sample std `std` (the
    tests depend on nothing else); `diverged` more runs with no final metrics."""
    z = np.arange(n) - (n - 1) / 2
    z = z / z.std(ddof=1) if n > 1 else z
    loss = (3.0 - acc / 50) if loss is None else loss  # higher accuracy, lower loss unless told
    base = {"dataset": ds, "display": paper.DISPLAY_NAMES[ds], "method": method, "areas": k, "depth": depth,
            "hidden": hidden, "reading": reading, "label": paper.label(method, k), "lr": lr, "val_loss": loss}
    rows = [{**base, "seed": i, "val_accuracy_pct": acc + std * zi, "train_loss": loss + 0.01 * zi,
             "diverged": False, "unstable": i < unstable} for i, zi in enumerate(z)]
    rows += [{**base, "seed": n + j, "val_accuracy_pct": np.nan, "train_loss": np.nan, "diverged": True,
              "unstable": True} for j in range(diverged)]
    return rows


def frame(rows):
    return pd.DataFrame(rows)


def table2(bp, sal, *, reading="default", std=0.5, datasets=DATASETS, moe=None):
    """BP and SAL at K -> acc (a dict), on each dataset."""
    rows = []
    for ds in datasets:
        rows += runs(ds, "bp", 1, bp, std=std)
        for k, a in sal.items():
            rows += runs(ds, "sal", k, a, reading=reading, std=std)
        for k, a in (moe or {}).items():
            rows += runs(ds, "moe", k, a, std=std)
    return rows


def curve(axis, points, *, reading="default", ds="semeion", bp=True, n=5, std=0.5):
    """points: (level, bp acc, sal acc)."""
    rows = []
    for v, b, s in points:
        shape = {"depth": v, "hidden": 256} if axis == "depth" else {"depth": 64, "hidden": v}
        if bp:
            rows += runs(ds, "bp", 1, b, n=n, std=std, **shape)
        rows += runs(ds, "sal", 4, s, reading=reading, n=n, std=std, **shape)
    return rows


def verdict(claim_id, rows):
    return claims.judge(claims.CLAIM[claim_id], frame(rows))


# ---------------------------------------------------------------- the per-dataset rules
def test_sal_beats_bp_compares_sal16_fixed_in_advance_not_the_best_k():
    """SAL-1 leads BP, SAL-16 trails it: the claim (SAL-16 vs BP) is contradicted, whatever SAL-1 does."""
    c = verdict("sal_beats_bp", table2(50, {1: 60, 16: 40}))
    assert c["verdict"] == "contradicted" and c["counts"] == {"supported": 0, "contradicted": 3, "inconclusive": 0}
    assert "SAL-1 60.0 (5)" in c["evidence"]  # shown beside it, descriptive
    assert verdict("sal_beats_bp", table2(50, {1: 40, 16: 60}))["verdict"] == "supported"


def test_a_datasets_interval_is_welchs_from_scipy_and_holm_decides():
    rows = table2(50, {16: 52}, std=2.0)  # +2 points under a std of 2 with 5 runs: p about 0.15 each
    c = verdict("sal_beats_bp", rows)
    f = c["findings"][0]
    sal = [r["val_accuracy_pct"] for r in rows if r["dataset"] == "digits" and r["method"] == "sal"]
    bp = [r["val_accuracy_pct"] for r in rows if r["dataset"] == "digits" and r["method"] == "bp"]
    r = sps.ttest_ind(sal, bp, equal_var=False)
    assert (f.effect.low, f.effect.high, f.effect.p) == pytest.approx((*r.confidence_interval(0.95), r.pvalue))
    ps = [g.effect.p for g in c["findings"]]
    assert [g.p_holm for g in c["findings"]] == pytest.approx(list(multipletests(ps, method="holm")[1]))
    assert c["verdict"] == "inconclusive"  # z = 2 would have called it, Welch's t does not


def test_holm_can_turn_a_raw_significance_into_inconclusive():
    """Three datasets each at raw p just under 0.05: Holm's smallest adjusted p is 3 x that."""
    rows = []
    for ds in DATASETS:
        rows += runs(ds, "bp", 1, 50.0, std=1.0) + runs(ds, "sal", 16, 51.48, std=1.0)
    c = verdict("sal_beats_bp", rows)
    assert all(0.03 < f.effect.p < 0.05 for f in c["findings"])
    assert c["verdict"] == "inconclusive"


def test_fewer_than_three_datasets_is_limited_evidence():
    c = verdict("sal_beats_bp", table2(50, {16: 70}, datasets=("digits", "semeion")))
    assert c["verdict"] == "limited evidence" and c["counts"]["supported"] == 2
    assert claims.verdict_text(c).startswith("limited evidence (2 datasets) (2/0/0)")


def test_a_curve_that_peaks_in_the_middle_is_not_grows():
    """Semeion's width lead under paper_fit: -3.2, +2.7, +8.6, +7.8, +4.1 points (peak at 1024): its slope over
    the range is positive, but the lead falls significantly after the peak."""
    gaps = {256: -3.2, 512: 2.7, 1024: 8.6, 2048: 7.8, 4096: 4.1}
    rows = curve("hidden", [(w, 70.0, 70.0 + g) for w, g in gaps.items()], n=5, std=0.5)
    c = verdict("gap_grows_with_width", rows)
    f = c["findings"][0]
    assert f.effect.estimate > 0 and f.effect.p < 0.05  # the endpoints alone would call it "grows"
    assert "peaks at width 1024, then reverses" in f.shape and f.verdict == "inconclusive"
    rising = curve("hidden", [(w, 70.0, 70.0 + 3 * i) for i, w in enumerate(gaps)])
    g = verdict("gap_grows_with_width", rising)["findings"][0]
    assert g.verdict == "supported" and g.shape == ""


def test_a_flat_top_is_named_and_still_rises():
    """Accuracy rises to K = 4 and stays there within noise: named, and the rise is supported."""
    rows = table2(50, {1: 50, 2: 60, 4: 70, 8: 69.8, 16: 69.9})
    c = verdict("accuracy_rises_with_k", rows)
    assert all(f.shape == "peaks at K 4, then flat" and f.verdict == "supported" for f in c["findings"])


def test_a_point_with_fewer_than_three_runs_is_not_tested():
    """Width 4096 with one seed: drawn and listed, never in the regression."""
    pts = [(256, 70, 60), (512, 70, 62), (1024, 70, 64)]
    rows = curve("hidden", pts) + curve("hidden", [(4096, 80.0, 40.0)], n=1)
    f = verdict("gap_grows_with_width", rows)["findings"][0]
    assert "width 4096: -40.0 (SAL 1, BP 1 runs) [descriptive]" in f.text
    alone = verdict("gap_grows_with_width", curve("hidden", pts))["findings"][0]
    assert f.effect == alone.effect  # the one-seed point changed nothing
    few = verdict("gap_grows_with_width", curve("hidden", pts[:1]) + curve("hidden", [(4096, 80.0, 40.0)], n=2))
    assert few["findings"][0].effect is None and few["verdict"] == "not testable"


def test_depth_claims_read_the_residual_nets_only():
    """Depth 2 (the shallow ReLU net) is shown apart: a huge gap there moves nothing."""
    deep = [(4, 60, 50), (16, 60, 55), (64, 60, 60)]
    with_shallow = curve("depth", [(2, 30, 90)] + deep)
    f = verdict("gap_grows_with_depth", with_shallow)["findings"][0]
    g = verdict("gap_grows_with_depth", curve("depth", deep))["findings"][0]
    assert f.effect == g.effect and "depth 2, the shallow ReLU net, apart" in f.text


def test_trains_at_every_depth_is_non_inferiority_within_five_points():
    ok = curve("depth", [(4, 60, 80), (16, 60, 79), (64, 60, 78)], bp=False)
    assert verdict("trains_at_every_depth", ok)["findings"][0].verdict == "supported"
    far = curve("depth", [(4, 60, 80), (16, 60, 79), (64, 60, 40)], bp=False)  # 12.5% on ten classes used to pass
    assert verdict("trains_at_every_depth", far)["findings"][0].verdict == "contradicted"
    near = curve("depth", [(4, 60, 80), (16, 60, 75.5)], bp=False, std=3.0)  # within noise of the margin
    assert verdict("trains_at_every_depth", near)["findings"][0].verdict == "inconclusive"


def test_a_depth_whose_runs_all_diverged_counts_against_trains_at_every_depth():
    rows = []
    for ds in DATASETS:
        rows += curve("depth", [(4, 60, 80), (16, 60, 79)], bp=False, ds=ds)
        rows += runs(ds, "sal", 4, 0.0, n=0, depth=64, diverged=5)
    c = verdict("trains_at_every_depth", rows)
    assert c["verdict"] == "contradicted" and c["counts"]["contradicted"] == 3
    assert "every run diverged at depth 64" in c["evidence"]


def test_unstable_runs_stay_in_and_are_counted():
    rows = table2(50, {16: 60})
    rows = [dict(r, unstable=(r["method"] == "sal" and r["seed"] < 2 and r["dataset"] == "digits")) for r in rows]
    c = verdict("sal_beats_bp", rows)
    assert "SAL-16 60.0 (5), 2 unstable" in c["evidence"] and c["verdict"] == "supported"


def test_sal_beats_moe_averages_over_k_above_one():
    rows = table2(50, {1: 50, 4: 60, 16: 70}, moe={1: 50, 4: 55, 16: 65})
    c = verdict("sal_beats_moe", rows)
    assert c["findings"][0].effect.estimate == pytest.approx(5.0) and c["verdict"] == "supported"


def test_the_paper_own_numbers_under_the_same_tests():
    own = claims.paper_verdicts()
    assert own["sal_beats_bp"]["counts"]["supported"] == 8  # SAL-16 trails BP on PCam, ties on STL-10
    assert own["train_loss_falls_with_k"]["verdict"] == "supported"
    assert own["gap_grows_with_depth"]["verdict"] == "claimed (no numbers printed)"


# ---------------------------------------------------------------- the table
def stages():
    """Defaults at the paper's lr: every claim contradicted. Preset at the paper's lr: every claim supported.
    Defaults, tuned: the table claims inconclusive (noise), depth not run at tuned lrs for this reading.
    Preset, tuned: SAL beats BP and MoE, rises with K; the depth gap shrinks (contradicted), SAL trains."""
    dfs = {}
    falls = {1: 60, 2: 55, 4: 50, 16: 40}
    rises = {1: 60, 2: 65, 4: 70, 16: 80}
    dfs["area_sweep"] = frame(table2(50, falls))
    dfs["preset_sweep"] = frame(table2(50, rises, reading="paper_fit"))
    depth = []
    for ds in DATASETS:
        depth += curve("depth", [(2, 50, 40), (8, 60, 50), (32, 70, 5)], ds=ds)
        depth += curve("depth", [(2, 50, 60), (8, 60, 85), (32, 70, 84)], reading="paper_fit", bp=False, ds=ds)
    dfs["depth"] = frame(depth)
    width = []
    for ds in DATASETS:
        width += curve("hidden", [(256, 60, 50), (1024, 70, 40)], ds=ds)
        width += curve("hidden", [(256, 60, 60), (1024, 70, 90)], reading="paper_fit", bp=False, ds=ds)
    dfs["width"] = frame(width)
    moe = [r for r in table2(50, falls) if r["method"] == "sal"] + [
        r for ds in DATASETS for k in (1, 2, 4, 16) for r in runs(ds, "moe", k, 70)]
    dfs["moe"] = frame(moe)
    noisy = [r for r in table2(50, {1: 50.1, 2: 49.9, 4: 50.2, 16: 50.1}, std=20.0) if r["method"] == "sal"]
    noisy = [dict(r, train_loss=1.0 + 0.3 * (r["seed"] - 2)) for r in noisy]
    shared = [r for r in table2(50, {}, moe={4: 50, 16: 50}, std=5.0)]
    preset = [r for r in table2(50, rises, reading="paper_fit") if r["method"] == "sal"]
    deep = []
    for ds in ("semeion",):
        deep += curve("depth", [(8, 80, 70), (32, 90, 60)], ds=ds, reading="paper_fit")
    tuned = pd.DataFrame(shared + noisy + preset + [dict(r, lr=1e-2) for r in deep])
    dfs["tuned"] = tuned
    return dfs


def test_every_column_reads_its_own_runs():
    cells = {(c["id"], c["column"]): c for c in claims.claim_cells(stages(), PARAMS, "paper_fit")}
    v = lambda i, col: cells[(i, col)]["verdict"]  # noqa: E731
    assert v("sal_beats_bp", "defaults") == "contradicted" and v("sal_beats_bp", "preset") == "supported"
    assert v("accuracy_rises_with_k", "defaults") == "contradicted" and v("accuracy_rises_with_k", "preset") == "supported"
    assert v("accuracy_rises_with_k", "defaults_tuned") == "inconclusive"
    assert v("gap_grows_with_depth", "defaults") == "contradicted"  # residual depths 8 -> 32: SAL falls, BP rises
    assert v("trains_at_every_depth", "defaults") == "contradicted" and v("trains_at_every_depth", "preset") == "supported"
    assert v("gap_grows_with_width", "preset") == "supported" and v("gap_grows_with_width", "defaults") == "contradicted"
    assert v("sal_beats_moe", "defaults") == "contradicted"
    assert v("gap_grows_with_depth", "defaults_tuned") == "not run" and v("gap_grows_with_width", "preset_tuned") == "not run"
    assert v("gap_grows_with_depth", "preset_tuned") == "limited evidence"  # Semeion alone


def test_bh_runs_over_the_whole_table():
    cells = claims.claim_cells(stages(), PARAMS, "paper_fit")
    found = [f for c in cells for f in c["datasets"] if f["p"] is not None]
    assert all(f["q_bh"] is not None for f in found)
    ps = [f["p"] for f in found]
    assert [f["q_bh"] for f in found] == pytest.approx(list(multipletests(ps, method="fdr_bh")[1]))


def test_the_table_shows_each_cells_verdict_counts_and_pooled_effect():
    cells = claims.claim_cells(stages(), PARAMS, "paper_fit")
    table = claims.claims_table(cells).set_index("claim")
    by = {(c["id"], c["column_title"]): c for c in cells}
    for claim in claims.CLAIMS:
        for title in ("defaults, lr 0.0001", "paper_fit, lr 0.0001", "defaults, tuned lr", "paper_fit, tuned lr"):
            cell, text = by[(claim.id, title)], table.loc[claim.short, title]
            if cell["verdict"] == "not run":
                assert text == "not run"
                continue
            n = cell["counts"]
            assert f"({n['supported']}/{n['contradicted']}/{n['inconclusive']})" in text
            p, d = cell["pooled"], cell["pooled"]["digits"]
            assert f"{p['estimate']:+.{d}f} [{p['low']:+.{d}f}, {p['high']:+.{d}f}]" in text
    assert table.loc[claims.CLAIMS[0].short, "defaults, lr 0.0001"].startswith("contradicted (0/3/0); -10.0 [")


def test_the_bottom_line_names_both_regimes():
    cells = claims.claim_cells(stages(), PARAMS, "paper_fit")
    line = claims.bottom_line(cells)
    assert "(SAL-16 beats BP) is supported (3/0/0)" in line and "own best learning rate it is supported (3/0/0)" in line
    untuned = {**stages(), "tuned": pd.DataFrame()}
    assert "has not been tested yet" in claims.bottom_line(claims.claim_cells(untuned, PARAMS, "paper_fit"))


def test_reading_view_keeps_other_methods_and_one_reading_of_sal():
    s = frame(table2(40, {1: 35, 16: 30}) + [r for r in table2(40, {16: 60}, reading="paper_fit") if r["method"] == "sal"])
    v = claims.reading_view(s, "paper_fit")
    assert set(v.loc[v["method"] == "sal", "reading"]) == {"paper_fit"} and (v["method"] == "bp").sum() == 15


def test_the_tuned_depth_view_holds_the_depth_nets_only():
    """Depth 2 at the shallow width is also Table 2's net: SAL-1 and SAL-16 share it with the depth nets,
    and must not stand in for SAL-4 in the depth claims."""
    t = frame(curve("depth", [(2, 80, 70), (8, 85, 60), (32, 90, 40)], reading="paper_fit")
              + [r for r in table2(50, {1: 60, 16: 70}, reading="paper_fit") if r["method"] == "sal"])
    depth = claims.depth_view(t, ["bp", "sal-4"], [2, 8, 32], 256)
    assert set(zip(depth["method"], depth["areas"])) == {("bp", 1), ("sal", 4)}


def test_forest_frame_has_a_row_per_tested_dataset():
    cells = claims.claim_cells(stages(), PARAMS, "paper_fit")
    f = claims.forest_frame(cells)
    assert len(f) == sum(1 for c in cells for d in c["datasets"] if d["low"] is not None)
    assert set(f["verdict"]) <= {"supported", "contradicted", "inconclusive"}
    assert (f["low"] <= f["estimate"]).all() and (f["estimate"] <= f["high"]).all()


@pytest.mark.parametrize("counts,need,expected", [
    ((3, 0, 2), 0.5, "supported"), ((2, 0, 3), 0.5, "inconclusive"), ((0, 3, 2), 0.5, "contradicted"),
    ((2, 2, 1), 0.5, "mixed"), ((9, 0, 1), 0.85, "supported"), ((8, 0, 2), 0.85, "inconclusive"),
    ((6, 3, 1), 0.85, "mixed"), ((0, 0, 0), 0.5, "not testable"), ((2, 0, 0), 0.5, "limited evidence"),
    ((0, 1, 1), 0.5, "limited evidence"), ((1, 1, 1), 0.5, "mixed"),
])
def test_overall_verdict_from_per_dataset_counts(counts, need, expected):
    """Worked by hand: fewer than three datasets is limited evidence; supported needs more than need x n
    supporters, contradicted more than half contradicting; both present and neither rule: mixed."""
    got = claims.overall_verdict(dict(zip(("supported", "contradicted", "inconclusive"), counts)), need)
    assert got == expected


def test_a_preset_cell_counts_its_held_out_datasets_apart():
    """paper_fit was chosen on Digits and Semeion: its cells also count USPS alone; the defaults' do not."""
    cells = {(c["id"], c["column"]): c for c in claims.claim_cells(stages(), PARAMS, "paper_fit", fit=("digits", "semeion"))}
    cell = cells[("sal_beats_bp", "preset")]
    assert cell["held_out"] == {"supported": 1, "contradicted": 0, "inconclusive": 0}
    assert claims.verdict_text(cell).startswith("supported (3/0/0), held out 1/0/0")
    assert "held_out" not in cells[("sal_beats_bp", "defaults")]
    every = {(c["id"], c["column"]): c for c in claims.claim_cells(stages(), PARAMS, "paper_fit", fit=DATASETS)}
    assert "held_out" not in every[("sal_beats_bp", "preset")]  # nothing held out: nothing to count apart
