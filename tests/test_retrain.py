"""Tests of salrepro.pipeline.retrain: retraining from scratch never puts the committed runs at risk."""

import json

import pytest

from salrepro.pipeline import retrain as rt

TEST_PARAMS = "tests/notebooks/params-test.yaml"


def histories(folder):
    return {p.name: json.loads(p.read_text())["history"] for p in sorted(folder.glob("*.json"))}


def test_retrain_swaps_in_new_runs_only_when_a_stage_is_complete(tmp_path, monkeypatch):
    results = tmp_path / "results"
    rt.retrain(TEST_PARAMS, ["area_sweep"], results=results, progress=False)
    live = results / "area_sweep" / "digits" / "runs"
    committed = {p.name: p.read_bytes() for p in live.glob("*.json")}
    assert committed and not (results / ".retrain").exists()

    calls = {"n": 0}
    real = rt.registry.run

    def interrupted(*a, **kw):  # Ctrl-C in the middle of training, after some runs were stored
        calls["n"] += 1
        out = kw["out_dir"]
        out.joinpath("runs").mkdir(parents=True)
        out.joinpath("runs", "partial.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(rt.registry, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rt.retrain(TEST_PARAMS, ["area_sweep"], results=results, progress=False)
    assert {p.name: p.read_bytes() for p in live.glob("*.json")} == committed  # untouched
    assert (results / ".retrain" / "area_sweep" / "digits" / "runs" / "partial.json").exists()  # kept to resume

    monkeypatch.setattr(rt.registry, "run", real)
    (results / ".retrain" / "area_sweep" / "digits" / "runs" / "partial.json").unlink()
    done = rt.retrain(TEST_PARAMS, ["area_sweep"], results=results, progress=False)
    assert [d["stage"] for d in done] == ["area_sweep"]
    assert sorted(p.name for p in live.glob("*.json")) == sorted(committed)  # same runs, trained again
    assert histories(live) == {n: json.loads(b)["history"] for n, b in sorted(committed.items())}  # deterministic
    assert not (results / ".retrain").exists() and not list(results.glob("**/runs.old"))


def test_an_interrupted_swap_is_undone_on_the_next_start(tmp_path):
    runs = tmp_path / "area_sweep" / "digits" / "runs.old"
    runs.mkdir(parents=True)
    (runs / "a.json").write_text("{}")
    rt.restore_interrupted_swaps(tmp_path)
    assert (tmp_path / "area_sweep" / "digits" / "runs" / "a.json").exists() and not runs.exists()


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage"):
        rt.retrain(TEST_PARAMS, ["area_swep"])


def _rewrite(path, change):
    record = json.loads(path.read_text())
    change(record)
    record["seconds"], record["device"] = 123.0, "another cpu (x86_64, 2 threads)"  # another machine's circumstances
    path.write_text(json.dumps(record, indent=1))
    return path.read_bytes()


def test_a_retrain_keeps_the_committed_file_of_every_run_that_did_not_change(tmp_path, capsys):
    """A run retrained on another CPU whose history equals the committed one (bit for bit, or within the
    tolerance) leaves the committed file byte for byte; the others replace it and are named."""
    results = tmp_path / "results"
    rt.retrain(TEST_PARAMS, ["area_sweep"], results=results, progress=False)
    live = results / "area_sweep" / "digits" / "runs"
    names = sorted(p.name for p in live.glob("*.json"))
    retrained = histories(live)
    close, far, same, flipped = (next(n for n in names if f"-s{s}-" in n and m in n)
                                 for m, s in (("-sal-K4-", 0), ("-sal-K4-", 1), ("-bp-", 0), ("-sal-K1-", 0)))

    def scale_losses(record, by):
        for epoch in record["history"]:
            epoch["train_loss"] *= 1 + by
        record["final"]["train_loss"] = record["history"][-1]["train_loss"]

    def flip_accuracy(record):
        record["history"][0]["val_accuracy"] += 1 / 360

    committed = {n: (live / n).read_bytes() for n in names}
    made_here = json.loads(committed[close])
    committed[close] = _rewrite(live / close, lambda r: scale_losses(r, 3e-6))  # rounding of another CPU
    committed[far] = _rewrite(live / far, lambda r: scale_losses(r, 1e-3))  # a real difference
    committed[same] = _rewrite(live / same, lambda r: None)  # same history, another machine's seconds
    committed[flipped] = _rewrite(live / flipped, flip_accuracy)  # one sample more right
    old = live / "digits-bp-K1-d2-w32-s0-0123456789abcdef.json"  # a record of a run this profile no longer trains
    old.write_bytes(committed[same])
    assert rt.compare_records(json.loads(committed[close]), made_here) == ("within", pytest.approx(3e-6, rel=1e-3))

    done = rt.retrain(TEST_PARAMS, ["area_sweep"], results=results, progress=False)
    now = {p.name: p.read_bytes() for p in live.glob("*.json")}
    kept = done[0]["kept"]
    assert sorted(n for n, _ in kept.changed) == sorted(f"area_sweep/digits/runs/{n}" for n in (far, flipped))
    assert kept.identical == len(names) - 3 and kept.within == 1 and 2e-6 < kept.largest_within < 4e-6
    assert kept.carried == 1 and now[old.name] == committed[same]
    for n in names:
        if n in (far, flipped):  # changed: the retrained record, whose history is the first retrain's
            assert now[n] != committed[n] and json.loads(now[n])["history"] == retrained[n]
        else:  # bit-identical (a new "seconds" in every retrain) or within the tolerance: the committed bytes
            assert now[n] == committed[n], n
    lines = rt.summary_lines(done)
    assert lines[0].startswith(f"runs against the committed records: {len(names) - 3} bit-identical; 1 equal within "
                               "the tolerance (losses within 0.0001 relative, accuracies and occupancy identical; "
                               "largest loss difference 3.0e-06 relative); 2 changed.")
    assert f"  changed: area_sweep/digits/runs/{far}: losses differ by up to 1.0e-03 relative" in lines
    assert f"  changed: area_sweep/digits/runs/{flipped}: an accuracy, occupancy or divergence differs" in lines


@pytest.mark.parametrize("new, old, kind", [
    ({"history": [{"train_loss": 1.0, "val_accuracy": 0.5}]}, {"history": [{"train_loss": 1.0, "val_accuracy": 0.5}]}, "identical"),
    ({"history": [{"train_loss": 1.00005, "val_accuracy": 0.5}]}, {"history": [{"train_loss": 1.0, "val_accuracy": 0.5}]}, "within"),
    ({"history": [{"train_loss": 1.0002, "val_accuracy": 0.5}]}, {"history": [{"train_loss": 1.0, "val_accuracy": 0.5}]}, "changed"),
    ({"history": [{"train_loss": 1.0, "val_accuracy": 0.5000001}]}, {"history": [{"train_loss": 1.0, "val_accuracy": 0.5}]}, "changed"),
    ({"history": [{"train_loss": float("nan")}], "diverged": 1}, {"history": [{"train_loss": float("nan")}], "diverged": 1}, "identical"),
    ({"history": [{"train_loss": float("nan")}], "diverged": 1}, {"history": [{"train_loss": 2.0}], "diverged": 1}, "changed"),
    ({"history": [{"train_loss": 1.0}], "diverged": None}, {"history": [{"train_loss": 1.0}], "diverged": 1}, "changed"),
    ({"history": [{"train_loss": 1.0}]}, {"history": [{"train_loss": 1.0}, {"train_loss": 0.9}]}, "changed"),
    ({"history": [{"occupancy": {"0": [0.25, 0.75]}}]}, {"history": [{"occupancy": {"0": [0.5, 0.5]}}]}, "changed"),
    ({"history": [], "seconds": 1.0, "device": "a"}, {"history": [], "seconds": 2.0, "device": "b"}, "identical"),
])
def test_compare_records(new, old, kind):
    assert rt.compare_records(new, old)[0] == kind


def test_the_retrain_command_prints_what_it_kept_and_what_changed(monkeypatch, capsys):
    from salrepro.pipeline import cli

    kept = rt.Kept(identical=5, within=25, largest_within=1.2e-6, changed=[("area_sweep/digits/runs/x.json", "new: no committed record")])
    monkeypatch.setattr(rt, "retrain", lambda *a, **k: [{"stage": "area_sweep", "dataset": "digits", "runs": "r", "seconds": 1.0, "kept": kept}])
    assert cli.main(["retrain", "--stage", "area_sweep", "--no-progress"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "5 bit-identical; 25 equal within the tolerance" in out and "largest loss difference 1.2e-06 relative" in out
    assert "1 changed" in out and "  changed: area_sweep/digits/runs/x.json: new: no committed record" in out
    kept.changed = []
    assert cli.main(["retrain", "--stage", "area_sweep", "--no-progress"]) == cli.EXIT_OK
    assert "nothing changed beyond the tolerance" in capsys.readouterr().out
