"""Baselines (baselines.py): the standard equivalence checks of feedback-
alignment and MoE code, and the MoE mechanics."""

import pytest
import torch

import salrepro
from salrepro.method.baselines import MoELayer


def batch(n_in, classes, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, n_in, generator=g), torch.randint(0, classes, (B,), generator=g)


def assert_same_weights(a, b, rtol, atol):
    for la, lb in zip(a.layers, b.layers):
        torch.testing.assert_close(la.weight, lb.weight, rtol=rtol, atol=atol)
        torch.testing.assert_close(la.bias, lb.bias, rtol=rtol, atol=atol)


@pytest.mark.parametrize("depth", [2, 5])
def test_fa_with_transposed_weights_equals_bp(depth):
    """FA with each feedback matrix set to the weight it stands in for is BP."""
    bp = salrepro.build_model("bp", 10, 4, hidden=16, depth=depth, seed=1)
    fa = salrepro.build_model("fa", 10, 4, hidden=16, depth=depth, seed=1)
    for layer_bp, layer_fa in zip(bp.layers, fa.layers):
        torch.testing.assert_close(layer_bp.weight, layer_fa.weight, rtol=0, atol=0)  # same seed, same init
    x, y = batch(10, 4, 32)
    for step in range(3):
        for layer in fa.layers[1:]:
            layer.feedback.copy_(layer.weight[0])
        w0 = [layer.weight.detach().clone() for layer in bp.layers]
        assert bp.train_step(x, y, 0.3) == pytest.approx(fa.train_step(x, y, 0.3), rel=1e-6)
        assert_same_weights(bp, fa, rtol=1e-6, atol=1e-6)
        assert all(not torch.equal(w, layer.weight) for w, layer in zip(w0, bp.layers))


def test_fa_with_random_feedback_differs_from_bp():
    bp = salrepro.build_model("bp", 10, 4, hidden=16, seed=1)
    fa = salrepro.build_model("fa", 10, 4, hidden=16, seed=1)
    x, y = batch(10, 4, 32)
    bp.train_step(x, y, 0.3)
    fa.train_step(x, y, 0.3)
    assert not torch.allclose(bp.layers[0].weight, fa.layers[0].weight)
    torch.testing.assert_close(bp.layers[1].weight, fa.layers[1].weight)  # output layer: exact gradient in both


@pytest.mark.parametrize("depth", [2, 6])
@pytest.mark.parametrize("divisor", ["batch", "sum"])
def test_sal_with_one_area_equals_dfa(depth, divisor):
    sal = salrepro.build_model("sal", 10, 4, hidden=16, depth=depth, num_areas=1, seed=2, divisor=divisor)
    dfa = salrepro.build_model("dfa", 10, 4, hidden=16, depth=depth, seed=2, divisor=divisor)
    dfa.load_state_dict(sal.state_dict())  # same tensor names: weights and feedback
    x, y = batch(10, 4, 16)
    lr = 0.2 if divisor == "batch" else 0.02
    for _ in range(4):
        assert sal.train_step(x, y, lr) == pytest.approx(dfa.train_step(x, y, lr), rel=1e-6)
    assert_same_weights(sal, dfa, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("depth", [2, 4])
def test_moe_with_one_expert_equals_dense_bp(depth):
    bp = salrepro.build_model("bp", 10, 4, hidden=16, depth=depth, seed=3)
    moe = salrepro.build_model("moe", 10, 4, hidden=16, depth=depth, num_areas=1, seed=3)
    x, y = batch(10, 4, 16)
    for _ in range(3):
        assert bp.train_step(x, y, 0.1) == pytest.approx(moe.train_step(x, y, 0.1), rel=1e-6)
    assert_same_weights(bp, moe, rtol=1e-6, atol=1e-6)


def test_moe_top1_routing_and_gate_scaling():
    layer = MoELayer(6, 5, 4, init="kaiming_normal", seed=0, index=0)
    x, _ = batch(6, 2, 20)
    out = layer.branch_out("linear", x)
    probs = torch.softmax(x @ layer.gate.T, dim=1)
    k = probs.argmax(1)
    expected = torch.stack([probs[i, k[i]] * (layer.weight[k[i]] @ x[i] + layer.bias[k[i]]) for i in range(20)])
    torch.testing.assert_close(out, expected)
    assert torch.equal(layer.route(x), k)
    f = torch.bincount(k, minlength=4).float() / 20
    torch.testing.assert_close(layer.last_balance, 4 * (f * probs.mean(0)).sum())


def test_moe_gradients_reach_the_gate_and_balance_loss_acts():
    torch.manual_seed(0)
    moe = salrepro.build_model("moe", 10, 4, hidden=16, num_areas=4, seed=0)
    x, y = batch(10, 4, 64)
    gate0 = moe.layers[0].gate.detach().clone()
    moe.train_step(x, y, 0.5)
    assert not torch.equal(gate0, moe.layers[0].gate)
    # the balance loss alone moves the gate towards uniform use of the experts
    moe.balance_coef = 1.0
    moe(x)
    grad = torch.autograd.grad(moe.balance_loss(), moe.layers[0].gate)[0]
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in moe.parameters())


def test_moe_deep_has_experts_on_first_and_hidden_layers():
    moe = salrepro.build_model("moe", 10, 4, hidden=16, depth=5, num_areas=4)
    kinds = [type(layer).__name__ for layer in moe.layers]
    assert kinds == ["MoELayer"] * 4 + ["DenseLayer"]
    assert set(moe.route(batch(10, 4, 8)[0])) == {0, 1, 2, 3}


@pytest.mark.parametrize("depth", [2, 4])
def test_salbp_with_one_area_equals_bp(depth):
    """SAL-BP-1 has no router: it is BP on the same initial weights."""
    bp = salrepro.build_model("bp", 10, 4, hidden=16, depth=depth, seed=3)
    sb = salrepro.build_model("salbp", 10, 4, hidden=16, depth=depth, num_areas=1, seed=3)
    x, y = batch(10, 4, 16)
    for _ in range(3):
        assert bp.train_step(x, y, 0.1) == pytest.approx(sb.train_step(x, y, 0.1), rel=1e-6)
    assert_same_weights(bp, sb, rtol=1e-5, atol=1e-6)


def test_salbp_routes_as_sal_and_backpropagates_through_the_chosen_areas():
    """Same routing as SAL at the start; the step is SGD on autograd's gradient of the areas used (a
    float64 autograd reference on a per-sample copy of the weights), and the router takes SAL's step (9)."""
    torch.manual_seed(0)
    sal = salrepro.build_model("sal", 10, 4, hidden=8, depth=3, num_areas=4, seed=2)
    sb = salrepro.build_model("salbp", 10, 4, hidden=8, depth=3, num_areas=4, seed=2)
    x, y = batch(10, 4, 24)
    routes = sb.route(x)
    assert all(torch.equal(routes[i], sal.route(x)[i]) for i in routes)
    # reference: per-sample weights gathered from the areas, float64 autograd, then mean over the batch
    Ws = [layer.weight.detach().double().requires_grad_() for layer in sb.layers]
    bs = [layer.bias.detach().double().requires_grad_() for layer in sb.layers]
    h, logits = x.double(), []
    for i, (W, b, role) in enumerate(zip(Ws, bs, sb.roles)):
        k = routes.get(i, torch.zeros(len(x), dtype=torch.long))
        a = torch.einsum("boi,bi->bo", W[k], h) + b[k]
        h = h + torch.tanh(a) if role == "residual" else a
    loss = torch.nn.functional.cross_entropy(h, y)
    grads = torch.autograd.grad(loss, Ws + bs)
    router0 = sb.layers[0].router.detach().clone()
    sb.train_step(x, y, 0.5)
    for layer, W, g in zip(sb.layers, Ws, grads[: len(Ws)]):
        torch.testing.assert_close(layer.weight.double(), W.detach() - 0.5 * g, rtol=1e-5, atol=1e-6)
    assert not torch.equal(router0, sb.layers[0].router)
    unused = set(range(4)) - set(routes[0].tolist())
    for k in unused:
        assert torch.equal(grads[0][k], torch.zeros_like(grads[0][k]))
