"""Property-based tests of the SAL layer and net (hypothesis): random shapes,
K, batch sizes and labels never crash except with the documented errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import salrepro
from salrepro.kernels.dispatch import Groups
from salrepro.method.sal import AreaLayer, area_forward


@settings(max_examples=60, deadline=None)
@given(n_in=st.integers(1, 20), n_out=st.integers(1, 20), K=st.integers(1, 8), B=st.integers(1, 40),
       classes=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_area_forward_equals_per_sample_reference(n_in, n_out, K, B, classes, seed):
    torch.manual_seed(seed)
    layer = AreaLayer(n_in, n_out, K, classes, seed=seed)
    x = torch.randn(B, n_in)
    out = layer(x)
    assert out.shape == (B, n_out) and torch.isfinite(out).all()
    areas = layer.route(x)[0] if K > 1 else torch.zeros(B, dtype=torch.long)
    assert ((0 <= areas) & (areas < K)).all()
    ref = torch.stack([layer.weight[k] @ x[i] + layer.bias[k] for i, k in enumerate(areas.tolist())])
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(n_in=st.integers(1, 12), hidden=st.integers(1, 12), K=st.integers(1, 6), depth=st.integers(2, 5),
       B=st.integers(1, 24), classes=st.integers(2, 5), divisor=st.sampled_from(["batch", "area", "sum"]),
       seed=st.integers(0, 10_000))
def test_sal_step_on_random_shapes(n_in, hidden, K, depth, B, classes, divisor, seed):
    model = salrepro.build_model("sal", n_in, classes, hidden=hidden, depth=depth, num_areas=K, seed=seed, divisor=divisor)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, n_in, generator=g), torch.randint(0, classes, (B,), generator=g)
    frozen = {k: v.clone() for k, v in model.named_buffers()}
    loss = model.train_step(x, y, 1e-2)
    assert math.isfinite(loss) and loss >= 0
    assert all(torch.equal(v, frozen[k]) for k, v in model.named_buffers())
    assert model(x).shape == (B, classes)
    for areas in model.route(x).values():
        assert areas.shape == (B,) and int(areas.max()) < K


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 10), n_in=st.integers(1, 6), bad=st.sampled_from(["label_high", "label_neg", "width", "ndim"]))
def test_bad_batches_raise_only_the_documented_error(B, n_in, bad):
    model = salrepro.build_model("sal", n_in, 3, hidden=4, num_areas=2)
    x, y = torch.zeros(B, n_in), torch.zeros(B, dtype=torch.long)
    if bad == "label_high":
        y[0] = 3
    elif bad == "label_neg":
        y[-1] = -1
    elif bad == "width":
        x = torch.zeros(B, n_in + 1)
    else:
        x = torch.zeros(n_in)
    with pytest.raises(ValueError, match=r"^(x|y): "):
        model.train_step(x, y, 0.1)


@settings(max_examples=50, deadline=None)
@given(method=st.sampled_from(["bp", "sal", "moe", "dfa", "fa", "other"]), num_areas=st.integers(-2, 5),
       depth=st.integers(-1, 4), hidden=st.integers(-1, 4))
def test_build_model_accepts_or_names_the_argument(method, num_areas, depth, hidden):
    try:
        model = salrepro.build_model(method, 5, 3, hidden=hidden, depth=depth, num_areas=num_areas)
    except ValueError as e:
        assert str(e).split(":")[0] in ("method", "num_areas", "depth", "hidden")
    else:
        assert len(model.layers) == depth


@settings(max_examples=40, deadline=None)
@given(k=st.lists(st.integers(0, 7), min_size=1, max_size=50))
def test_groups_are_a_stable_partition(k):
    areas = k  # k_i of each sample
    a = torch.tensor(areas)
    g = Groups.of(a, 8)
    assert g.counts.tolist() == [areas.count(k) for k in range(8)]
    assert torch.equal(a[g.order], torch.sort(a, stable=True).values)
    assert torch.equal(g.order[g.inverse], torch.arange(len(areas)))
    w, b = torch.randn(8, 3, 2), torch.randn(8, 3)
    x = torch.randn(len(areas), 2)
    ref = torch.stack([w[k] @ x[i] + b[k] for i, k in enumerate(areas)])
    torch.testing.assert_close(area_forward(x, w, b, g), ref)
