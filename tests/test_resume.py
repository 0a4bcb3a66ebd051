"""Interruption, resumption and divergence: nothing finished is lost, nothing
half-written is read, a resumed sweep equals an uninterrupted one."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import salrepro
from salrepro import runs as ex
from salrepro.engine.batched import train_many

SWEEP = textwrap.dedent("""
    import sys
    import salrepro
    from salrepro import runs as ex
    configs = ex.grid("digits", [("bp", 1), ("sal", 4), ("moe", 2), ("moe", 4)], seeds=[0, 1],
                      epochs=4, batch_size=16, lr=0.01, hidden=64)
    ex.run_all(configs, salrepro.load_dataset("digits", cache=False), store=sys.argv[1], device="cpu", progress=False)
""")


def run_files(store):
    """The stored run records (not a killed writer's temporary)."""
    return {p.name: p.read_bytes() for p in store.glob("*.json") if not p.name.startswith(".tmp-")}


def test_sigkill_mid_sweep_then_rerun_equals_uninterrupted(tmp_path):
    store = tmp_path / "runs"
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    proc = subprocess.Popen([sys.executable, str(script), str(store)], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and len(run_files(store)) < 2:  # the first batch (bp x2) is stored
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = run_files(store)
    assert 2 <= len(before) < 8, "kill it mid-way: some batches done, some not"
    assert all(json.loads(b)["key"] for b in before.values())  # every stored file is complete
    subprocess.run([sys.executable, str(script), str(store)], check=True)
    after = run_files(store)
    assert len(after) == 8 and not list(store.glob(".ckpt-*")) and not list(store.glob(".tmp-*"))
    assert all(after[name] == data for name, data in before.items())  # finished runs were not recomputed
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, str(script), str(fresh)], check=True)
    for name, data in after.items():
        a, b = json.loads(data), json.loads((fresh / name).read_text())
        assert a["history"] == b["history"] and a["final"] == b["final"]  # identical, not close


def test_a_killed_writers_temporary_is_removed_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".tmp-{int(dead.stdout)}-abc.json"  # its writer has exited
    live = tmp_path / f".tmp-{os.getpid()}-def.json"  # this process: still writing
    old_style = tmp_path / ".tmp-xyz.json"
    for p in (stale, live, old_style):
        p.write_text("{")
    ex.remove_stale_temporaries(tmp_path)
    assert live.exists() and not stale.exists() and not old_style.exists()


def test_epoch_checkpoint_resumes_bitwise(tmp_path, monkeypatch):
    data = salrepro.load_dataset("digits")
    models = lambda: [salrepro.build_model("sal", 64, 10, hidden=32, num_areas=k, seed=s) for k, s in ((1, 0), (4, 1), (16, 2))]
    whole = train_many(models(), data, epochs=4, batch_size=32, lr=0.05, seeds=[0, 1, 2])
    ckpt = tmp_path / "batch.pt"
    import salrepro.engine.batched as b
    real_save, saves = b._save, []

    def save_then_die(path, epoch, *a, **kw):
        real_save(path, epoch, *a, **kw)
        saves.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt  # killed right after the epoch-2 checkpoint

    monkeypatch.setattr(b, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_many(models(), data, epochs=4, batch_size=32, lr=0.05, seeds=[0, 1, 2], checkpoint=ckpt)
    monkeypatch.setattr(b, "_save", real_save)
    resumed_models = models()
    resumed = train_many(resumed_models, data, epochs=4, batch_size=32, lr=0.05, seeds=[0, 1, 2], checkpoint=ckpt)
    assert saves == [1, 2] and resumed == whole
    final = models()
    train_many(final, data, epochs=4, batch_size=32, lr=0.05, seeds=[0, 1, 2])
    for m1, m2 in zip(resumed_models, final):
        assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_checkpoint_of_another_batch_is_ignored(tmp_path):
    data = salrepro.load_dataset("digits")
    ckpt = tmp_path / "batch.pt"
    mk = lambda seeds: [salrepro.build_model("bp", 64, 10, hidden=16, seed=s) for s in seeds]
    train_many(mk([0, 1]), data, epochs=2, batch_size=64, lr=0.05, seeds=[0, 1], checkpoint=ckpt)
    assert ckpt.exists()  # written at epoch 1 of 2
    other = train_many(mk([2, 3]), data, epochs=2, batch_size=64, lr=0.05, seeds=[2, 3], checkpoint=ckpt)
    alone = train_many(mk([2, 3]), data, epochs=2, batch_size=64, lr=0.05, seeds=[2, 3])
    assert other == alone


@pytest.mark.parametrize("method, K", [("sal", 4), ("bp", 1), ("moe", 2)])
def test_absurd_learning_rate_is_recorded_as_diverged(method, K):
    data = salrepro.load_dataset("digits")
    configs = [ex.make_config("digits", method, num_areas=K, seed=s, epochs=5, batch_size=16, lr=lr, hidden=32)
               for s, lr in ((0, 1e20), (1, 1e20))]
    sane = ex.make_config("digits", method, num_areas=K, seed=2, epochs=5, batch_size=16, lr=1e-2, hidden=32)
    records = [*ex.run_batch(configs, data, device="cpu"), ex.run_one(sane, data, device="cpu")]
    for r in records[:2]:
        assert r["diverged"] is not None and r["diverged"] <= 5
        assert r["history"][-1]["diverged"] and len(r["history"]) == r["diverged"]
        assert all(math.isnan(v) for v in r["final"].values())
    assert records[2]["diverged"] is None and len(records[2]["history"]) == 5
    table = ex.summarize(records, by=("dataset", "method", "areas", "lr"))
    assert list(table["diverged"]) == [2, 0] and list(table["seeds"]) == [0, 1]
    assert math.isnan(table["val_accuracy_pct_mean"][0])  # never averaged in silently


def test_plain_loop_stops_at_divergence():
    data = salrepro.load_dataset("digits")
    model = salrepro.build_model("fa", 64, 10, hidden=32, seed=0)
    history = salrepro.train(model, data, epochs=6, batch_size=16, lr=1e20, seed=0, progress=False)
    assert history[-1].get("diverged") and len(history) < 6


def test_a_resumed_batch_keeps_its_diverged_models_diverged(tmp_path, monkeypatch):
    """An lr grid where one model diverges at epoch 1: killed after the epoch-2 checkpoint and resumed,
    the diverged model stays diverged (its history stops at the epoch it diverged), as uninterrupted."""
    import salrepro.engine.batched as b

    data = salrepro.load_dataset("digits")
    models = lambda: [salrepro.build_model("bp", 64, 10, hidden=16, seed=s) for s in (0, 1)]  # noqa: E731
    lrs = [0.05, 1e20]  # the second blows up in its first epoch
    whole = train_many(models(), data, epochs=4, batch_size=16, lr=lrs, seeds=[0, 1])
    assert whole[1][-1].get("diverged") and len(whole[1]) < 4 and len(whole[0]) == 4
    ckpt, real_save = tmp_path / "batch.pt", b._save

    def save_then_die(path, epoch, *a, **kw):
        real_save(path, epoch, *a, **kw)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(b, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_many(models(), data, epochs=4, batch_size=16, lr=lrs, seeds=[0, 1], checkpoint=ckpt)
    monkeypatch.setattr(b, "_save", real_save)
    resumed = train_many(models(), data, epochs=4, batch_size=16, lr=lrs, seeds=[0, 1], checkpoint=ckpt)
    import json

    assert json.dumps(resumed) == json.dumps(whole)  # NaN losses compare equal as text


def test_a_resumed_run_counts_the_time_trained_before_it_stopped(tmp_path, monkeypatch):
    """The checkpoint carries the seconds trained so far: a run resumed after epoch 2 of 3 reports them
    (`resumed_seconds`), and its record's `seconds` includes them, not only the last epoch's."""
    import time

    import salrepro.engine.batched as b

    data = salrepro.load_dataset("digits")
    models = lambda: [salrepro.build_model("bp", 64, 10, hidden=16, seed=0)]  # noqa: E731
    ckpt, real_save = tmp_path / "batch.pt", b._save
    slow_step = b.BatchedBP.train_step

    def slow(self, *a):
        time.sleep(0.002)  # 90 steps an epoch: about 0.2 s of training each
        return slow_step(self, *a)

    def save_then_die(path, epoch, *a, **kw):
        real_save(path, epoch, *a, **kw)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(b.BatchedBP, "train_step", slow)
    monkeypatch.setattr(b, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_many(models(), data, epochs=3, batch_size=16, lr=0.01, seeds=[0], checkpoint=ckpt)
    monkeypatch.setattr(b, "_save", real_save)
    stats: dict = {}
    train_many(models(), data, epochs=3, batch_size=16, lr=0.01, seeds=[0], checkpoint=ckpt, stats=stats)
    assert stats["resumed_seconds"] >= 2 * 90 * 0.002  # two epochs of steps, at least
    assert torch.load(ckpt, weights_only=False, mmap=True)["seconds"] == stats["resumed_seconds"]
