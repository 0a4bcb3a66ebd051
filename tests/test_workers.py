"""Small batches trained side by side in worker processes (engine/workers.py, runs.run_all)."""

import dataclasses

import pytest
import torch

from salrepro import runs as ex
from salrepro.engine import workers as pool
from salrepro.method.models import method_of
from test_runs import Toy  # the tiny dataset the runner's tests train on

needs_fork = pytest.mark.skipif(not pool.available(), reason="workers fork: Linux only")


def grid():
    return ex.grid("toy", [("bp", 1), ("sal", 1), ("sal", 2), ("sal", 4)], seeds=[0, 1, 2], epochs=2, batch_size=16,
                   lr=0.05, hidden=8)


def test_workers_split_the_large_groups_evenly_and_keep_every_run():
    configs = grid()
    one = ex.plan_batches(configs, max_bytes=1e9)
    assert [[configs[i].label for i in b] for b in one] == [["BP"] * 3, ["SAL-1"] * 3 + ["SAL-2"] * 3 + ["SAL-4"] * 3]
    two = ex.plan_batches(configs, max_bytes=1e9, workers=2)
    assert sorted(i for b in two for i in b) == list(range(len(configs)))
    # a budget that needs three batches of SAL: rounded up to four, a multiple of the workers
    budget = sum(ex.weight_bytes(c) for c in configs[3:]) / 2.5
    assert len(ex.plan_batches(configs[3:], max_bytes=budget, workers=2)) == 4
    assert len(ex.plan_batches(configs[:1], max_bytes=1e9, workers=2)) == 1  # never more batches than models
    halves = configs[:6]  # BP and SAL-1, 3 seeds each: each holds more than 1 / (2 x workers) of the time
    assert sorted(len(b) for b in ex.plan_batches(halves, max_bytes=1e9, workers=2)) == [1, 1, 2, 2]


def test_the_split_balances_estimated_time_with_the_whole_batches_beside_it():
    """The Digits Table 2 grid: BP's 5 seeds train whole (a small share of the time), SAL's 25 models in
    two batches whose times differ by BP's: each worker gets about half."""
    configs = ex.grid("digits", [("bp", 1), ("sal", 1), ("sal", 2), ("sal", 4), ("sal", 8), ("sal", 16)],
                      seeds=range(5), epochs=25, batch_size=16, hidden=256)
    batches = ex.plan_batches(configs, max_bytes=32e6, workers=2)
    assert [[configs[i].method for i in b] for b in batches if configs[b[0]].method == "bp"] == [["bp"] * 5]
    sal = sorted((ex.batch_seconds([configs[i] for i in b]) for b in batches if configs[b[0]].method == "sal"))
    bp = ex.batch_seconds(configs[:5])
    assert len(sal) == 2 and bp < 0.5 * sum(sal) / 2
    assert abs(sal[1] - (sal[0] + bp)) <= max(map(ex.train_seconds, configs))  # within one model of each other
    # without BP beside them, SAL's halves take equal time
    alone = [ex.batch_seconds([configs[i] for i in b]) for b in ex.plan_batches(configs[5:], max_bytes=32e6, workers=2)]
    assert len(alone) == 2 and abs(alone[0] - alone[1]) <= max(map(ex.train_seconds, configs))
    # more batches than workers (MNIST's SAL, 125 MB in 32 MB batches): of about equal bytes, as the pool
    # hands them out as workers come free, the whole BP batch last
    mnist = [dataclasses.replace(c, dataset="mnist") for c in configs]
    sal = [sum(ex.weight_bytes(mnist[i]) for i in b) for b in ex.plan_batches(mnist, max_bytes=32e6, workers=2)
           if mnist[b[0]].method == "sal"]
    assert len(sal) == 4 and max(sal) - min(sal) <= max(map(ex.weight_bytes, mnist))


def test_the_time_estimate_grows_with_areas_models_and_data():
    c = ex.RunConfig("mnist", "sal", 16, hidden=256, epochs=1, batch_size=16)
    k1, bp = ex.RunConfig("mnist", "sal", 1, hidden=256, epochs=1, batch_size=16), ex.RunConfig("mnist", "bp", 1, hidden=256, epochs=1, batch_size=16)
    assert ex.train_seconds(c) > ex.train_seconds(k1) and ex.train_seconds(bp) > ex.train_seconds(k1)  # autograd moves more bytes
    assert ex.batch_seconds([c, c]) == pytest.approx(ex.batch_seconds([c]) + ex.train_seconds(c))
    assert ex.batch_seconds([k1]) < ex.batch_seconds([bp]) < ex.batch_seconds([c])  # routed > autograd > dense layers
    assert ex.steps_of(ex.RunConfig("mnist", "sal", 1, epochs=2, batch_size=16)) == 2 * 3750
    assert ex.train_seconds(ex.RunConfig("digits", "sal", 16, hidden=256, epochs=1, batch_size=16)) < ex.train_seconds(c)


def test_models_above_the_budget_never_go_to_the_workers():
    configs = ex.grid("semeion", [("sal", 4)], seeds=[0, 1], depth=8, hidden=64) + grid()
    budget = ex.weight_bytes(configs[0]) / 2  # the two deep nets are large, the toy nets small
    batches = ex.plan_batches(configs, max_bytes=budget, large_bytes=1e12, workers=2)
    assert [0, 1] in batches  # the large ones together, planned as before


@needs_fork
def test_runs_in_workers_equal_runs_here_and_land_in_the_store(tmp_path):
    configs = grid()
    here = ex.run_all(configs, Toy(), progress=False, device="cpu", workers=1)
    there = ex.run_all(configs, Toy(), store=tmp_path, progress=False, device="cpu", workers=2)
    assert len(list(tmp_path.glob("*.json"))) == len(configs) and not list(tmp_path.glob(".ckpt-*"))
    for a, b in zip(here, there):
        assert a["key"] == b["key"] and "1 thread" in b["device"]
        for h_a, h_b in zip(a["history"], b["history"]):
            assert h_a["occupancy"] == h_b["occupancy"]
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert h_b[key] == pytest.approx(h_a[key], rel=1e-5)
    again = ex.run_all(configs, Toy(), store=tmp_path, progress=False, device="cpu", workers=2)
    assert [r["history"] for r in again] == [r["history"] for r in there]  # read back, not retrained


@needs_fork
def test_the_progress_of_every_worker_reaches_the_caller():
    seen = []
    results = dict(pool.run(lambda t, report: [report(1) for _ in range(t)] and t * 10, [3, 1, 2], 2, seen.append))
    assert results == {3: 30, 1: 10, 2: 20} and sum(seen) == 6


@needs_fork
def test_an_error_in_a_worker_is_raised_in_the_caller(monkeypatch):
    def fails(chosen, *a, **k):
        raise RuntimeError(f"no {chosen[0].label}")

    monkeypatch.setattr(ex.run, "run_batch", fails)  # the forked workers inherit it
    with pytest.raises(RuntimeError, match="no "):
        ex.run_all(grid(), Toy(), progress=False, device="cpu", workers=2)


def test_the_number_of_workers_is_checked(monkeypatch):
    with pytest.raises(ValueError, match="workers"):
        ex.run_all(grid(), Toy(), progress=False, device="cpu", workers=0)
    monkeypatch.setenv("SALREPRO_WORKERS", "two")
    with pytest.raises(ValueError, match="SALREPRO_WORKERS"):
        pool.default_workers(torch.device("cpu"))
    monkeypatch.setenv("SALREPRO_WORKERS", "3")
    assert pool.default_workers(torch.device("cpu")) == (3 if pool.available() else 1)
    monkeypatch.delenv("SALREPRO_WORKERS")
    assert pool.default_workers(torch.device("cpu")) == (torch.get_num_threads() if pool.available() else 1)
    assert pool.default_workers(torch.device("meta")) == 1


def test_the_batch_budget_follows_the_last_level_cache_up_to_32_mb():
    assert ex.cpu_batch_bytes(32 * 2**20) == 16 * 2**20  # the AMD EPYC: its measured 16 MB
    assert ex.cpu_batch_bytes(40 * 2**20) == 20 * 2**20
    # a VM reports its host's cache: 504 MB on the Intel Xeon, where 32 MB batches ran fastest
    assert ex.cpu_batch_bytes(504 * 2**20) == 32e6 and ex.cpu_batch_bytes(2**20) == 16e6
    cache = ex.last_level_cache_bytes()
    assert cache is None or cache > 2**16


def test_moe_and_salbp_keep_their_own_smaller_budget():
    configs = ex.grid("mnist", [("moe", 16), ("salbp", 4), ("sal", 16)], seeds=range(5))
    for workers in (1, 2):
        batches = ex.plan_batches(configs, max_bytes=256e6, workers=workers)
        for b in batches:
            size = sum(ex.weight_bytes(configs[i]) for i in b)
            if method_of(configs[b[0]].method).autograd_areas:
                assert size <= ex.AUTOGRAD_AREA_BATCH_BYTES
        assert sum(configs[b[0]].method == "sal" for b in batches) == workers  # SAL-16 x5 (64 MB) fills the big budget
    on_a_gpu = ex.plan_batches(configs, max_bytes=256e6, autograd_bytes=None)
    assert [len(b) for b in on_a_gpu] == [5, 5, 5]


def test_a_machines_own_cache_and_cores_would_plan_other_batches(monkeypatch):
    """Why the profile states the plan: the Digits grid planned from each machine's own budget (its cache,
    cpu_batch_bytes) and cores comes out in other batches on each, so a chaotic run's numbers would
    follow the machine. (The next test: with the profile's plan, they do not.)"""
    configs = ex.grid("mnist", [("bp", 1), ("sal", 1), ("sal", 4), ("sal", 16)], seeds=range(5), epochs=25,
                      batch_size=16, hidden=256)
    machines = ((32 * 2**20, 1), (504 * 2**20, 1), (32 * 2**20, 2), (504 * 2**20, 2))  # (last-level cache, cores)
    plans = {str(ex.plan_batches(configs, ex.cpu_batch_bytes(cache), workers=cores)) for cache, cores in machines}
    assert len(plans) == 4


def test_the_same_profile_plans_the_same_batches_on_machines_with_different_caches(monkeypatch):
    """run_all with the profile's plan: the same batches, recorded in each run, whatever the machine's
    own budget (monkeypatched: what its cache would give) and workers."""
    configs = grid()
    plan = ex.Plan(1e9, 4e9, 2)
    seen = []
    for budget, workers in ((16e6, 1), (64, 1)):  # a 64-byte budget would put every model alone
        monkeypatch.setitem(ex.MAX_BATCH_BYTES, "cpu", budget)
        records = ex.run_all(configs, Toy(), progress=False, device="cpu", workers=workers, plan=plan)
        seen.append([(r["batch"]["id"], r["batch"]["models"]) for r in records])
        assert all(r["batch"]["plan"] == {"batch_mb": 1000.0, "large_batch_mb": 4000.0, "workers": 2} for r in records)
    assert seen[0] == seen[1] and len({b for b, _ in seen[0]}) < len(configs)


@needs_fork
def test_results_arriving_out_of_order_land_under_their_own_keys(tmp_path, monkeypatch):
    """The pool hands back batches in whatever order they finish: forced here to the reverse of
    submission, every record must still be its own configuration's, in memory and in the store."""
    real = pool.run

    def reversed_run(fn, tasks, workers, on_progress):
        yield from reversed(list(real(fn, tasks, workers, on_progress)))

    monkeypatch.setattr(pool, "run", reversed_run)
    configs = grid()
    records = ex.run_all(configs, Toy(), store=tmp_path, progress=False, device="cpu", workers=2,
                         plan=ex.Plan(ex.weight_bytes(configs[3]) * 2, 4e9, 2))  # several batches per group
    assert [r["key"] for r in records] == [c.key() for c in configs]
    for c in configs:
        assert ex.read_record(tmp_path / c.filename())["key"] == c.key()
    alone = ex.run_all(configs, Toy(), progress=False, device="cpu", workers=1)
    for r, a in zip(records, alone):
        assert r["final"]["val_accuracy"] == pytest.approx(a["final"]["val_accuracy"], abs=0.02)


def test_a_batch_trains_each_model_from_its_own_seed():
    """Seeds given out of order in one batch: each model's history is its own seed's, as trained alone
    (and two seeds differ, so a permuted batch would be caught)."""
    configs = [dataclasses.replace(c, seed=s) for c, s in zip(grid()[3:6], (2, 0, 1))]  # SAL-1, seeds 2, 0, 1
    together = ex.run_all(configs, Toy(), progress=False, device="cpu", workers=1)
    alone = ex.run_all(configs, Toy(), progress=False, device="cpu", workers=1, batched=False)
    for t, a in zip(together, alone):
        assert [h["train_loss"] for h in t["history"]] == pytest.approx([h["train_loss"] for h in a["history"]], rel=1e-5)
    assert together[0]["history"][-1]["train_loss"] != together[1]["history"][-1]["train_loss"]
