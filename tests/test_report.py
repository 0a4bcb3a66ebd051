"""The report and the README block (report.py, stages.py outputs)."""

import dataclasses

import pandas as pd
import yaml

from salrepro.pipeline import analysis, report
from salrepro.pipeline.config import read_yaml
from salrepro.pipeline.report import read_stage_outputs


def test_update_readme_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    begin, end = report.markers("replication-quick")
    other = "\n".join(report.markers("replication-cpu"))
    readme.write_text(f"intro\n{begin}\nold\n{end}\n{other}\noutro\n")
    assert report.update_readme(readme, "- new line", "replication-quick")
    assert readme.read_text() == f"intro\n{begin}\n- new line\n{end}\n{other}\noutro\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not report.update_readme(plain, "- x", "replication-quick") and plain.read_text() == "no markers\n"


def test_report_reads_only_the_profile_datasets(tmp_path):
    for ds in ("digits", "mnist"):
        d = tmp_path / "area_sweep" / ds
        d.mkdir(parents=True)
        pd.DataFrame([{"dataset": ds, "method": "bp", "areas": 1}]).to_csv(d / "summary.csv", index=False)
    params = read_yaml("params.yaml")
    out = read_stage_outputs(tmp_path, params)
    assert list(out["area_sweep"]["dataset"]) == ["digits"] and out["depth"].empty
    assert sorted(read_stage_outputs(tmp_path)["area_sweep"]["dataset"]) == ["digits", "mnist"]


def test_not_run_reasons_name_the_profile(tmp_path):
    params = read_yaml("params.yaml")
    reasons = report.not_run_reasons(params, {"digits"}, data_root=tmp_path)
    assert len(reasons) == 9 and "digits" not in set(reasons["dataset"])
    assert all("not in the 'quick' profile" in r for r in reasons["reason"])
    assert "files not present here" in reasons.set_index("dataset").loc["mnist", "reason"]
    assert not any(str(tmp_path) in r for r in reasons["reason"])  # no machine's path in not_run.csv
    assert "under the data root" in reasons.set_index("dataset").loc["mnist", "reason"]


def test_report_metrics_are_headline_numbers_only(tmp_path):
    """report.json is what `dvc metrics show` prints: counts and verdicts, no prose."""
    import json

    from salrepro.pipeline.config import load_params
    params = load_params("tests/notebooks/params-test.yaml")
    rep = report.build_report("tests/notebooks/results", params)
    report.write_report(rep, tmp_path)
    metrics = json.loads((tmp_path / "report.json").read_text())

    def leaves(d):
        for v in d.values():
            yield from (leaves(v) if isinstance(v, dict) else [v])

    values = list(leaves(metrics))
    assert values and all(isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 16) for v in values)
    assert set(metrics["calibration_within"]) == set(params["calibration"]["input_norms"])
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert {c["column"] for c in claims} == set(metrics["claims"]) and all(c["evidence"] for c in claims)
    for column, verdicts in metrics["claims"].items():  # report.json's verdicts are claims.json's, cell by cell
        assert verdicts == {c["id"]: c["verdict"] for c in claims if c["column"] == column}
    head = json.loads((tmp_path / "headline.json").read_text())  # `dvc metrics show`: a few short columns a profile
    assert 3 <= len(head) <= 8 and all(isinstance(v, str) and len(v) <= 16 for v in head.values())
    assert head["BP calibration"] == "{}/{}".format(*map(int, __import__("salrepro.pipeline.calibration").pipeline.calibration.agreement(
        rep.calibration).loc["pm1", ["within", "cells"]]))


def test_dvc_metrics_show_lists_one_headline_per_profile():
    from pathlib import Path

    dvc = yaml.safe_load((Path(__file__).resolve().parent.parent / "dvc.yaml").read_text())
    assert dvc["metrics"] == ["results/quick/report/headline.json", "results/cpu/report/headline.json"]
    assert not any("metrics" in st.get("do", st) for st in dvc["stages"].values())  # no per-stage metric columns


def test_readme_has_each_generated_block_once_and_its_snippet_runs(tmp_path):
    """README.md: every generated block appears once, its text nowhere else in the file; the
    'Using the package' snippet runs as printed."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"<!-- ([\w-]+):begin", readme)
    assert blocks and len(blocks) == len(set(blocks))
    bodies = {n: readme.split(f"<!-- {n}:begin (generated; do not edit) -->")[1].split(f"<!-- {n}:end -->")[0]
              for n in blocks}
    for profile in {n.rsplit("-", 1)[1] for n in blocks}:  # within one profile's blocks, no generated line twice
        lines = [ln for n, b in bodies.items() if n.endswith(f"-{profile}") for ln in b.splitlines() if len(ln) > 60]
        assert len(lines) == len(set(lines)), f"a line printed twice in the {profile} blocks"
    snippet = readme.split("## Using the package")[1].split("```python")[1].split("```")[0]
    snippet = snippet.replace("epochs=25", "epochs=1")  # the same calls, one epoch
    exec(compile(snippet, "README.md", "exec"), {})


def as_runs(summary: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """A summary's rows as n runs each with exactly its mean and sample std of accuracy (what the claims read)."""
    import numpy as np

    z = np.arange(n) - (n - 1) / 2
    z = z / z.std(ddof=1)
    rows = []
    for r in summary.to_dict("records"):
        base = {k: v for k, v in r.items() if not k.endswith(("_mean", "_std"))}
        rows += [{**base, "seed": i, "val_accuracy_pct": r["val_accuracy_pct_mean"] + zi * r["val_accuracy_pct_std"],
                  "train_loss": r.get("train_loss_mean", 1.0), "diverged": False, "unstable": False}
                 for i, zi in enumerate(z)]
    return pd.DataFrame(rows)


def test_in_short_counts_as_the_report_counts():
    """The README's top: the bottom line and the claims table first, then the calibration and SAL's
    accuracy cells (BP's apart), the preset's in-sample and held-out apart; numbers worked out by hand."""
    from salrepro.pipeline import claims, paper

    def sal(ds, k, acc, std=1.0, reading="default"):
        return {"dataset": ds, "method": "sal", "areas": k, "depth": 2, "hidden": 256, "reading": reading, "seeds": 5,
                "label": paper.label("sal", k), "val_accuracy_pct_mean": acc, "val_accuracy_pct_std": std,
                "train_loss_mean": 1.0, "train_loss_std": 0.01, "val_loss_mean": 1.0, "val_loss_std": 0.01}

    # Digits, paper: SAL-1 36.37 +- 3.34, SAL-16 71.63 +- 2.60; MNIST: SAL-1 93.02 +- 0.11, SAL-16 94.73 +- 0.16
    defaults = pd.DataFrame([sal("digits", 1, 36.37), sal("digits", 16, 20.0)])  # within, outside: 1 of 2
    preset = pd.DataFrame([sal("digits", 1, 36.37, reading="paper_fit"), sal("digits", 16, 71.63, reading="paper_fit"),  # 2 of 2
                           sal("mnist", 1, 93.02, 0.1, "paper_fit"), sal("mnist", 16, 90.0, 0.1, "paper_fit")])  # 1 of 2
    calib = pd.DataFrame([{"dataset": "digits", "input_norm": m, "metric": metric, "z": z, "verdict": v}
                          for m, z, v in (("pm1", 0.5, "within"), ("unit", 3.0, "outside"))
                          for metric in ("val_accuracy_pct", "train_loss", "val_loss")])
    cells = claims.claim_cells({"area_sweep": as_runs(defaults), "preset_sweep": as_runs(preset)}, None, "paper_fit")
    rep = report.Report(comparison=paper.compare_area_sweep(defaults), preset_comparison=paper.compare_area_sweep(preset),
                        preset="paper_fit", fit_datasets=["digits"], held_out=["mnist"], sigma=2.0, calibration=calib,
                        claims_table=claims.claims_table(cells), bottom_line=claims.bottom_line(cells))
    text = report.in_short(rep)
    assert text.startswith("At the paper's learning rate, under the reading that reproduces its Tables 2/3, the headline")
    assert "| claim | the paper's numbers | defaults, lr 0.0001 |" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("- Calibration") or ln.startswith("- Tables 2/3")]
    assert lines[0] == "- Calibration: BP agrees with the paper in 3/3 cells under the protocol's map `pm1`; `unit` 0/3."
    assert lines[1].startswith("- Tables 2/3, SAL under the defaults: 1 of 2 SAL accuracy cells agree")
    assert "in-sample (Digits) 2 of 2; held out (MNIST) 1 of 2" in lines[2]
    assert text.index("`paper_fit`: the reading") < text.index("| claim |")  # the terms before the table uses them
    assert "tested once on MNIST, datasets that played no part" in text
    quick = report.in_short(dataclasses.replace(rep, held_out=[]))  # a profile with no held-out dataset says so
    assert "played no part in choosing it" in quick and "cannot test the preset" in quick and "tested once" not in quick


def test_areas_versus_rule_reads_the_ablation_off_the_summary():
    rows = [("sal", 1, 30.0), ("sal", 16, 24.0), ("salbp", 1, 38.0), ("salbp", 16, 45.0), ("moe", 16, 40.0)]
    summary = pd.DataFrame([{"dataset": "digits", "method": m, "areas": k, "val_accuracy_pct_mean": a,
                             "val_accuracy_pct_std": 1.0} for m, k, a in rows])
    text = analysis.areas_versus_rule(summary)
    assert "from 38.0 +- 1.0% (SAL-BP-1, that is BP) to 45.0 +- 1.0% at K = 16 (best K = 16" in text
    assert "K = 1 -8.0, K = 16 -21.0" in text
    assert analysis.areas_versus_rule(summary[summary["method"] != "salbp"]) == "- SAL-BP was not run beside SAL here."


def test_report_reads_only_results_under_the_profiles_input_map(tmp_path):
    """A stage's summary left from another input map (the first protocol's unit runs) does not enter the verdicts."""
    d = tmp_path / "depth" / "digits"
    d.mkdir(parents=True)
    pd.DataFrame([{"dataset": "digits", "method": "bp", "areas": 1, "input_norm": "unit"},
                  {"dataset": "digits", "method": "sal", "areas": 4, "input_norm": "pm1"}]).to_csv(d / "summary.csv", index=False)
    params = read_yaml("params.yaml")
    assert list(read_stage_outputs(tmp_path, params)["depth"]["method"]) == ["sal"]  # pm1, the default map
    params["datasets"]["digits"] = {"input_norm": "unit"}
    assert list(read_stage_outputs(tmp_path, params)["depth"]["method"]) == ["bp"]


def test_not_run_reasons_tell_a_profile_cut_short_from_a_dataset_outside_it(tmp_path):
    params = read_yaml("conf/profile/cpu.yaml")
    params["area_sweep"]["datasets"] = ["digits"]  # rendered while the rest of the profile reruns
    reasons = report.not_run_reasons(params, {"digits"}, data_root=tmp_path).set_index("dataset")["reason"]
    assert reasons["mnist"].startswith("in the 'cpu' profile, not yet run under these parameters")
    assert reasons["svhn"].startswith("not in the 'cpu' profile")


def test_stage_times_sum_the_runs_under_the_profile_map(tmp_path):
    import json

    from salrepro.pipeline.config import load_params

    params = load_params()  # quick profile: area_sweep on digits, inputs pm1 by default
    runs = tmp_path / "area_sweep" / "digits" / "runs"
    runs.mkdir(parents=True)
    for i, (norm, seconds) in enumerate([("pm1", 30.0), ("pm1", 60.0), ("unit", 600.0)]):
        record = {"config": {"data_options": {"input_norm": norm}}, "seconds": seconds, "device": "cpu (Test CPU, 2 threads)"}
        (runs / f"r{i}.json").write_text(json.dumps(record))
    (runs / ".tmp-123-abc.json").write_text('{"config": {"data_')  # a writer's half-written temporary: not a record
    (tmp_path / "area_sweep" / "semeion" / "runs").mkdir(parents=True)  # not a quick dataset: left out
    (tmp_path / "area_sweep" / "semeion" / "runs" / "r.json").write_text(json.dumps(record))
    times = report.stage_times(tmp_path, params)
    assert times.to_dict("records") == [{"stage": "area_sweep", "dataset": "digits", "runs": 2, "train_minutes": 1.5,
                                         "machine": "cpu (Test CPU, 2 threads)"}]
    assert report.stage_times(tmp_path, None)["runs"].tolist() == [3, 1]  # no params: every record


def test_run_costs_say_what_each_point_rests_on():
    s = pd.DataFrame([{"label": "SAL-4 [paper_fit]", "hidden": 4096, "seeds": 1, "step_seconds": 1.714, "peak_memory_gb": 17.31},
                      {"label": "BP", "hidden": 2048, "seeds": 3, "step_seconds": 0.12, "peak_memory_gb": 4.2},
                      {"label": "BP", "hidden": 256, "seeds": 3, "step_seconds": float("nan"), "peak_memory_gb": float("nan")}])
    assert analysis.run_costs(s) == ("Runs: BP width 2048: 3 seed(s), 0.12 s a step, peak memory 4.2 GB; SAL-4 [paper_fit] "
                                   "width 4096: 1 seed(s), 1.71 s a step, peak memory 17.3 GB.")
    assert analysis.run_costs(s.assign(step_seconds=float("nan"))) == ""


def test_depth_dips_are_diagnosed_from_the_losses():
    def bp(depth, acc, train, val):
        return {"dataset": "semeion", "method": "bp", "depth": depth, "val_accuracy_pct_mean": acc, "val_accuracy_pct_std": 2.0,
                "seeds": 5, "train_loss_mean": train, "val_loss_mean": val}

    s = pd.DataFrame([bp(16, 50.0, 0.18, 2.3), bp(32, 32.0, 0.01, 5.4), bp(64, 65.0, 0.39, 3.0)])
    text = analysis.depth_dips(s, as_runs(s))
    assert "Semeion, BP at depth 32: 32.0 +- 2.0% (5 seeds) against 50.0% at 16 and 65.0% at 64" in text
    assert "(overfitting)" in text
    assert "not explained by its losses" in analysis.depth_dips(s.assign(train_loss_mean=[0.1, 0.5, 0.2]), as_runs(s))
    near = s.assign(val_accuracy_pct_mean=[50.0, 49.0, 65.0])
    assert analysis.depth_dips(near, as_runs(near)) == ""  # within noise: no dip


def test_every_sentence_of_the_notebooks_text_starts_in_upper_case():
    """The pages a reader opens (the report among them) are made of these cells; code spans aside."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    lower = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        for c in json.loads(path.read_text())["cells"]:
            if c["cell_type"] == "markdown":
                text = re.sub(r"`[^`]*`", "CODE", "".join(c["source"]))
                lower += [f"{path.name}: ...{text[max(0, m.start() - 30):m.end() + 10]}"
                          for m in re.finditer(r"[.!?]\s+[a-z]", text)]
    assert lower == []


def test_a_cell_in_words_leads_with_its_own_kind_of_dataset():
    cell = {"verdict": "limited evidence", "counts": {"supported": 0, "contradicted": 1, "inconclusive": 0},
            "pooled": {"estimate": -13.7, "low": -23.1, "high": -4.4}}
    assert report._plain(cell) == "limited evidence: contradicted on 1 of 1 dataset, -13.7 points [-23.1, -4.4] pooled"
    cell = {"verdict": "mixed", "counts": {"supported": 8, "contradicted": 1, "inconclusive": 1}}
    assert report._plain(cell) == "mixed: supported on 8, contradicted on 1, inconclusive on 1 of 10 datasets"
    cell = {"verdict": "supported", "counts": {"supported": 5, "contradicted": 0, "inconclusive": 0},
            "held_out": {"supported": 3, "contradicted": 0, "inconclusive": 0}}
    assert report._plain(cell) == "supported on 5 of 5 datasets (3 of 3 held out)"
    assert report._plain({"verdict": "not run"}) == "not run"
