"""The claims table (claims.py): every claim in every column, on constructed results whose verdict is known."""

import pandas as pd
import pytest

from salrepro.pipeline import claims, paper

PARAMS = {"area_sweep": {"hidden": 256}, "depth": {"hidden": 256, "depths": [2, 8, 32]},
          "tuned": {"depth": {"datasets": ["semeion"], "preset": "paper_fit", "methods": ["bp", "sal-4"]}}}


def row(ds, method, k, acc, *, depth=2, hidden=256, reading="default", std=0.5, loss=None, lr=1e-4):
    loss = (3.0 - acc / 50) if loss is None else loss  # higher accuracy, lower loss unless told
    return {"dataset": ds, "method": method, "areas": k, "depth": depth, "hidden": hidden, "reading": reading,
            "label": paper.label(method, k), "seeds": 5, "diverged": 0, "lr": lr,
            "val_accuracy_pct_mean": float(acc), "val_accuracy_pct_std": std,
            "train_loss_mean": loss, "train_loss_std": 0.01, "val_loss_mean": loss, "val_loss_std": 0.01}


def table2(reading, bp, sal1, sal16, moe16=None, datasets=("digits", "semeion"), std=0.5, depth=None):
    rows = []
    for ds in datasets:
        rows += [row(ds, "bp", 1, bp, std=std), row(ds, "sal", 1, sal1, reading=reading, std=std),
                 row(ds, "sal", 16, sal16, reading=reading, std=std)]
        if moe16 is not None:
            rows += [row(ds, "moe", 16, moe16, std=std)]
    return rows


def curve(reading, axis, points, ds="semeion", bp_reading=True):
    """points: (value, bp acc, sal acc); BP rows only if bp_reading (BP is shared between readings)."""
    rows = []
    for v, bp, sal in points:
        shape = {"depth": v, "hidden": 256} if axis == "depth" else {"depth": 64, "hidden": v}
        if bp_reading:
            rows.append(row(ds, "bp", 1, bp, **shape))
        rows.append(row(ds, "sal", 4, sal, reading=reading, **shape))
    return rows


def stages():
    """Defaults at the paper's lr: every claim contradicted. Preset at the paper's lr: every claim supported.
    Defaults, tuned: the table claims inconclusive (noise), depth not run at tuned lrs for this reading.
    Preset, tuned: SAL beats BP and MoE, rises with K; the depth gap shrinks (contradicted), SAL trains."""
    frame = pd.DataFrame
    depth = (curve("default", "depth", [(2, 50, 40), (8, 60, 30), (32, 70, 5)])  # SAL below chance at 32
             + curve("paper_fit", "depth", [(2, None, 50), (8, None, 70), (32, None, 90)], bp_reading=False))
    width = (curve("default", "width", [(256, 60, 50), (1024, 70, 40)])
             + curve("paper_fit", "width", [(256, None, 60), (1024, None, 90)], bp_reading=False))
    moe = [r for r in table2("default", 40, 35, 30) if r["method"] == "sal"] + [
        row(ds, "moe", k, 60) for ds in ("digits", "semeion") for k in (1, 16)]
    shared = [r for r in table2("default", 80, 0, 0, moe16=82) if r["method"] != "sal"]  # BP and MoE: no reading
    noisy = [dict(r, train_loss_mean=1.0) for r in table2("default", 0, 80.5, 80.2, std=20.0) if r["method"] == "sal"]
    preset = [r for r in table2("paper_fit", 0, 85, 95) if r["method"] == "sal"]
    deep = [dict(r, lr=1e-2) for r in curve("paper_fit", "depth", [(2, 80, 70), (8, 85, 60), (32, 90, 40)])]
    tuned = frame(shared + noisy + preset + deep).drop_duplicates(
        subset=["dataset", "method", "areas", "depth", "hidden", "reading"])  # BP at depth 2 is Table 2's BP
    return {"area_sweep": frame(table2("default", 40, 35, 30)), "preset_sweep": frame(table2("paper_fit", 40, 50, 70)),
            "depth": frame(depth), "width": frame(width), "moe": frame(moe), "tuned": tuned}


EXPECTED = {  # claim -> verdict in columns defaults, preset, defaults_tuned, preset_tuned
    "sal_beats_bp": ("contradicted", "supported", "inconclusive", "supported"),
    "accuracy_rises_with_k": ("contradicted", "supported", "inconclusive", "supported"),
    "train_loss_falls_with_k": ("contradicted", "supported", "inconclusive", "supported"),
    "gap_grows_with_depth": ("contradicted", "supported", "not run", "contradicted"),
    "gap_grows_with_width": ("contradicted", "supported", "not run", "not run"),
    "trains_at_every_depth": ("contradicted", "supported", "not run", "supported"),
    "sal_beats_moe": ("contradicted", "supported", "inconclusive", "supported"),
}


@pytest.mark.parametrize("claim", list(EXPECTED))
def test_every_claim_in_every_column_gets_its_known_verdict(claim):
    cells = claims.claim_cells(stages(), PARAMS, "paper_fit")
    got = tuple(c["verdict"] for c in cells if c["id"] == claim)
    assert got == EXPECTED[claim]


def test_the_preset_column_reads_the_preset_runs_not_the_defaults():
    """The defaults fall with K and the preset rises: were the preset's column computed from the
    defaults' runs, the two would agree."""
    cells = {(c["id"], c["column"]): c for c in claims.claim_cells(stages(), PARAMS, "paper_fit")}
    assert cells[("accuracy_rises_with_k", "defaults")]["verdict"] == "contradicted"
    assert cells[("accuracy_rises_with_k", "preset")]["verdict"] == "supported"
    assert "SAL-16 70.0%" in cells[("accuracy_rises_with_k", "preset")]["evidence"]
    assert "SAL-16 95.0%" in cells[("accuracy_rises_with_k", "preset_tuned")]["evidence"]


def test_the_table_counts_are_the_cells_counts():
    cells = claims.claim_cells(stages(), PARAMS, "paper_fit")
    table = claims.claims_table(cells).set_index("claim")
    by = {(c["id"], c["column_title"]): c for c in cells}
    for claim in claims.CLAIMS:
        for title in ("defaults, lr 0.0001", "paper_fit, lr 0.0001", "defaults, tuned lr", "paper_fit, tuned lr"):
            cell = by[(claim.id, title)]
            text = table.loc[claim.statement, title]
            if cell["verdict"] == "not run":
                assert text == "not run"
            else:
                n = cell["counts"]
                assert text.startswith(f"{cell['verdict']} ({n['supported']}/{n['contradicted']}/{n['inconclusive']})")
    # worked by hand: two datasets, both contradicting, at the paper's lr under the defaults
    assert table.loc[claims.CLAIMS[0].statement, "defaults, lr 0.0001"] == "contradicted (0/2/0)"
    assert table.loc[claims.CLAIMS[0].statement, "the paper's numbers"] == "supported (9/0/1)"


def test_the_bottom_line_names_both_regimes():
    cells = claims.claim_cells(stages(), PARAMS, "paper_fit")
    line = claims.bottom_line(cells)
    assert "(SAL beats BP) is supported (2/0/0)" in line and "own best learning rate it is supported (2/0/0)" in line
    untuned = {**stages(), "tuned": pd.DataFrame()}
    assert "has not been tested yet" in claims.bottom_line(claims.claim_cells(untuned, PARAMS, "paper_fit"))


def test_reading_view_keeps_other_methods_and_one_reading_of_sal():
    s = pd.DataFrame(table2("default", 40, 35, 30) + [r for r in table2("paper_fit", 40, 50, 60) if r["method"] == "sal"])
    v = claims.reading_view(s, "paper_fit")
    assert set(v.loc[v["method"] == "sal", "reading"]) == {"paper_fit"} and (v["method"] == "bp").sum() == 2
    assert claims.reading_view(s.drop(columns="reading"), "paper_fit").empty  # old summaries hold the defaults only


def test_the_tuned_depth_view_holds_the_depth_nets_only():
    """Depth 2 at the shallow width is also Table 2's net: SAL-1 and SAL-16 share it with the depth nets,
    and must not stand in for SAL-4 in the depth claims."""
    cells = claims.views(stages(), claims.columns("paper_fit")[3], PARAMS)
    depth = cells["depth"]
    assert set(zip(depth["method"], depth["areas"])) == {("bp", 1), ("sal", 4)}
    assert sorted(depth.loc[depth["method"] == "sal", "depth"]) == [2, 8, 32]
    t = stages()["tuned"]
    assert ("sal", 16) in set(zip(t["method"], t["areas"]))  # there to be left out
    assert len(claims.depth_view(t, ["sal-4"], [2], 256)) == 1


def scenario(sign: int) -> dict:
    """Stages whose every claim, in every column, has one known verdict: sign +1 supported, -1
    contradicted, 0 inconclusive (differences of a tenth of a point under a std of 20)."""
    noisy = sign == 0
    std = 20.0 if noisy else 0.5
    sal1, sal16, moe = (50.1, 50.2, 50.0) if noisy else (50 + 5 * sign, 50 + 10 * sign, 50 - 10 * sign)
    def table(reading, lr=1e-4):
        rows = [row(ds, "bp", 1, 50.0, std=std, lr=lr) for ds in ("digits", "semeion")]
        rows += [row(ds, "sal", k, a, reading=reading, std=std, lr=lr, loss=(2.0 if noisy else None))
                 for ds in ("digits", "semeion") for k, a in ((1, sal1), (16, sal16))]
        return rows

    def curve_(reading, axis, sal_reading_only=False):
        # gap +5 / -5 / 0 at the smallest value, +20 / -20 / +0.1 at the largest; contradicted: SAL below chance there
        last_bp, last_sal = {1: (50, 70), -1: (25, 5), 0: (50, 50.1)}[sign]
        values = (2, 8, 32) if axis == "depth" else (256, 1024, 4096)
        rows = []
        first = 50 + 5 * sign if sign else 50.05  # depth 2 at width 256 is also Table 2's SAL-4: beside SAL-1, SAL-16
        for v, bp, sal in zip(values, (50, 50, last_bp), (first, 50 if sign else 50.05, last_sal)):
            shape = {"depth": v, "hidden": 256} if axis == "depth" else {"depth": 64, "hidden": v}
            if not sal_reading_only:
                rows.append(row("semeion", "bp", 1, float(bp), std=std, **shape))
            rows.append(row("semeion", "sal", 4, float(sal), reading=reading, std=std, **shape))
        return rows

    frame = pd.DataFrame
    moe_rows = [row(ds, "moe", 16, moe, std=std) for ds in ("digits", "semeion")]
    tuned = table("default", 1e-2) + [r for r in table("paper_fit", 1e-2) if r["method"] == "sal"]
    tuned += [r for r in curve_("paper_fit", "depth") if not (r["method"] == "bp" and r["depth"] == 2)]
    tuned += [dict(r, lr=1e-2) for r in moe_rows]
    return {"area_sweep": frame(table("default")), "preset_sweep": frame(table("paper_fit")),
            "depth": frame(curve_("default", "depth") + curve_("paper_fit", "depth", True)),
            "width": frame(curve_("default", "width") + curve_("paper_fit", "width", True)),
            "moe": frame([r for r in table("default") if r["method"] == "sal"] + moe_rows),
            "tuned": frame(tuned).drop_duplicates(subset=["dataset", "method", "areas", "depth", "hidden", "reading"])}


NOT_RUN = {("gap_grows_with_depth", "defaults_tuned"), ("trains_at_every_depth", "defaults_tuned"),
           ("gap_grows_with_width", "defaults_tuned"), ("gap_grows_with_width", "preset_tuned")}


@pytest.mark.parametrize("sign, verdict", [(1, "supported"), (-1, "contradicted"), (0, "inconclusive")])
def test_every_claim_in_every_column_reaches_each_verdict(sign, verdict):
    """Each (claim, column) cell on results built to support, contradict, or leave within noise every
    claim: the cell says so (trains-at-every-depth has no 'inconclusive': within noise of the chance
    level it is contradicted, well above it supported)."""
    cells = claims.claim_cells(scenario(sign), PARAMS, "paper_fit")
    assert len(cells) == len(claims.CLAIMS) * 4
    for c in cells:
        if (c["id"], c["column"]) in NOT_RUN:
            assert c["verdict"] == "not run", c
        elif c["id"] == "trains_at_every_depth" and sign == 0:
            assert c["verdict"] == "supported", c  # 50% on 10 classes, whatever its noise
        else:
            assert c["verdict"] == verdict, (c["id"], c["column"], c["verdict"], c["evidence"])
