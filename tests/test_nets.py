"""nets.py: the written-out softmax and cross-entropy equal torch's."""

import torch
import torch.nn.functional as F

from salrepro.nets import cross_entropy, softmax


def logits_and_labels(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(50, 10, generator=g) * 5
    x[0, 3] = 1e4  # large logits: the max shift keeps both finite
    x[1] = -1e4
    return x, torch.randint(0, 10, (50,), generator=g)


def test_softmax_equals_torch():
    x, _ = logits_and_labels()
    torch.testing.assert_close(softmax(x.clone()), torch.softmax(x, 1), rtol=1e-6, atol=1e-7)


def test_cross_entropy_and_its_gradient_equal_torch():
    x, y = logits_and_labels(1)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = cross_entropy(a, y), F.cross_entropy(b, y, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)
