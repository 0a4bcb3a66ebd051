"""dispatch.py: grouping by area and the per-area products, every path against a plain per-sample loop."""

import pytest
import torch

from salrepro.kernels import blas, dispatch
from salrepro.kernels.dispatch import Groups


def _problem(seed=0, groups=9, rows=30, n_in=8, n_out=4):
    g = torch.Generator().manual_seed(seed)
    areas = torch.randint(0, groups - 3, (rows,), generator=g)  # the last three groups get no sample
    return (areas, torch.randn(rows, n_in, generator=g), torch.randn(rows, n_out, generator=g),
            torch.randn(groups, n_out, n_in, generator=g), torch.randn(groups, n_out, generator=g))


def test_groups_of_stacked_models_number_each_models_areas_after_the_previous_ones():
    areas = torch.tensor([[0, 1, 1], [2, 0, 2]])
    stacked = Groups.of(areas, 5, torch.tensor([0, 2]))  # model 0 has 2 areas, model 1 has 3
    flat = Groups.of(torch.tensor([0, 1, 1, 4, 2, 4]), 5)
    for name in ("k", "order", "inverse", "counts", "offsets"):
        assert torch.equal(getattr(stacked, name), getattr(flat, name))


def test_area_matmul_equals_per_sample_products():
    areas, x, _, W, _ = _problem()
    groups = Groups.of(areas, W.shape[0])
    ys = dispatch.area_matmul(dispatch.sort_by_area(x, groups), W, groups).index_select(0, groups.inverse)
    torch.testing.assert_close(ys, torch.stack([W[k] @ xi for k, xi in zip(areas, x)]))


@pytest.mark.parametrize("path", ["loop", "grouped", "blas"])
def test_area_accumulate_every_path_equals_the_per_sample_sum_and_leaves_empty_groups_alone(monkeypatch, path):
    if path == "blas" and blas._gemm_batch() is None:
        pytest.skip("torch built without MKL")
    if path == "grouped" and not dispatch._HAS_GROUPED_MM:
        pytest.skip("torch without grouped_mm")
    monkeypatch.setattr(dispatch, "accumulate_path", lambda *a: path)
    areas, x, delta, W, b = _problem(1)
    W0, b0 = W.clone(), b.clone()
    groups = Groups.of(areas, W.shape[0])
    dispatch.area_accumulate_(W, b, delta, dispatch.sort_by_area(x, groups), groups, alpha=-0.5)
    refW, refb = W0.clone(), b0.clone()
    for k, d, xi in zip(areas, delta, x):
        refW[k] -= 0.5 * torch.outer(d, xi)
        refb[k] -= 0.5 * d
    torch.testing.assert_close(W, refW)
    torch.testing.assert_close(b, refb)
    assert torch.equal(W[-3:], W0[-3:]) and torch.equal(b[-3:], b0[-3:])


def test_accumulate_path_is_the_loop_for_a_small_cpu_layer():
    _, x, delta, W, _ = _problem()
    assert dispatch.accumulate_path(W, delta, x) == "loop"


def test_dense_and_accumulate_run_stacked_models_as_each_alone():
    g = torch.Generator().manual_seed(2)
    x, W, b, d = (torch.randn(3, 5, 4, generator=g), torch.randn(3, 6, 4, generator=g),
                  torch.randn(3, 6, generator=g), torch.randn(3, 5, 6, generator=g))
    stacked = dispatch.dense(x, W, b)
    for m in range(3):
        torch.testing.assert_close(stacked[m], dispatch.dense(x[m], W[m : m + 1], b[m : m + 1]))
    alone = W.clone()
    dispatch.accumulate_(W, d, x, alpha=0.1)
    for m in range(3):
        dispatch.accumulate_(alone[m], d[m], x[m], alpha=0.1)
    torch.testing.assert_close(W, alone)
