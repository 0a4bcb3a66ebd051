"""The training loop (train.py)."""

import pytest
import torch

import salrepro


def toy_data(n_train=120, n_val=40, n_in=16, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, n_in, generator=g) * 2
    y = torch.randint(0, classes, (n_train + n_val,), generator=g)
    x = centers[y] + torch.randn(n_train + n_val, n_in, generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@pytest.mark.parametrize("method, K", [("sal", 4), ("bp", 1), ("moe", 2), ("fa", 1)])
def test_history_fields_and_learning(method, K):
    model = salrepro.build_model(method, 16, 3, hidden=32, num_areas=K, seed=0)
    history = salrepro.train(model, toy_data(), epochs=4, batch_size=16, lr=0.05, seed=0, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "occupancy"}
    assert history[-1]["val_accuracy"] > 0.8 and history[-1]["train_loss"] < history[0]["train_loss"]
    if K > 1:
        assert set(history[0]["occupancy"]) == {0}
        assert len(history[0]["occupancy"][0]) == K and sum(history[0]["occupancy"][0]) == 40
    else:
        assert history[0]["occupancy"] == {}


def test_same_seed_is_bitwise_identical_and_seed_matters():
    def run(seed):
        model = salrepro.build_model("sal", 16, 3, hidden=32, depth=3, num_areas=4, seed=seed)
        return salrepro.train(model, toy_data(), epochs=3, batch_size=8, lr=0.05, seed=seed, progress=False)

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_train_loss_is_taken_before_each_update():
    data = toy_data()
    model = salrepro.build_model("bp", 16, 3, hidden=8, seed=0)
    twin = salrepro.build_model("bp", 16, 3, hidden=8, seed=0)
    x, y = data[0], data[1]
    with torch.no_grad():
        first = float(torch.nn.functional.cross_entropy(twin(x), y))
    history = salrepro.train(model, data, epochs=1, batch_size=120, lr=0.1, seed=0, progress=False)
    assert history[0]["train_loss"] == pytest.approx(first, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(epochs=-1), "epochs: must be an integer >= 0"),
        (dict(batch_size=0), "batch_size: must be an integer in 1..120"),
        (dict(batch_size=121), "batch_size: must be an integer in 1..120"),
        (dict(lr=0.0), "lr: must be a number > 0"),
    ],
)
def test_bad_training_arguments(kwargs, needle):
    args = dict(epochs=1, batch_size=16, lr=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        salrepro.train(salrepro.build_model("bp", 16, 3, hidden=4), toy_data(), seed=0, progress=False, **args)


def test_bad_data_argument():
    with pytest.raises(ValueError, match="data: expected a salrepro Dataset"):
        salrepro.train(salrepro.build_model("bp", 16, 3, hidden=4), "digits", epochs=1, batch_size=4, lr=0.1)


def test_progress_bar_shows_when_asked(capsys):
    salrepro.train(salrepro.build_model("bp", 16, 3, hidden=4), toy_data(), epochs=2, batch_size=60, lr=0.1, progress=True)
    assert "bp K=1" in capsys.readouterr().err
    salrepro.train(salrepro.build_model("bp", 16, 3, hidden=4), toy_data(), epochs=2, batch_size=60, lr=0.1)
    assert capsys.readouterr().err == ""  # not a terminal: off


def test_keep_freed_memory_applies_once_and_can_be_turned_off(monkeypatch):
    import platform

    from salrepro.engine.train import keep_freed_memory

    keep_freed_memory.cache_clear()
    monkeypatch.setenv("SALREPRO_MALLOC", "system")
    assert keep_freed_memory() is False  # left alone
    keep_freed_memory.cache_clear()
    monkeypatch.delenv("SALREPRO_MALLOC")
    applied = keep_freed_memory()
    assert applied is (platform.libc_ver()[0] == "glibc")  # glibc takes both settings; elsewhere nothing is done
    assert keep_freed_memory() is applied  # once per process
