"""blas.py: all areas in one MKL call equals one torch matmul per area."""

import pytest
import torch

import salrepro
from salrepro.kernels import blas
from salrepro.kernels.dispatch import Groups

pytestmark = pytest.mark.skipif(blas._gemm_batch() is None, reason="torch built without MKL: the torch path is used")


def sorted_rows(K, n, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    areas = torch.randint(0, K, (n,), generator=g)
    areas[areas == 1] = 2  # area 1 gets no sample
    groups = Groups.of(areas, K)
    return torch.randn(n, width, generator=g).index_select(0, groups.order), groups


def per_area(counts):
    starts = torch.cumsum(counts, 0) - counts
    return [(k, int(s), int(s + c)) for k, (s, c) in enumerate(zip(starts, counts)) if c > 0]


def test_area_matmul_equals_one_matmul_per_area():
    K, out, inp = 5, 7, 12
    xs, groups = sorted_rows(K, 40, inp)
    W = torch.randn(K, out, inp)
    ys = blas.area_matmul(xs, W, groups)
    for k, s, e in per_area(groups.counts):
        torch.testing.assert_close(ys[s:e], xs[s:e] @ W[k].T, rtol=1e-6, atol=1e-6)


def test_area_accumulate_updates_present_areas_only():
    K, out, inp = 5, 7, 12
    xs, groups = sorted_rows(K, 40, inp, seed=1)
    ds = torch.randn(xs.shape[0], out)
    W = torch.randn(K, out, inp)
    before = W.clone()
    blas.area_accumulate(W, ds, xs, groups, alpha=-0.3)
    for k, s, e in per_area(groups.counts):
        torch.testing.assert_close(W[k], before[k] - 0.3 * ds[s:e].T @ xs[s:e], rtol=1e-6, atol=1e-6)
    assert groups.counts[1] == 0 and torch.equal(W[1], before[1])  # bit-identical, not merely close


def test_weights_stored_in_out_give_the_same_products():
    """The batched engine keeps routed layers' areas as (K, in, out) storage (`blas.in_out`): the forward
    product and the update equal those on (K, out, in) storage, and the update reaches the same storage."""
    K, out, inp = 5, 7, 12
    xs, groups = sorted_rows(K, 40, inp, seed=2)
    W = torch.randn(K, out, inp)
    V = W.transpose(1, 2).contiguous().transpose(1, 2)  # the same values, (K, in, out) underneath
    assert blas.in_out(V) and not blas.in_out(W) and torch.equal(V, W)
    torch.testing.assert_close(blas.area_matmul(xs, V, groups), blas.area_matmul(xs, W, groups), rtol=1e-6, atol=1e-6)
    ds = torch.randn(xs.shape[0], out)
    blas.area_accumulate(W, ds, xs, groups, alpha=-0.3)
    blas.area_accumulate(V, ds, xs, groups, alpha=-0.3)
    torch.testing.assert_close(V, W, rtol=1e-6, atol=1e-6)
    assert groups.counts[1] == 0 and torch.equal(V[1], W[1])  # the empty area untouched in both


def test_usable_only_where_the_call_is_valid_and_pays():
    W, x = torch.randn(blas.MIN_AREAS, 3, 4), torch.randn(5, 4)
    assert blas.usable(W, x)
    assert not blas.usable(W[:-1].contiguous(), x)  # too few areas: torch's calls cost no more
    assert not blas.usable(W.double(), x.double())
    assert not blas.usable(W, x.T.contiguous().T)  # not contiguous
    assert blas.usable(W.transpose(1, 2).contiguous().transpose(1, 2), x)  # (K, in, out) storage
    assert not blas.usable(W[:, :, :2], x[:, :2])  # neither layout
    w = W.clone().requires_grad_()
    assert not blas.usable(w, x)  # autograd: the MoE baseline keeps torch's grouped_mm
    with torch.no_grad():
        assert blas.usable(w, x)


def test_usable_for_fewer_areas_when_each_is_large():
    x = torch.randn(5, blas.LARGE_AREA)
    assert blas.usable(torch.randn(blas.MIN_LARGE_AREAS, 1, blas.LARGE_AREA), x)
    assert not blas.usable(torch.randn(blas.MIN_LARGE_AREAS - 1, 1, blas.LARGE_AREA), x)
    assert not blas.usable(torch.randn(blas.MIN_LARGE_AREAS, 1, blas.LARGE_AREA - 1), x[:, 1:].contiguous())


def test_present_areas_are_those_with_samples():
    areas = torch.tensor([3, 0, 3, 3, 5, 0])
    present, rows, starts = Groups.of(areas, 7).present
    assert present.tolist() == [0, 3, 5] and rows.tolist() == [2, 3, 1] and starts.tolist() == [0, 2, 5]


def test_sal_training_with_and_without_blas_agrees(monkeypatch):
    x = torch.rand(64, 10, generator=torch.Generator().manual_seed(0))
    y = torch.arange(64) % 4

    def losses():
        model = salrepro.build_model("sal", 10, 4, hidden=16, depth=4, num_areas=4, seed=2)
        return [model.train_step(x, y, 0.1) for _ in range(5)], model

    monkeypatch.setattr(blas, "MIN_AREAS", 1)  # a single small model takes the MKL path here
    with_blas, m1 = losses()
    monkeypatch.setattr(blas, "_gemm_batch", lambda: None)
    without, m2 = losses()
    torch.testing.assert_close(torch.tensor(with_blas), torch.tensor(without), rtol=1e-5, atol=1e-6)
    for a, b in zip(m1.layers, m2.layers):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)
