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
