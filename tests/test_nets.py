"""nets.py: the written-out softmax, cross-entropy and delta * phi'(a) equal their plain forms."""

import torch
import torch.nn.functional as F

import pytest

from salrepro.method.nets import LINEAR, RELU, RESIDUAL, cross_entropy, phi_prime, softmax, times_phi_prime


def logits_and_labels(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(50, 10, generator=g) * 5
    x[0, 3] = 1e4  # large logits: the max shift keeps both finite
    x[1] = -1e4
    return x, torch.randint(0, 10, (50,), generator=g)


def test_softmax_equals_torch():
    x, _ = logits_and_labels()
    torch.testing.assert_close(softmax(x.clone()), torch.softmax(x, 1), rtol=1e-6, atol=1e-7)


def test_softmax_with_labels_gives_softmax_and_cross_entropy_bit_for_bit():
    """SAL's step takes its loss from the softmax of its global error (5): the same numbers as each alone."""
    x, y = logits_and_labels(2)
    p, ce = softmax(x.clone(), y)
    assert torch.equal(p, softmax(x.clone())) and torch.equal(ce, cross_entropy(x, y))


def test_cross_entropy_and_its_gradient_equal_torch():
    x, y = logits_and_labels(1)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = cross_entropy(a, y), F.cross_entropy(b, y, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("role", [RELU, RESIDUAL, LINEAR])
def test_times_phi_prime_equals_the_product(role):
    g = torch.Generator().manual_seed(3)
    a, delta = torch.randn(4, 6, 32, generator=g), torch.randn(4, 6, 32, generator=g)
    a[0, 0, :4] = 0.0  # relu'(0) = 0
    d = phi_prime(role, a)
    expected = delta if d is None else delta * d
    assert torch.equal(times_phi_prime(role, delta, a), expected)  # bit for bit (+0 and -0 compare equal)


@pytest.mark.parametrize("role", [RELU, RESIDUAL])
def test_phi_prime_is_the_derivative_autograd_finds(role):
    """phi'(a) against autograd's derivative of the branch's activation (relu, tanh) and a value worked by
    hand: tanh'(0.5) = 1 - tanh(0.5)^2 = 0.786448..."""
    a = torch.linspace(-3, 3, 61, dtype=torch.float64).requires_grad_()
    act = torch.relu if role == RELU else torch.tanh
    (grad,) = torch.autograd.grad(act(a).sum(), a)
    torch.testing.assert_close(phi_prime(role, a.detach()), grad)
    if role == RESIDUAL:
        assert float(phi_prime(role, torch.tensor([0.5], dtype=torch.float64))) == pytest.approx(0.7864477329659274, abs=1e-12)
