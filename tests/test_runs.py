"""Runs: their identity, the store, the planner, training a grid and the result tables (salrepro/runs/)."""

import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch

import salrepro
from salrepro import runs as ex
from salrepro.engine.batched import train_many
from salrepro.data import load_dataset


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
    configs = small_grid()  # two batches: bp x2 and sal x2
    assert ex.plan_batches(configs) == [[0, 1], [2, 3]]
    uninterrupted = ex.run_all(configs, Toy(), progress=False, device="cpu")
    real = ex.run_batch
    calls = []

    def dies_in_second_batch(chosen, *a, **k):
        calls.append([c.method for c in chosen])
        if chosen[0].method == "sal":
            raise KeyboardInterrupt  # killed mid-sweep
        return real(chosen, *a, **k)

    monkeypatch.setattr(ex.run, "run_batch", dies_in_second_batch)
    with pytest.raises(KeyboardInterrupt):
        ex.run_all(configs, Toy(), store=tmp_path, progress=False, device="cpu")
    assert len(list(tmp_path.glob("*.json"))) == 2 and not list(tmp_path.glob(".tmp-*"))
    calls.clear()
    monkeypatch.setattr(ex.run, "run_batch", lambda chosen, *a, **k: calls.append([c.method for c in chosen]) or real(chosen, *a, **k))
    resumed = ex.run_all(configs, Toy(), store=tmp_path, progress=False, device="cpu")
    assert calls == [["sal", "sal"]]  # the finished batch was not recomputed
    assert [r["history"] for r in resumed] == [r["history"] for r in uninterrupted]  # identical, not just close
    assert [r["final"] for r in resumed] == [r["final"] for r in uninterrupted]


@pytest.mark.parametrize("method, K, depth", [("sal", 1, 2), ("sal", 4, 2), ("bp", 1, 2), ("moe", 1, 2), ("moe", 4, 2),
                                             ("bp", 1, 4), ("sal", 4, 4)])
def test_batched_equals_alone_on_digits(method, K, depth):
    """The batched runner's history equals training each model alone (1e-5),
    for the shallow net and the residual one (depth 4)."""
    data = salrepro.load_dataset("digits")
    configs = [ex.make_config("digits", method, num_areas=K, depth=depth, seed=s, epochs=2, batch_size=16, lr=0.01, hidden=64)
               for s in range(3)]
    together = ex.run_batch(configs, data, device="cpu")
    for c, rec in zip(configs, together):
        alone = ex.run_one(c, data, device="cpu")
        assert rec["batched_with"] == 3 and alone["batched_with"] == 1
        for h_b, h_a in zip(rec["history"], alone["history"]):
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert h_b[key] == pytest.approx(h_a[key], rel=1e-5)
            assert h_b["occupancy"] == h_a["occupancy"]


@pytest.mark.skipif(salrepro.kernels.blas._gemm_batch() is None, reason="torch built without MKL")
@pytest.mark.parametrize("depth", [2, 4])
def test_batched_on_the_mkl_path_equals_alone(monkeypatch, depth):
    """Batched SAL with one MKL call for all (model, area) pairs (blas.py)
    equals each model trained alone by torch's per-area calls (1e-5)."""
    monkeypatch.setattr(salrepro.kernels.blas, "MIN_AREAS", 5)  # the batch (3 x 4 areas) takes MKL, a lone model (4) does not
    data = salrepro.load_dataset("digits")
    configs = [ex.make_config("digits", "sal", num_areas=4, depth=depth, seed=s, epochs=2, batch_size=16, lr=0.01, hidden=64)
               for s in range(3)]
    for c, rec in zip(configs, ex.run_batch(configs, data, device="cpu")):
        alone = ex.run_one(c, data, device="cpu")
        for h_b, h_a in zip(rec["history"], alone["history"]):
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert h_b[key] == pytest.approx(h_a[key], rel=1e-5)


def test_routed_layers_of_a_cpu_batch_keep_their_areas_in_out():
    """Stacked on a CPU, a routed layer of several models stores its areas as (rows, in, out) (blas.in_out),
    the output layer as (rows, out, in) (without MKL's path, both as (rows, out, in)); a lone model's weights
    are its own, not a copy; the trained weights go back into each model."""
    from salrepro.engine.batched import BatchedSAL
    from salrepro.kernels import blas

    models = [salrepro.build_model("sal", 8, 3, hidden=16, num_areas=k, seed=s) for s, k in enumerate([1, 4, 2])]
    net = BatchedSAL(models)
    assert blas.in_out(net.layers[0].weight) == blas.available() and net.layers[1].weight.is_contiguous()
    with torch.no_grad():
        net.layers[0].weight.add_(1.0)
    net.load_into(models)
    assert torch.equal(models[1].layers[0].weight, net.layers[0].weight[1:5])
    lone = salrepro.build_model("sal", 8, 3, hidden=16, num_areas=4, seed=0)
    assert BatchedSAL([lone]).layers[0].weight.data_ptr() == lone.layers[0].weight.data_ptr()


def test_batched_finite_flags_exactly_the_models_with_a_nan_or_inf():
    from salrepro.engine.batched import BatchedSAL

    net = BatchedSAL([salrepro.build_model("sal", 8, 3, hidden=16, num_areas=k, seed=s)
                      for s, k in enumerate([1, 4, 2, 4, 2])])  # first-layer area rows: 0 | 1-4 | 5-6 | 7-10 | 11-12
    assert net.finite().tolist() == [True] * 5
    with torch.no_grad():
        net.layers[0].weight[3, 2, 1] = float("nan")  # model 1
        net.layers[0].weight[6, 0, 0] = float("inf")  # model 2
        net.layers[1].bias[3, 0] = -float("inf")  # model 3 (output layer: one row per model)
    assert net.finite().tolist() == [True, False, False, False, True]


def test_sal_batches_mix_k_and_respect_the_weight_budget():
    configs = ex.grid("mnist", [("bp", 1), ("sal", 1), ("sal", 16), ("moe", 2), ("moe", 4), ("fa", 1)], seeds=[0, 1])
    batches = [[configs[i].label for i in b] for b in ex.plan_batches(configs, max_bytes=1e9)]
    assert ["SAL-1", "SAL-1", "SAL-16", "SAL-16"] in batches and ["MoE-2", "MoE-2"] in batches
    assert ["FA"] in batches and batches.count(["FA"]) == 2  # fa trains alone
    small = ex.plan_batches(configs, max_bytes=ex.weight_bytes(configs[0]) * 2.5)
    assert all(len(b) <= 2 for b in small)


def test_models_larger_than_the_budget_batch_only_with_each_other():
    # SAL-1 and SAL-16 share a batch key (SAL mixes K); SAL-16 alone outgrows the budget
    configs = ex.grid("semeion", [("sal", 16), ("sal", 1)], seeds=[0, 1, 2], depth=8)  # K16 s0-2, K1 s0-2
    large, small = ex.weight_bytes(configs[0]), ex.weight_bytes(configs[3])
    assert small * 4 < large
    budget = large / 2  # the three SAL-1 fit in it, no SAL-16 does
    assert ex.plan_batches(configs, max_bytes=budget, large_bytes=2.5 * large) == [[0, 1], [2], [3, 4, 5]]
    assert ex.plan_batches(configs, max_bytes=budget, large_bytes=large) == [[0], [1], [2], [3, 4, 5]]


def test_store_ignores_other_versions_and_corrupt_files(tmp_path, monkeypatch):
    c = small_grid()[0]
    ex.run_all([c], Toy(), store=tmp_path, progress=False, device="cpu")
    path = tmp_path / c.filename()
    path.write_text(path.read_text()[:50])  # a truncated file is never read as complete
    assert ex.load_stored(tmp_path, c) is None
    ex.run_all([c], Toy(), store=tmp_path, progress=False, device="cpu")  # rewritten whole
    assert ex.load_stored(tmp_path, c) is not None
    old_key = c.key()
    monkeypatch.setattr(ex.keys, "RESULTS_VERSION", "other")
    assert c.key() != old_key and ex.load_stored(tmp_path, c) is None


def test_config_key_depends_on_every_field():
    base = ex.make_config("digits", "sal", num_areas=4)
    variants = [
        ex.make_config("mnist", "sal", num_areas=4), ex.make_config("digits", "sal", num_areas=8),
        ex.make_config("digits", "sal", num_areas=4, seed=1), ex.make_config("digits", "sal", num_areas=4, lr=1e-3),
        ex.make_config("digits", "sal", num_areas=4, options={"divisor": "sum"}),
        ex.make_config("digits", "sal", num_areas=4, data_options={"digits_scale": "raw"}),
        *[ex.make_config("digits", "sal", num_areas=4, data_options={"input_norm": m}) for m in ("unit", "standard", "global")],
    ]
    assert len({base.key(), *[v.key() for v in variants]}) == 10
    assert base.label == "SAL-4" and ex.make_config("d", "moe", num_areas=2).label == "MoE-2"


def test_every_run_names_its_input_map_default_or_not():
    base = ex.make_config("digits", "bp")
    assert dict(base.data_options) == {"digits_scale": "unit", "input_norm": "pm1", "split": "official"}
    assert ex.make_config("digits", "bp", data_options={"input_norm": "pm1"}).key() == base.key()  # default == explicit
    with pytest.raises(ValueError, match="input_norm"):
        ex.make_config("digits", "bp", data_options={"input_norm": "zscore"})
    data = load_dataset("digits", input_norm="unit")
    c = ex.make_config("digits", "bp", hidden=8, epochs=1, batch_size=64, data_options={"input_norm": "unit"})
    record = ex.run_one(c, data, device="cpu")
    assert record["config"]["data_options"] == {"digits_scale": "unit", "input_norm": "unit", "split": "official"}
    assert ex.runs_frame([record])["input_norm"].tolist() == ["unit"]


def test_runs_under_unit_keep_the_keys_they_had_before_input_norm_existed():
    """The committed pre-calibration records (results/cpu, inputs in [0, 1]) are found again under
    input_norm="unit"; under any other map the same configuration is another run."""
    from pathlib import Path
    records = [p for p in sorted(Path("results/cpu/protocol_study/digits/runs").glob("*.json"))
               if "input_norm" not in json.loads(p.read_text())["config"].get("data_options", {})]  # written before it existed
    if not records:
        pytest.skip("no committed pre-calibration records in this checkout")
    for path in records[:: max(1, len(records) // 20)]:
        r = json.loads(path.read_text())
        c = dict(r["config"])
        stored_options = c.pop("data_options", {})
        c["num_areas"] = c.pop("areas")  # K, as the stored format names it
        kw = dict(dataset=c.pop("dataset"), method=c.pop("method"), options=c.pop("options"), **c)
        unit = ex.make_config(data_options={**stored_options, "input_norm": "unit"}, **kw)
        assert unit.key() == r["key"] and unit.filename() == path.name
        assert ex.make_config(data_options={**stored_options, "input_norm": "pm1"}, **kw).key() != r["key"]


@pytest.mark.parametrize("depth, method, options", [(2, "sal", {}), (4, "sal", {}), (2, "salbp", {}), (4, "salbp", {}),
                                                     (2, "sal", {"router_width": 5}), (4, "salbp", {"router_width": 5})])
def test_a_batch_mixing_every_k_equals_each_model_alone(depth, method, options):
    """Every Table 2/3 number comes from one batch that mixes SAL-1..16: its models' areas are padded to
    the largest K, and a padded area must never receive a sample (routing masks it). With a router width
    r != C, each model's frozen readout is stacked with it."""
    data = salrepro.load_dataset("digits")
    configs = [ex.make_config("digits", method, num_areas=K, depth=depth, seed=s, epochs=2, batch_size=16, lr=0.01, hidden=64,
                              options=options)
               for K, s in ((2, 0), (16, 0), (1, 1), (8, 2), (4, 3), (2, 4))]
    assert len(ex.plan_batches(configs)) == 1  # all trained together
    for c, rec in zip(configs, ex.run_batch(configs, data, device="cpu")):
        alone = ex.run_one(c, data, device="cpu")
        for h_b, h_a in zip(rec["history"], alone["history"]):
            assert h_b["occupancy"] == h_a["occupancy"]  # same samples in the same areas, none in a padded one
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert h_b[key] == pytest.approx(h_a[key], rel=1e-5)


def test_a_diverged_seed_is_kept_out_of_its_group_mean():
    """A group holding a finished and a diverged seed: the mean and std are the finished seeds' alone."""

    def record(seed, acc, diverged):  # the diverged seed's last numbers are finite: only its flag keeps it out
        final = {"val_accuracy": acc, "train_loss": 0.5, "val_loss": 0.6}
        return {"config": {"dataset": "digits", "method": "sal", "areas": 4, "depth": 2, "hidden": 8, "seed": seed,
                           "lr": 0.1, "epochs": 3, "batch_size": 16, "options": {}, "data_options": {"input_norm": "pm1"}},
                "label": "SAL-4", "final": final, "parameters": {"total": 1, "active": 1}, "seconds": 1.0,
                "diverged": 2 if diverged else None, "history": []}

    s = ex.summarize([record(0, 0.40, False), record(1, 0.9, True), record(2, 0.50, False)])
    assert len(s) == 1
    row = s.iloc[0]
    assert row["seeds"] == 2 and row["diverged"] == 1
    assert row["val_accuracy_pct_mean"] == pytest.approx(45.0) and row["val_accuracy_pct_std"] == pytest.approx(50 ** 0.5)


# ---------------------------------------------------------------------------
# Learning-rate grids train together (one lr per stacked model)
# ---------------------------------------------------------------------------
LR_GRID = (1e-4, 1e-3, 1e-2, 3e-2)


def _digits_models(data, method, ks, options):
    return [salrepro.build_model(method, data.in_features, data.num_classes, hidden=64, num_areas=k, seed=s, **options)
            for s, k in enumerate(ks)]


# SAL with feedback_scale 5 and the area divisor is chaotic for a routed model at lr 3e-2 (measured: a 1e-7
# relative change of its lr alone moves its epoch-2 val loss by 3e-3), so no float reordering can match it to
# 1e-5; there the largest lr goes to the one-area model, stable under it.
@pytest.mark.parametrize("method, ks, options", [
    ("sal", (1, 4, 16, 4), {}),
    ("sal", (4, 16, 4, 1), {"divisor": "area", "feedback_scale": 5.0, "router_width": 32}),
    ("bp", (1, 1, 1, 1), {}),
    ("moe", (4, 4, 4, 4), {}),
    ("salbp", (1, 4, 16, 4), {}),
])
def test_a_stacked_lr_grid_equals_each_run_alone(method, ks, options):
    """N models at N learning rates, trained together (one (N,) lr tensor per step), equal each model
    trained alone at its own lr: histories to 1e-5, same occupancy, and the final weights."""
    data = salrepro.load_dataset("digits")
    together = _digits_models(data, method, ks, options)
    histories = train_many(together, data, epochs=2, batch_size=16, lr=list(LR_GRID), seeds=range(len(ks)))
    for i, alone in enumerate(_digits_models(data, method, ks, options)):
        history = salrepro.train(alone, data, epochs=2, batch_size=16, lr=LR_GRID[i], seed=i, progress=False)
        assert len(histories[i]) == len(history) == 2 and not any(h.get("diverged") for h in history)
        for h_b, h_a in zip(histories[i], history):
            assert h_b["occupancy"] == h_a["occupancy"]
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert h_b[key] == pytest.approx(h_a[key], rel=1e-5)
        for p_b, p_a in zip(together[i].parameters(), alone.parameters()):
            torch.testing.assert_close(p_b, p_a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method, ks", [("sal", (1, 4, 16)), ("bp", (1, 1, 1)), ("moe", (4, 4, 4)), ("salbp", (1, 4, 16))])
def test_equal_learning_rates_take_the_scalar_path_bit_for_bit(monkeypatch, method, ks):
    """A list of equal lrs is the one-number path: every step gets a float, and weights and
    histories are bitwise those of lr given as one number."""
    import salrepro.engine.batched as b

    data = salrepro.load_dataset("digits")
    small = (data.x_train[:64], data.y_train[:64], data.x_val[:32], data.y_val[:32])  # 4 steps
    seen = []
    cls = b.BATCHES[type(_digits_models(data, method, ks[:1], {})[0])]
    real = cls.train_step
    monkeypatch.setattr(cls, "train_step", lambda self, x, y, lr: seen.append(type(lr)) or real(self, x, y, lr))
    runs = []
    for lr in (0.01, [0.01] * len(ks), (0.01,) * len(ks)):
        models = _digits_models(data, method, ks, {})
        runs.append((train_many(models, small, epochs=1, batch_size=16, lr=lr, seeds=range(len(ks))), models))
    assert set(seen) == {float} and len(seen) == 12
    (h0, m0), *others = runs
    for h, models in others:
        assert h == h0
        for a, c in zip(models, m0):
            assert all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_configurations_differing_only_in_lr_train_together():
    configs = [ex.make_config("digits", m, num_areas=k, seed=s, epochs=2, hidden=16, lr=lr)
               for m, k in (("sal", 4), ("bp", 1), ("moe", 2), ("salbp", 2)) for s in (0, 1) for lr in LR_GRID]
    assert ex.plan_batches(configs) == [list(range(i, i + 8)) for i in range(0, 32, 8)]  # one batch per method
    assert len({ex.batch_key(c) for c in configs[:8]}) == 1
    assert ex.batch_key(configs[0]) != ex.batch_key(ex.make_config("digits", "sal", num_areas=4, epochs=2, hidden=16,
                                                                   batch_size=32))  # the batch size still splits
    mixed = ex.grid("digits", [("sal", 1), ("sal", 16)], seeds=[0], hidden=16) + \
        ex.grid("digits", [("sal", 1), ("sal", 16)], seeds=[0], hidden=16, lr=1e-2)
    assert ex.plan_batches(mixed) == [[0, 1, 2, 3]]


def test_a_run_batch_over_an_lr_grid_records_each_runs_own_lr():
    data = salrepro.load_dataset("digits")
    configs = [ex.make_config("digits", "sal", num_areas=k, seed=s, epochs=1, batch_size=32, lr=lr, hidden=32)
               for s, (k, lr) in enumerate(((1, 1e-3), (4, 1e-2), (2, 3e-2)))]
    assert len(ex.plan_batches(configs)) == 1
    for c, rec in zip(configs, ex.run_batch(configs, data, device="cpu")):
        alone = ex.run_one(c, data, device="cpu")
        assert rec["config"]["lr"] == c.lr and rec["key"] == alone["key"] and rec["batched_with"] == 3
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert rec["final"][key] == pytest.approx(alone["final"][key], rel=1e-5)


@pytest.mark.parametrize("lr, match", [([0.01, 0.02], r"one per model \(3\), got 2"), ([0.01] * 4, "got 4"),
                                       ([0.01, -1.0, 0.02], r"got -1\.0 \(the lr of model 1 of 3\)"),
                                       ([0.01, float("nan"), 0.02], "model 1 of 3"),
                                       ([0.01, True, 0.02], "model 1 of 3"), ([0.01, "0.1", 0.02], "model 1 of 3"),
                                       (0.0, "lr: must be a number > 0"), (None, "lr: must be a number > 0")])
def test_a_bad_lr_list_is_refused(lr, match):
    data = salrepro.load_dataset("digits")
    models = [salrepro.build_model("sal", 64, 10, hidden=8, num_areas=2, seed=s) for s in range(3)]
    with pytest.raises(ValueError, match=match):
        train_many(models, data, epochs=1, batch_size=16, lr=lr, seeds=range(3))


def test_an_lr_grid_resumes_from_its_checkpoint_and_ignores_another_grids(tmp_path, monkeypatch):
    import salrepro.engine.batched as b

    data = salrepro.load_dataset("digits")
    models = lambda: [salrepro.build_model("sal", 64, 10, hidden=16, num_areas=k, seed=s) for s, k in enumerate((1, 4, 2))]
    lrs = [1e-3, 1e-2, 3e-2]
    run = lambda lr, **kw: train_many(models(), data, epochs=3, batch_size=64, lr=lr, seeds=[0, 1, 2], **kw)
    whole, ckpt = run(lrs), tmp_path / "batch.pt"
    real_save = b._save

    def save_then_die(path, epoch, *a, **kw):
        real_save(path, epoch, *a, **kw)
        raise KeyboardInterrupt  # killed right after the epoch-1 checkpoint

    monkeypatch.setattr(b, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(lrs, checkpoint=ckpt)
    monkeypatch.setattr(b, "_save", real_save)
    other = [1e-3, 1e-2, 1e-2]  # same seeds and shapes, another grid: its checkpoint is not this run's
    assert run(other, checkpoint=ckpt) == run(other)
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(b, "_save", save_then_die)
        run(lrs, checkpoint=ckpt)
    saves = []
    monkeypatch.setattr(b, "_save", lambda path, epoch, *a, **kw: saves.append(epoch) or real_save(path, epoch, *a, **kw))
    assert run(lrs, checkpoint=ckpt) == whole and saves == [2]  # resumed after epoch 1


def test_the_split_option_names_a_run_only_when_it_is_not_the_default():
    """`split` came after the committed results: the official split keeps every key it had (a record
    written before it existed is found again), the tuning split is another run."""
    base = ex.make_config("digits", "bp")
    legacy = ex.RunConfig(**{**base.__dict__, "data_options": (("digits_scale", "unit"), ("input_norm", "pm1"))})
    assert legacy.key() == base.key()
    tuning = ex.make_config("digits", "bp", data_options={"split": "tuning"})
    assert tuning.key() != base.key() and dict(tuning.data_options)["split"] == "tuning"
    unit = ex.make_config("digits", "bp", data_options={"input_norm": "unit"})
    unit_tuning = ex.make_config("digits", "bp", data_options={"input_norm": "unit", "split": "tuning"})
    assert unit.key() != unit_tuning.key()


def test_a_record_names_the_commit_that_made_it():
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(ex.__file__).resolve().parents[3]
    c = ex.make_config("digits", "bp", hidden=8, epochs=1, batch_size=256)
    version = ex.run_one(c, load_dataset("digits"), device="cpu")["version"]
    if shutil.which("git") is None or not (root / ".git").exists():
        assert version["commit"] is None
        return
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert version["commit"] == head and isinstance(version["dirty"], bool)


MEASURE = """
import sys, threading, time, torch, salrepro
from pathlib import Path
from salrepro import runs as ex
from salrepro.engine.batched import train_many
torch.set_num_threads(1)
rss = lambda: int(Path("/proc/self/statm").read_text().split()[1]) * 4096
method, k, width, depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
data = (x[:192], y[:192], x[192:], y[192:])
train_many([salrepro.build_model(method, 64, 10, num_areas=k, depth=3, hidden=8)], data, epochs=1, batch_size=16,
           lr=1e-3, seeds=[0], device="cpu")  # kernels warmed up before the baseline
peak, done = [0], [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
base = rss()
t = threading.Thread(target=sample)
t.start()
model = salrepro.build_model(method, 64, 10, num_areas=k, depth=depth, hidden=width)
train_many([model], data, epochs=2, batch_size=16, lr=1e-3, seeds=[0], device="cpu")
done[0] = True
t.join()
c = ex.make_config("digits", method, num_areas=k, depth=depth, hidden=width, epochs=1, batch_size=16)
print(peak[0] - base, ex.training_bytes([c], val_rows=64))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc (Linux)")
@pytest.mark.parametrize("shape", [("sal", 4, 2048, 6), ("bp", 1, 2048, 8)])
def test_the_memory_estimate_is_within_30_percent_of_the_measured_peak(shape):
    """A model alone (the widest nets train alone): the resident memory it adds while it is built and
    trained, sampled every 2 ms in a fresh process, against runs.training_bytes (measured 0.99-1.02
    of the estimate for these shapes, twice each, on the 2-core Intel machine of 2026-12-05)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", MEASURE, *map(str, shape)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    measured, estimated = map(float, run.stdout.split())
    assert 0.7 <= measured / estimated <= 1.3, (measured, estimated)


def test_a_batch_that_cannot_fit_is_refused_before_any_allocation(monkeypatch, tmp_path):
    c = ex.make_config("digits", "sal", num_areas=4, depth=64, hidden=4096, epochs=1, batch_size=16)
    assert ex.tensor_bytes(c) > 4e9 * 4  # the paper's widest net: over 16 GB of float32 tensors
    with pytest.raises(ex.SetupError, match=r"SAL-4 depth 64 width 4096: needs about 1[78]\.\d GB to train "
                                            r"\(1[67]\.\d GB of tensors\), 8\.0 GB free now"):
        ex.check_fits([c], available=8e9)
    ex.check_fits([c], available=64e9)  # fits: nothing raised
    monkeypatch.setattr(ex.plan, "available_bytes", lambda: 8e9)
    monkeypatch.setattr(ex.run, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(ex.SetupError, match="free now"):
        ex.run_all([c], load_dataset("digits"), store=tmp_path, device="cpu")
    assert not list(tmp_path.glob("*.json"))


def test_the_widest_nets_never_batch_with_another():
    wide = [ex.make_config("semeion", m, num_areas=k, depth=64, hidden=w, seed=s, epochs=25, batch_size=16)
            for m, k in (("sal", 4), ("bp", 1)) for w in (2048, 4096) for s in range(3)]
    batches = ex.plan_batches(wide)
    assert all(len(b) == 1 for b in batches if ex.weight_bytes(wide[b[0]]) > ex.MAX_LARGE_BATCH_BYTES["cpu"] / 2)
    assert sorted(i for b in batches for i in b) == list(range(len(wide)))


def test_the_large_net_path_end_to_end_at_a_tiny_width(monkeypatch, tmp_path):
    """A model alone trains in its own tensors (no stacked copy), writes sparse checkpoints when writing
    one is slow, resumes from them, and records its step time and peak memory; its history equals the
    plain loop's."""
    from salrepro.engine import batched

    c = ex.make_config("digits", "sal", num_areas=4, depth=4, hidden=32, epochs=4, batch_size=64,
                       options={"divisor": "area", "feedback_scale": 5.0, "router_width": 32})
    data = load_dataset("digits")
    model = ex.run._model(c, data, torch.device("cpu"))
    net = batched.BATCHES[type(model)]([model])
    assert all(L.weight.data_ptr() == layer.weight.data_ptr() for L, layer in zip(net.layers, model.layers))
    saves = []
    real_save = batched._save

    def slow_save(path, epoch, *args, **kw):
        saves.append(epoch)
        real_save(path, epoch, *args, **kw)
        time.sleep(0.05)  # a slow disk: each write costs more than a tenth of an epoch here

    monkeypatch.setattr(batched, "_save", slow_save)
    monkeypatch.setattr(batched, "CHECKPOINT_SECONDS", 0.0)
    record = ex.run_all([c], data, store=tmp_path, device="cpu")[0]
    assert saves and len(saves) < c.epochs - 1  # not at every epoch end
    alone = ex.run_one(c, data, device="cpu")
    for a, b in zip(record["history"], alone["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) and a["val_accuracy"] == b["val_accuracy"]
    res = record["resources"]
    assert res["step_seconds"] > 0 and res["peak_memory_bytes"] > 1e8


def test_a_resolved_device_is_accepted_as_it_is():
    """run_one(device=torch.device('cpu')) (what the benchmarks pass) resolves like 'cpu'."""
    assert ex.resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ex.SetupError, match="devices here"):
        ex.resolve_device(torch.device("cuda:7") if not torch.cuda.is_available() else "tpu")


@pytest.mark.parametrize("method", ["sal", "moe", "salbp", "dfa", "fa"])
def test_every_option_changes_the_run_key(method):
    """Each option of each method (models.OPTIONS, init included), set to a value other than its default,
    names another run: no stored record of one reading can be reused for another."""
    from salrepro.method.models import COMMON_OPTIONS, OPTIONS

    other = {"divisor": "sum", "feedback_scale": 2.5, "feedback_dist": "sign", "router_width": 7, "prototype_norm": "none",
             "selector_lr_scale": 0.5, "balance_coef": 0.0, "init": "torch_default"}
    base = ex.make_config("digits", method, num_areas=1 if method in ("dfa", "fa") else 4)
    options = {**OPTIONS[method], "init": COMMON_OPTIONS["init"]}
    for name in options:
        assert other[name] != options[name]
        changed = ex.make_config("digits", method, num_areas=base.num_areas, options={name: other[name]})
        assert changed.key() != base.key(), name


def test_moe_has_its_balance_term_on_by_default():
    from salrepro.method.models import OPTIONS

    assert OPTIONS["moe"]["balance_coef"] == 0.01
    assert salrepro.build_model("moe", 64, 10, hidden=16, num_areas=4).balance_coef == 0.01


def test_atomic_writes_leave_no_temporary_and_give_a_plain_file_s_mode(tmp_path):
    """Run records, metrics and params.yaml are written through a private temporary (mkstemp: 0o600); the
    file that lands must have the mode open() would give it (0o644 under umask 022), or `salrepro profile`
    would leave params.yaml unreadable to the user's group."""
    import math
    import os

    old = os.umask(0o022)
    try:
        ex.write_json_atomic(tmp_path / "runs" / "r.json", {"loss": float("nan"), "acc": 0.5})
        ex.write_text_atomic(tmp_path / "params.yaml", "profile: quick\n")
    finally:
        os.umask(old)
    for path in (tmp_path / "runs" / "r.json", tmp_path / "params.yaml"):
        assert path.stat().st_mode & 0o777 == 0o644
    assert math.isnan(json.loads((tmp_path / "runs" / "r.json").read_text())["loss"])
    assert (tmp_path / "params.yaml").read_text() == "profile: quick\n"
    assert not list(tmp_path.rglob(".tmp-*"))


def test_unstable_runs_are_those_that_diverged_end_above_ln_c_or_blow_up():
    """runs.unstable, on records whose answer is known (3 classes: ln 3 = 1.10)."""
    def record(losses, diverged=None):
        return {"config": {"dataset": "digits"}, "diverged": diverged,
                "history": [{"train_loss": v} for v in losses], "final": {"train_loss": losses[-1]}}

    assert not ex.unstable(record([2.0, 1.0, 0.5]))
    assert ex.unstable(record([2.0, 1.0, 0.5], diverged=3))
    assert ex.unstable(record([2.6, 2.5, 2.4]))  # above ln(10) = 2.30: Digits has ten classes
    assert ex.unstable(record([2.0, 0.4, 0.81]))  # more than twice its best epoch's
    assert not ex.unstable(record([2.0, 0.4, 0.79]))
    assert ex.unstable(record([2.0, 1.0, float("nan")]))


def test_tensor_bytes_counts_every_tensor_exactly_feedback_included():
    """Digits (64 inputs, 10 classes), hidden 5, the shallow net, by hand: SAL-4's areas 4 x 5 x 64 + 4 x 5,
    its router 10 x 64 (router width: the class count) and frozen prototypes 10 x 4, its frozen feedback
    10 x 5, the output layer 10 x 5 + 10; DFA (one area) has no router but the same feedback. Leaving
    the frozen tensors out (feedback matrices included) lets a net through the memory check that does not fit."""
    sal = ex.make_config("digits", "sal", num_areas=4, hidden=5)
    dfa = ex.make_config("digits", "dfa", hidden=5)
    assert ex.tensor_bytes(sal) == 4.0 * (4 * 5 * 64 + 4 * 5 + 10 * 64 + 10 * 4 + 10 * 5 + 10 * 5 + 10)
    assert ex.tensor_bytes(dfa) == 4.0 * (5 * 64 + 5 + 10 * 5 + 10 * 5 + 10)
    assert ex.weight_bytes(dfa) == 4.0 * (5 * 64 + 5 + 10 * 5 + 10)  # trained weights only


def test_a_sweep_over_any_setting_is_never_averaged_across_it():
    """Two batch sizes, two seeds each, through the runner: two rows of two seeds, not one row of four
    (summarize groups by every setting but the seed); the same for an option with no preset's name."""
    configs = [dataclasses.replace(c, batch_size=b) for b in (8, 16) for c in small_grid() if c.method == "bp"]
    table = ex.summarize(ex.run_all(configs, Toy(), progress=False, device="cpu"))
    assert sorted(zip(table["batch_size"], table["seeds"])) == [(8, 2), (16, 2)]
    custom = [ex.make_config("toy", "sal", num_areas=2, hidden=8, seed=s, epochs=1, batch_size=16, lr=0.05,
                             options={"feedback_scale": f}) for f in (2.0, 3.0) for s in (0, 1)]
    t = ex.summarize(ex.run_all(custom, Toy(), progress=False, device="cpu"))
    assert list(t["reading"]) == ["custom", "custom"] and list(t["seeds"]) == [2, 2]
