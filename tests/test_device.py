"""Device-dependent code on the device of `--device` (default cpu): dispatch paths, the batched
engine and the training loop. `benchmarks/device_check.py` runs these on a GPU."""

import pytest
import torch

import salrepro
from salrepro.kernels import dispatch
from salrepro import runs as ex
from salrepro.engine.batched import BATCHES
from salrepro.kernels.dispatch import Groups

pytestmark = pytest.mark.device


def _models(method, ks, device, n_in=20, classes=5, hidden=16, depth=2):
    return [salrepro.build_model(method, n_in, classes, hidden=hidden, depth=depth, num_areas=k, seed=s, device=device)
            for s, k in enumerate(ks)]


def test_area_accumulate_on_the_device_equals_the_per_sample_sum(device):
    g = torch.Generator().manual_seed(0)
    areas = torch.randint(0, 6, (40,), generator=g).to(device)
    x, d = torch.randn(40, 16, generator=g).to(device), torch.randn(40, 8, generator=g).to(device)
    W, b = torch.randn(9, 8, 16, generator=g).to(device), torch.randn(9, 8, generator=g).to(device)
    refW, refb = W.clone(), b.clone()
    groups = Groups.of(areas, 9)
    dispatch.area_accumulate_(W, b, d, dispatch.sort_by_area(x, groups), groups, alpha=-0.5)
    refW.index_add_(0, areas, torch.einsum("bo,bi->boi", d, x), alpha=-0.5)
    refb.index_add_(0, areas, d, alpha=-0.5)
    torch.testing.assert_close(W, refW, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b, refb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method, ks", [("sal", [1, 2, 16, 4]), ("bp", [1, 1, 1]), ("moe", [4, 4]), ("salbp", [1, 4, 8])])
@pytest.mark.parametrize("depth", [2, 4])
def test_batched_step_on_the_device_equals_each_model_alone_on_cpu(device, method, ks, depth):
    lone = _models(method, ks, "cpu", depth=depth)
    net = BATCHES[type(lone[0])](_models(method, ks, device, depth=depth))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(len(ks), 12, 20, generator=g), torch.randint(0, 5, (len(ks), 12), generator=g)
    for _ in range(3):
        losses = net.train_step(x.to(device), y.to(device), 0.05).cpu()
        for i, m in enumerate(lone):
            assert losses[i].item() == pytest.approx(m.train_step(x[i], y[i], 0.05), rel=1e-4, abs=1e-5)
    after = _models(method, ks, "cpu", depth=depth)
    net.load_into(after)
    for a, m in zip(after, lone):
        for pa, pm in zip(a.parameters(), m.parameters()):
            torch.testing.assert_close(pa, pm, rtol=1e-3, atol=1e-4)


def test_run_all_on_the_device_trains_and_records(device, tmp_path):
    data = salrepro.load_dataset("digits")
    configs = [ex.make_config("digits", m, num_areas=k, seed=0, epochs=1, batch_size=64, lr=0.01, hidden=32)
               for m, k in (("bp", 1), ("sal", 4), ("moe", 2), ("salbp", 2))]
    records = ex.run_all(configs, data, store=tmp_path, device=str(device), progress=False)
    assert all(r["history"] and 0 <= r["final"]["val_accuracy"] <= 1 for r in records)
    assert all(r["device"].startswith(device.type) for r in records)
