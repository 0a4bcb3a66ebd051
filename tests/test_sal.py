"""SAL layer and learning rule (sal.py) against an independent reference.

The reference below is written from docs/method.md alone, in float64, one
sample at a time with Python loops; it shares no code with salrepro.
"""

import math

import pytest
import torch

import salrepro
import salrepro.kernels.dispatch
from salrepro.method.sal import AreaLayer

torch.set_default_dtype(torch.float32)


# ---------------------------------------------------------------------------
# Reference: per-sample loops, float64
# ---------------------------------------------------------------------------
def _act(role, a):
    if role == "relu":
        return max(a, 0.0)
    if role == "residual":
        return math.tanh(a)
    return a


def _dact(role, a):
    if role == "relu":
        return 1.0 if a > 0 else 0.0
    if role == "residual":
        return 1.0 - math.tanh(a) ** 2
    return 1.0


def reference_step(layers, roles, x, y, lr, divisor, num_classes, selector_lr_scale=1.0):
    """One SAL step. `layers`: list of dicts of float64 tensors W (K,m,n),
    b (K,m), and optionally Wr (r,n), P (r,K), F (C,m). Returns new dicts.
    The selector learns at lr x selector_lr_scale."""
    B = x.shape[0]
    new = [{k: v.clone() for k, v in L.items()} for L in layers]
    records = []  # per sample: list of (input, area, pre-activation list, z)
    logits_all = []
    for i in range(B):
        h = [float(v) for v in x[i]]
        rec = []
        for L, role in zip(layers, roles):
            K, m, n = L["W"].shape
            z = None
            if "Wr" in L:
                r = L["Wr"].shape[0]
                z = [sum(float(L["Wr"][j, c]) * h[c] for c in range(n)) for j in range(r)]
                s = [sum(z[j] * float(L["P"][j, k]) for j in range(r)) for k in range(K)]
                area = max(range(K), key=lambda k: (s[k], -k))  # argmax, ties -> lowest
            else:
                area = 0
            a = [sum(float(L["W"][area, o, c]) * h[c] for c in range(n)) + float(L["b"][area, o]) for o in range(m)]
            rec.append((list(h), area, a, z))
            if role == "residual":
                h = [h[o] + _act(role, a[o]) for o in range(m)]
            else:
                h = [_act(role, a[o]) for o in range(m)]
        records.append(rec)
        logits_all.append(h)
    # global error per sample
    errors = []
    for i in range(B):
        mx = max(logits_all[i])
        ex = [math.exp(v - mx) for v in logits_all[i]]
        tot = sum(ex)
        errors.append([ex[c] / tot - (1.0 if c == int(y[i]) else 0.0) for c in range(num_classes)])
    for li, (L, role) in enumerate(zip(layers, roles)):
        K, m, n = L["W"].shape
        counts = [0] * K
        for i in range(B):
            counts[records[i][li][1]] += 1
        for i in range(B):
            h, area, a, z = records[i][li]
            e = errors[i]
            if "F" in L:
                fb = [sum(e[c] * float(L["F"][c, o]) for c in range(num_classes)) for o in range(m)]
            else:
                fb = list(e)
            delta = [fb[o] * _dact(role, a[o]) for o in range(m)]
            D = {"batch": B, "area": counts[area], "sum": 1}[divisor]
            for o in range(m):
                new[li]["b"][area, o] -= lr / D * delta[o]
                for c in range(n):
                    new[li]["W"][area, o, c] -= lr / D * delta[o] * h[c]
            if z is not None:  # selector: CE(z, y) on Wr alone
                mz = max(z)
                ez = [math.exp(v - mz) for v in z]
                tz = sum(ez)
                g = [ez[j] / tz - (1.0 if j == int(y[i]) else 0.0) for j in range(len(z))]
                Ds = 1 if divisor == "sum" else B
                for j in range(len(z)):
                    for c in range(n):
                        new[li]["Wr"][j, c] -= lr * selector_lr_scale / Ds * g[j] * h[c]
    return new


def as_reference(model):
    out = []
    for layer in model.layers:
        d = {"W": layer.weight.detach().double().clone(), "b": layer.bias.detach().double().clone()}
        if layer.router is not None:
            d["Wr"] = layer.router.detach().double().clone()
            d["P"] = layer.prototypes.double().clone()
        if layer.feedback is not None:
            d["F"] = layer.feedback.double().clone()
        out.append(d)
    return out


def batch(n_in, classes, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, n_in, generator=g), torch.randint(0, classes, (B,), generator=g)


@pytest.mark.parametrize("divisor", ["batch", "area", "sum"])
@pytest.mark.parametrize("K", [1, 4, 16])
@pytest.mark.parametrize("depth", [2, 4])
def test_one_step_matches_float64_reference(K, divisor, depth):
    n_in, C, hidden, B = 12, 5, 8, 24
    model = salrepro.build_model("sal", n_in, C, hidden=hidden, depth=depth, num_areas=K, seed=3, divisor=divisor)
    x, y = batch(n_in, C, B)
    lr = 0.5 if divisor != "sum" else 0.05
    ref = reference_step(as_reference(model), model.roles, x.double(), y, lr, divisor, C)
    before = [layer.weight.detach().clone() for layer in model.layers]
    model.train_step(x, y, lr)
    for layer, r, w0 in zip(model.layers, ref, before):
        torch.testing.assert_close(layer.weight.double(), r["W"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.bias.double(), r["b"], rtol=1e-5, atol=1e-6)
        if "Wr" in r:
            torch.testing.assert_close(layer.router.double(), r["Wr"], rtol=1e-5, atol=1e-6)
        assert not torch.equal(layer.weight.detach(), w0), "the step changed nothing: the test would prove nothing"


def test_reference_agrees_on_routing():
    model = salrepro.build_model("sal", 12, 5, hidden=8, num_areas=16, seed=1)
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(0))  # centred: routing spreads
    areas = model.route(x)[0]
    L = as_reference(model)[0]
    for i in range(40):
        s = (L["Wr"] @ x[i].double()) @ L["P"]
        assert int(areas[i]) == int(torch.argmax(s))
    assert len(set(areas.tolist())) > 3  # routing actually spreads samples


def test_frozen_tensors_never_change_and_empty_areas_are_untouched():
    model = salrepro.build_model("sal", 12, 5, hidden=8, depth=4, num_areas=16, seed=0)
    frozen = {k: v.clone() for k, v in model.named_buffers()}
    assert any("prototypes" in k for k in frozen) and any("feedback" in k for k in frozen)
    x, y = batch(12, 5, 6)
    routes = model.route(x)
    weights = {i: model.layers[i].weight.detach().clone() for i in routes}
    biases = {i: model.layers[i].bias.detach().clone() for i in routes}
    model.train_step(x, y, 0.5)
    for k, v in model.named_buffers():
        assert torch.equal(v, frozen[k]), k
    for i, areas in routes.items():
        used = set(areas.tolist())
        assert len(used) < 16
        for k in range(16):
            same = torch.equal(model.layers[i].weight[k], weights[i][k]) and torch.equal(model.layers[i].bias[k], biases[i][k])
            assert same == (k not in used), (i, k)


def test_routing_uses_the_router_before_the_step():
    """A large step moves the router enough to change routing; the update must
    still go to the areas chosen by the router as it was before the step
    (the float64 reference routes with the pre-step router)."""
    model = salrepro.build_model("sal", 12, 5, hidden=8, num_areas=4, seed=2)
    x, y = batch(12, 5, 32)
    ref = reference_step(as_reference(model), model.roles, x.double(), y, 5.0, "batch", 5)
    before = model.route(x)[0]
    model.train_step(x, y, 5.0)
    assert not torch.equal(before, model.route(x)[0])
    torch.testing.assert_close(model.layers[0].weight.double(), ref[0]["W"], rtol=1e-5, atol=1e-5)


def test_no_autograd_in_sal_or_dfa():
    for method, K in [("sal", 4), ("sal", 1), ("dfa", 1)]:
        model = salrepro.build_model(method, 12, 5, hidden=8, depth=4, num_areas=K)
        x, y = batch(12, 5, 8)
        model.train_step(x, y, 0.1)
        assert all(p.grad is None for p in model.parameters())
        assert not model(x).requires_grad


def test_forward_never_gathers_per_sample_weights(monkeypatch):
    """The forward dispatches groups: no (B, out, in) tensor is ever built."""
    model = salrepro.build_model("sal", 12, 5, hidden=8, num_areas=4)
    x, y = batch(12, 5, 64)
    seen = []
    real_index_select = torch.Tensor.index_select

    def spy(self, dim, index):
        out = real_index_select(self, dim, index)
        seen.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch.Tensor, "index_select", spy)
    model.train_step(x, y, 0.1)
    assert (64, 8, 12) not in seen and all(len(s) <= 2 for s in seen)


def test_layer_tensor_names_and_shapes():
    layer = AreaLayer(12, 8, 4, 5)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {"weight": (4, 8, 12), "bias": (4, 8), "router": (5, 12), "prototypes": (5, 4), "feedback": (5, 8)}
    torch.testing.assert_close(layer.prototypes.norm(dim=0), torch.ones(4))
    wide = AreaLayer(12, 8, 4, 5, router_width=7)
    assert tuple(wide.router.shape) == (7, 12) and tuple(wide.router_readout.shape) == (7, 5)
    model = salrepro.build_model("sal", 12, 5, hidden=8, num_areas=4)
    assert tuple(model.layers[-1].weight.shape) == (1, 5, 8) and model.layers[-1].feedback is None


def test_router_width_option_trains():
    model = salrepro.build_model("sal", 12, 5, hidden=8, num_areas=4, router_width=3, prototype_norm="none")
    x, y = batch(12, 5, 16)
    r0 = model.layers[0].router.detach().clone()
    losses = [model.train_step(x, y, 0.5) for _ in range(20)]
    assert losses[-1] < losses[0]
    assert not torch.equal(r0, model.layers[0].router)


def test_selector_learns_to_separate_classes():
    """Eq. (9): trained on its own loss, z becomes a class score."""
    model = salrepro.build_model("sal", 12, 3, hidden=8, num_areas=4, seed=0)
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 12, generator=g) * 3
    y = torch.randint(0, 3, (300,), generator=g)
    x = centers[y] + 0.1 * torch.randn(300, 12, generator=g)
    for _ in range(50):
        model.train_step(x, y, 0.05)
    z = x @ model.layers[0].router.T
    assert (z.argmax(1) == y).float().mean() > 0.95


@pytest.mark.parametrize("divisor", ["batch", "area", "sum"])
def test_grouped_update_path_matches_reference(monkeypatch, divisor):
    """The sync-free grouped update (the CUDA path), forced on CPU."""
    monkeypatch.setattr(salrepro.kernels.dispatch, "accumulate_path", lambda *a: "grouped")
    model = salrepro.build_model("sal", 12, 5, hidden=8, depth=3, num_areas=16, seed=5, divisor=divisor)
    x, y = batch(12, 5, 6)  # 6 samples, 16 areas: most areas empty
    ref = reference_step(as_reference(model), model.roles, x.double(), y, 0.5, divisor, 5)
    untouched = model.layers[0].weight.detach().clone()
    used = set(model.route(x)[0].tolist())
    model.train_step(x, y, 0.5)
    for layer, r in zip(model.layers, ref):
        torch.testing.assert_close(layer.weight.double(), r["W"], rtol=1e-5, atol=1e-6)
    for k in set(range(16)) - used:
        assert torch.equal(model.layers[0].weight[k], untouched[k])


@pytest.mark.parametrize("divisor", ["batch", "area"])
def test_per_area_loop_fallback_matches_reference(monkeypatch, divisor):
    """Without grouped_mm (older torch, unaligned widths) the loop path gives the same step."""
    monkeypatch.setattr(salrepro.kernels.dispatch, "_HAS_GROUPED_MM", False)
    model = salrepro.build_model("sal", 12, 5, hidden=8, depth=3, num_areas=4, seed=4, divisor=divisor)
    x, y = batch(12, 5, 24)
    ref = reference_step(as_reference(model), model.roles, x.double(), y, 0.5, divisor, 5)
    model.train_step(x, y, 0.5)
    for layer, r in zip(model.layers, ref):
        torch.testing.assert_close(layer.weight.double(), r["W"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [0.0, 10.0])
def test_selector_lr_scale_matches_float64_reference(scale):
    """selector_lr_scale multiplies the selector's learning rate (eq. 9) and nothing else."""
    n_in, C, hidden, B, lr = 12, 5, 8, 24, 0.5
    model = salrepro.build_model("sal", n_in, C, hidden=hidden, num_areas=4, seed=3, selector_lr_scale=scale)
    x, y = batch(n_in, C, B)
    ref = reference_step(as_reference(model), model.roles, x.double(), y, lr, "batch", C, selector_lr_scale=scale)
    router0 = model.layers[0].router.detach().clone()
    model.train_step(x, y, lr)
    torch.testing.assert_close(model.layers[0].router.double(), ref[0]["Wr"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.layers[0].weight.double(), ref[0]["W"], rtol=1e-5, atol=1e-6)
    assert torch.equal(model.layers[0].router.detach(), router0) == (scale == 0.0)


@pytest.mark.parametrize("depth", [2, 4])
def test_feedback_scale_matches_float64_reference(depth):
    """feedback_scale scales every random feedback matrix F (eq. 6); the step with the scaled F matches
    the reference, and differs from the unscaled step (hidden layers learn feedback_scale times faster)."""
    n_in, C, hidden, B, lr = 12, 5, 8, 24, 0.5
    plain = salrepro.build_model("sal", n_in, C, hidden=hidden, depth=depth, num_areas=4, seed=3)
    model = salrepro.build_model("sal", n_in, C, hidden=hidden, depth=depth, num_areas=4, seed=3, feedback_scale=10.0)
    for a, b in zip(plain.layers, model.layers):
        if a.feedback is not None:
            torch.testing.assert_close(b.feedback, 10.0 * a.feedback)
    x, y = batch(n_in, C, B)
    ref = reference_step(as_reference(model), model.roles, x.double(), y, lr, "batch", C)
    model.train_step(x, y, lr)
    plain.train_step(x, y, lr)
    for layer, r in zip(model.layers, ref):
        torch.testing.assert_close(layer.weight.double(), r["W"], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(model.layers[0].weight, plain.layers[0].weight)


@pytest.mark.parametrize("dist", ["uniform", "normal", "sign"])
def test_feedback_dist_draws_feedback_of_the_same_variance(dist):
    """feedback_dist changes F's distribution, not its scale (variance 2 s^2 / C), and nothing else of the model."""
    from salrepro.method.nets import random_feedback

    F = random_feedback(10, 20000, 3.0, torch.Generator().manual_seed(0), dist)
    assert F.var().item() == pytest.approx(2 * 9.0 / 10, rel=0.05)
    if dist == "sign":
        assert F.abs().unique().tolist() == pytest.approx([3.0 * math.sqrt(0.2)])
    a = salrepro.build_model("sal", 12, 5, hidden=8, num_areas=4, seed=1)
    b = salrepro.build_model("sal", 12, 5, hidden=8, num_areas=4, seed=1, feedback_dist=dist)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight) and torch.equal(a.layers[0].router, b.layers[0].router)
    assert torch.equal(a.layers[0].feedback, b.layers[0].feedback) == (dist == "uniform")


def test_feedback_dist_bad_value_is_refused():
    with pytest.raises(ValueError, match="feedback_dist"):
        salrepro.build_model("sal", 12, 5, feedback_dist="cauchy")
