"""Experiment runs, the run store and the summary tables (experiments.py)."""

import json

import pytest
import torch

import salrepro
from salrepro import experiments as ex


class Toy:
    """A tiny dataset with the attributes of salrepro.data.Dataset."""

    def __init__(self, seed=0, n=96, n_in=8, classes=3):
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(classes, n_in, generator=g) * 2
        y = torch.randint(0, classes, (n + 32,), generator=g)
        x = centers[y] + torch.randn(n + 32, n_in, generator=g)
        self.x_train, self.y_train, self.x_val, self.y_val = x[:n], y[:n], x[n:], y[n:]
        self.in_features, self.num_classes = n_in, classes


def small_grid(**kw):
    return ex.grid("toy", [("bp", 1), ("sal", 2)], seeds=[0, 1], epochs=2, batch_size=16, lr=0.05, hidden=8, **kw)


def test_run_all_records_and_summary():
    records = ex.run_all(small_grid(), Toy(), progress=False, device="cpu")
    assert [r["label"] for r in records] == ["BP", "BP", "SAL-2", "SAL-2"]
    assert len(records[0]["history"]) == 2 and records[0]["parameters"]["total"] == 8 * 8 + 8 + 8 * 3 + 3
    json.dumps(records)  # JSON-serialisable
    table = ex.summarize(records)
    assert list(table["label"]) == ["BP", "SAL-2"] and list(table["seeds"]) == [2, 2]
    accs = [100 * r["final"]["val_accuracy"] for r in records[:2]]
    assert table["val_accuracy_pct_mean"][0] == pytest.approx(sum(accs) / 2)
    curves = ex.curves_frame(records)
    assert len(curves) == 8 and set(curves["epoch"]) == {1, 2}
    occ = ex.occupancy_frame(records)
    assert set(occ["method"]) == {"sal"} and occ.groupby("seed")["samples"].sum().tolist() == [32, 32]


def test_store_resumes_and_skips_finished_runs(tmp_path, monkeypatch):
    configs = small_grid()
    first = ex.run_all(configs[:3], Toy(), store=tmp_path, progress=False, device="cpu")
    assert len(list(tmp_path.glob("*.json"))) == 3 and not list(tmp_path.glob(".tmp-*"))
    calls = []
    real = ex.run_one
    monkeypatch.setattr(ex, "run_one", lambda c, *a, **k: calls.append(c) or real(c, *a, **k))
    again = ex.run_all(configs, Toy(), store=tmp_path, progress=False, device="cpu")
    assert calls == [configs[3]]  # only the missing run was computed
    assert [r["history"] for r in again[:3]] == [r["history"] for r in first]
    fresh = ex.run_all(configs, Toy(), progress=False, device="cpu")
    assert [r["history"] for r in fresh] == [r["history"] for r in again]  # resumed == uninterrupted


def test_store_ignores_other_versions_and_corrupt_files(tmp_path, monkeypatch):
    c = small_grid()[0]
    ex.run_all([c], Toy(), store=tmp_path, progress=False, device="cpu")
    path = tmp_path / c.filename()
    path.write_text(path.read_text()[:50])  # a truncated file is never read as complete
    assert ex.load_stored(tmp_path, c) is None
    ex.run_all([c], Toy(), store=tmp_path, progress=False, device="cpu")  # rewritten whole
    assert ex.load_stored(tmp_path, c) is not None
    old_key = c.key()
    monkeypatch.setattr(ex, "RESULTS_VERSION", "other")
    assert c.key() != old_key and ex.load_stored(tmp_path, c) is None


def test_config_key_depends_on_every_field():
    base = ex.make_config("digits", "sal", areas=4)
    variants = [
        ex.make_config("mnist", "sal", areas=4), ex.make_config("digits", "sal", areas=8),
        ex.make_config("digits", "sal", areas=4, seed=1), ex.make_config("digits", "sal", areas=4, lr=1e-3),
        ex.make_config("digits", "sal", areas=4, options={"divisor": "sum"}),
    ]
    assert len({base.key(), *[v.key() for v in variants]}) == 6
    assert base.label == "SAL-4" and ex.make_config("d", "moe", areas=2).label == "MoE-2"
