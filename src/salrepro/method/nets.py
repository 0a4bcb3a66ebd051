"""The network shapes every method shares (docs/method.md, "Stacking").

Two topologies, chosen by depth:

- shallow (depth 2, Table 2 and the MoE comparison):
      h = relu(layer0(x));  logits = layer1(h)
- deep (depth > 2, Figures 2 and 3), a residual tanh net:
      h = layer0(x)                      (linear, no activation)
      h = h + tanh(layer_l(h))           (depth - 2 hidden layers, width -> width)
      logits = layer_last(h)             (linear)

"Depth" counts every weight layer. Each layer has a *role* that fixes how its
pre-activation `a` becomes the next hidden state and what `phi'(a)` the
learning rules use. The layers themselves (SAL areas, MoE experts, plain
dense) live in `sal.py` and `baselines.py`; a net is a `model.layers`
ModuleList plus the roles.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Roles of a layer in the stack.
RELU = "relu"  # shallow hidden layer: h = relu(a)
LINEAR = "linear"  # deep first layer and every output layer: h = a
RESIDUAL = "residual"  # deep hidden layer: h = h_in + tanh(a)

INITS = ("kaiming_normal", "kaiming_uniform", "torch_default")
INIT = INITS[0]  # every method's default: Kaiming (He) normal, paper 4.1


def softmax(logits: torch.Tensor, y: torch.Tensor | None = None):
    """Row softmax, written out: torch's CPU kernel is slow for few classes
    (measured 67 us vs 15 us for 400 x 10 on one core); the same math.
    With labels `y`: (softmax, per-sample cross-entropy), the second from the
    same exponentials, the very numbers of `cross_entropy`."""
    if y is None:
        e = (logits - logits.amax(1, keepdim=True)).exp_()
        return e.div_(e.sum(1, keepdim=True))
    z = logits - logits.amax(1, keepdim=True)
    e = z.exp()
    total = e.sum(1, keepdim=True)
    return e.div_(total), total.squeeze(1).log_() - z.gather(1, y.unsqueeze(1)).squeeze(1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, log sum exp(z) - z_y with z the logits less
    their row max (no cancellation for large logits); differentiable. The same
    math as F.cross_entropy(reduction="none"), several times faster for few classes on CPU."""
    z = logits - logits.detach().amax(1, keepdim=True)
    return z.exp().sum(1).log() - z.gather(1, y.unsqueeze(1)).squeeze(1)


def mean_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch: a scalar for one model (logits (B, C)), one value per model
    for N stacked ones (logits (N, B, C), y (N, B)); differentiable."""
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).view(y.shape).mean(-1)


def roles_for(depth: int) -> list[str]:
    """The role of each of the `depth` weight layers."""
    if depth == 2:
        return [RELU, LINEAR]
    return [LINEAR] + [RESIDUAL] * (depth - 2) + [LINEAR]


def widths_for(in_features: int, num_classes: int, hidden: int, depth: int) -> list[tuple[int, int]]:
    """(in, out) of each weight layer."""
    return [(in_features, hidden)] + [(hidden, hidden)] * (depth - 2) + [(hidden, num_classes)]


def branch(role: str, a: torch.Tensor) -> torch.Tensor:
    """phi(a): the layer's nonlinearity (for residual layers, the branch's tanh)."""
    if role == RELU:
        return torch.relu(a)
    if role == RESIDUAL:
        return torch.tanh(a)
    return a


def combine(role: str, h_in: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Next hidden state from the layer input and the branch output phi(a)."""
    return h_in + out if role == RESIDUAL else out


def phi_prime(role: str, a: torch.Tensor) -> torch.Tensor | None:
    """phi'(a) for the learning rules; None means 1 (linear layers)."""
    if role == RELU:
        return (a > 0).to(a.dtype)
    if role == RESIDUAL:
        t = torch.tanh(a)
        return 1 - t * t
    return None


def times_phi_prime(role: str, delta: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """delta * phi'(a), elementwise. For relu, torch's own relu backward, one
    kernel: delta where a > 0, else 0 (`delta * (a > 0).to(dtype)` is three
    operations and took 41 us against 7 us for 25 x 16 x 256 on 2 cores)."""
    if role == RELU:
        return torch.ops.aten.threshold_backward(delta, a, 0)
    d = phi_prime(role, a)
    return delta if d is None else delta * d


def layer_generator(seed: int, layer: int, stream: int) -> torch.Generator:
    """A CPU generator per (seed, layer, stream), so that two models built with
    the same seed start from the same weights whatever their method, and the
    frozen tensors (stream 1) never shift the weights (stream 0)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + layer * 1_009 + stream)


def _draw_(t: torch.Tensor, fan_in: int, init: str, gen: torch.Generator) -> torch.Tensor:
    """Fill `t` in place (no temporary the size of a weight: the widest nets' weights are 268 MB a
    layer); the same numbers as drawing a new tensor with torch.randn / torch.rand and scaling it.
    The draws are float32 on the CPU (the layer generators'): another dtype or device gets a copy."""
    if t.dtype != torch.float32 or t.device.type != "cpu":
        return t.copy_(_draw_(torch.empty(t.shape), fan_in, init, gen))
    if init == "kaiming_normal":
        return t.normal_(generator=gen).mul_(math.sqrt(2.0 / fan_in))
    if init == "kaiming_uniform":
        return t.uniform_(generator=gen).mul_(2).sub_(1).mul_(math.sqrt(6.0 / fan_in))
    if init == "torch_default":
        return t.uniform_(generator=gen).mul_(2).sub_(1).div_(math.sqrt(fan_in))
    raise ValueError(f"init: must be one of {INITS}, got {init!r}")


@torch.no_grad()
def init_matrix(weight: torch.Tensor, init: str, gen: torch.Generator) -> None:
    """Initialise a weight whose last dimension is the fan-in (any leading dims)."""
    if weight.device.type != "meta":
        _draw_(weight, weight.shape[-1], init, gen)


@torch.no_grad()
def init_area_weights(weight: torch.Tensor, bias: torch.Tensor, init: str, gen: torch.Generator) -> None:
    """Initialise each area of a (K, out, in) weight independently.

    kaiming_normal (default, the paper's "Kaiming/He"): N(0, 2 / fan_in), bias 0.
    kaiming_uniform: U(-sqrt(6 / fan_in), sqrt(6 / fan_in)), bias 0.
    torch_default: what nn.Linear does, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    weight and bias.
    """
    if weight.device.type == "meta":
        return
    init_matrix(weight, init, gen)
    if init == "torch_default":
        _draw_(bias, weight.shape[-1], init, gen)
    else:
        bias.zero_()


FEEDBACK_DISTS = ("uniform", "normal", "sign")


def random_feedback(rows: int, cols: int, scale: float, gen: torch.Generator, dist: str = "uniform") -> torch.Tensor:
    """A fixed random feedback matrix (rows x cols) mapping a `rows`-wide error
    to `cols` units, times `scale` (eq. 6): Kaiming-uniform with fan-in `rows`
    (default), or with the same variance 2 / rows a normal or a random-sign matrix."""
    if dist == "uniform":
        return (torch.rand(rows, cols, generator=gen) * 2 - 1) * (scale * math.sqrt(6.0 / rows))
    if dist == "normal":
        return torch.randn(rows, cols, generator=gen) * (scale * math.sqrt(2.0 / rows))
    if dist == "sign":
        return (torch.randint(0, 2, (rows, cols), generator=gen) * 2 - 1).float() * (scale * math.sqrt(2.0 / rows))
    raise ValueError(f"feedback_dist: must be one of {FEEDBACK_DISTS}, got {dist!r}")


class Net(nn.Module):
    """Common frame: `layers`, their roles, input checks and the forward pass.

    Subclasses provide the layers (each returns its pre-activation from
    `layer(h)`) and the learning rule `train_step(x, y, lr) -> float`.
    """

    method: str = "net"

    def __init__(self, in_features: int, num_classes: int, hidden: int, depth: int, num_areas: int):
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.hidden = hidden
        self.depth = depth
        self.num_areas = num_areas
        self.roles = roles_for(depth)
        self.layers = nn.ModuleList()

    # -- input checks --------------------------------------------------
    def check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x: expected a (batch, {self.in_features}) tensor (in_features={self.in_features}), got {shape}"
            )
        return x

    def check_y(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y: expected a ({x.shape[0]},) tensor of class indices, got {getattr(y, 'shape', y)}")
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"y: expected integer class indices, got dtype {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"y: labels must lie in 0..{self.num_classes - 1} (num_classes={self.num_classes}), "
                f"got values in {int(y.min())}..{int(y.max())}"
            )
        return y.long()

    # -- forward -------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.check_x(x)
        for layer, role in zip(self.layers, self.roles):
            h = combine(role, h, layer.branch_out(role, h))
        return h

    def extra_repr(self) -> str:
        return (
            f"method={self.method}, in_features={self.in_features}, num_classes={self.num_classes}, "
            f"hidden={self.hidden}, depth={self.depth}, K={self.num_areas}"
        )
