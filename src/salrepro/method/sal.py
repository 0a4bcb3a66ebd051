"""SAL: Selective Adaptive Learning, the method of the paper, in one file.

A SAL layer holds K parameter *areas* (weights `W[k]`, biases `b[k]`). A
learnable routing projection and frozen prototypes send every sample to
exactly one area (hard routing); only that area computes the sample and only
that area learns from it. Learning needs no backpropagation: the output
error reaches every layer directly through a fixed random *feedback* matrix
(direct feedback alignment), and each layer's router (the *selector*) learns
from its own local loss.

The equations of docs/method.md, each written once, here:

  (1) routing projection       z = x W_r^T                  route
  (2) frozen prototypes        s = z P                      route
  (3) hard routing             k_i = argmax_j s_ij          route
  (4) area-conditional forward a_i = W[k_i] x_i + b[k_i]    area_forward
  (5) global error             e = softmax(logits) - 1_y    global_error
  (6) fixed feedback           delta = (e F) * phi'(a)      layer_error
  (7) area weight update       W[k] -= lr/D sum delta x^T   area_update
  (8) area bias update         b[k] -= lr/D sum delta       area_update
  (9) selector loss            L_aux = CE(z, y) on W_r      selector_update

The paper's text numbers no equation (5); we give the number to the global
error, the one quantity the prose defines between (4) and (6).

Each function takes one model's tensors or N models' stacked on a leading
dimension, so `SALNet` (one model) and `batched.BatchedSAL` (a sweep's models
trained together) run the same lines: `forward_trace` and `learn`. How the
per-area products run fast (grouping by area, MKL, grouped matmul) lives
below, in dispatch.py.

Every update is explicit tensor algebra under `torch.no_grad()`: no autograd
graph exists, and nothing passes between layers but the global error `e`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..kernels.dispatch import (Groups, accumulate_, area_accumulate_, area_matmul, dense, dense_accumulate_, fold_lr, rows,
                       sort_by_area)
from .nets import (INIT, Net, branch, combine, init_area_weights, init_matrix, layer_generator,
                   random_feedback, softmax, times_phi_prime, widths_for)

DIVISORS = ("batch", "area", "sum")
PROTOTYPE_NORMS = ("unit", "none")


@dataclass(frozen=True)
class SALOptions:
    """SAL's open choices and their defaults, declared once (docs/method.md, "Options, defaults and why",
    says why each; a test holds that table against these): the constructors' defaults and
    models.OPTIONS come from here."""

    divisor: str = "batch"  # D in (7), (8), (9): B ("batch"), |S_k| ("area") or 1 ("sum")
    feedback_scale: float = 1.0  # multiplies the Kaiming-uniform feedback F
    feedback_dist: str = "uniform"  # F's distribution: "uniform", or "normal" / "sign" of equal variance
    router_width: int | None = None  # r, the routing dimension (None: C)
    prototype_norm: str = "unit"  # unit-norm prototype columns, or "none"
    selector_lr_scale: float = 1.0  # selector learning rate = lr x this


SAL = SALOptions()


# ---------------------------------------------------------------------------
# The equations. Each takes a lone model's tensors (x: (B, in)) or N stacked
# models' (a leading model dimension, x: (N, B, in)); the same lines run both.
# How the products run fast is dispatch.py's business, not the method's.
# ---------------------------------------------------------------------------
def route(x: torch.Tensor, router: torch.Tensor, prototypes: torch.Tensor,
          beyond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(1) z = x W_r^T, (2) s = z P, (3) k = argmax_j s_j (ties: lowest index).
    Returns the area of each sample and z (for the selector's loss).
    `beyond` ((N, 1, K), stacked models of different K padded to the largest):
    0 at a model's own areas, -inf beyond its K, which can then never win."""
    z = x @ router.transpose(-1, -2)  # (1)
    s = z @ prototypes  # (2)
    if beyond is not None:
        s.add_(beyond)  # + 0, or -inf beyond a model's K
    return torch.argmax(s, dim=-1), z  # (3)


def area_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: Groups | None, xs: torch.Tensor | None = None
) -> torch.Tensor:
    """(4) a_i = W[k_i] x_i + b[k_i], dispatched by area; with one area (groups
    None) a plain dense layer. `xs` is x already sorted by area, if the caller has it."""
    if groups is None:
        return dense(x, weight, bias)  # (4), one area
    xs = sort_by_area(x, groups) if xs is None else xs
    a = area_matmul(xs, weight, groups).index_select(0, groups.inverse) + bias.index_select(0, groups.k)  # (4)
    return a.view(*x.shape[:-1], -1)


def global_error(logits: torch.Tensor, y: torch.Tensor, with_loss: bool = False):
    """(5) e = softmax(logits) - onehot(y), one row per sample. `with_loss`: (e, the
    mean cross-entropy of the logits, per stacked model), the loss from the same softmax."""
    e, ce = softmax(rows(logits), y.reshape(-1)) if with_loss else (softmax(rows(logits)), None)
    e.scatter_add_(1, y.reshape(-1, 1), e.new_full((y.numel(), 1), -1.0))  # (5)
    return (e.view(logits.shape), ce.view(y.shape).mean(-1)) if with_loss else e.view(logits.shape)


def layer_error(e: torch.Tensor, feedback: torch.Tensor | None, role: str, a: torch.Tensor) -> torch.Tensor:
    """(6) delta_l = (e F_l) * phi'(a_l); F_l is the identity when absent."""
    return times_phi_prime(role, e if feedback is None else e @ feedback, a)  # (6)


def area_update(
    weight: torch.Tensor,
    bias: torch.Tensor,
    delta: torch.Tensor,
    x: torch.Tensor,
    groups: Groups | None,
    lr: float | torch.Tensor,
    divisor: str,
    xs: torch.Tensor | None = None,
) -> None:
    """(7) W[k] -= lr/D sum_{i in S_k} delta_i x_i^T and (8) b[k] -= lr/D sum delta_i.

    D is B (`batch`, a model's batch size), |S_k| (`area`) or 1 (`sum`). Only
    areas present in the batch are touched; the others stay bit-identical.
    `xs` is x already sorted by area, if the caller has it. `lr`: a float, or
    (N,) one per stacked model, folded into each model's delta.
    """
    B = x.shape[-2]
    delta, lr = fold_lr(delta, lr)  # a float lr: unchanged
    if groups is None:  # one area: a plain DFA update
        D = 1 if divisor == "sum" else B
        dense_accumulate_(weight, bias, delta, x, alpha=-lr / D)  # (7), (8) with one area
        return
    xs = sort_by_area(x, groups) if xs is None else xs
    delta = rows(delta)
    if divisor == "area":  # each sample weighs 1/|S_k| of its own area
        delta = delta / groups.counts.index_select(0, groups.k).unsqueeze(1).to(delta.dtype)
    D = B if divisor == "batch" else 1
    area_accumulate_(weight, bias, delta, xs, groups, alpha=-lr / D)  # (7), (8)


def selector_update(
    router: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor,
    y: torch.Tensor,
    lr: float | torch.Tensor,
    divisor: str,
    readout: torch.Tensor | None = None,
    active: torch.Tensor | None = None,
) -> None:
    """(9) one SGD step on L_aux = CE(z, y) with respect to W_r alone.

    Its exact local gradient: dL/dW_r = (softmax(z Q) - 1_y) Q^T x / D, with
    Q the identity when r = C (the default) and otherwise the frozen random
    `readout` (r x C). P never changes. `area` counts as `batch` here:
    the selector belongs to no area. `active` ((N,) bool, stacked models):
    models of one area have no router, and it does not learn. `lr`: a float,
    or (N,) one per stacked model.
    """
    g = global_error(z if readout is None else z @ readout, y)
    if readout is not None:
        g = g @ readout.transpose(-1, -2)
    if active is not None:
        g = g * active.view(-1, 1, 1)
    g, lr = fold_lr(g, lr)  # a float lr: unchanged
    D = 1 if divisor == "sum" else x.shape[-2]
    accumulate_(router, g, x, alpha=-lr / D)  # (9)


# ---------------------------------------------------------------------------
# The forward pass and the learning rule, over any stack of layers that hold
# the tensors of an AreaLayer (a lone model's, or N models' stacked).
# ---------------------------------------------------------------------------
@dataclass
class LayerTrace:
    """What the learning rule needs of one layer's forward pass."""

    x: torch.Tensor  # the layer's input
    xs: torch.Tensor | None  # the input sorted by area (routed layers)
    a: torch.Tensor  # its pre-activation
    groups: Groups | None  # its routing (None for one area)
    z: torch.Tensor | None  # its routing projection (for the selector)
    k: torch.Tensor | None  # the area k_i of each sample (routed layers)


def routes(traces: list[LayerTrace]) -> dict[int, torch.Tensor]:
    """The area of each sample, per routed layer {layer index: areas}, from a forward pass's traces."""
    return {i: t.k for i, t in enumerate(traces) if t.k is not None}


def forward_trace(layers, roles, x: torch.Tensor) -> tuple[list[LayerTrace], torch.Tensor]:
    """The forward pass, keeping each layer's input, pre-activation and
    routing. Routing is decided here, before any update of the batch."""
    h, traces = x, []
    for layer, role in zip(layers, roles):
        groups = xs = z = k = None
        if layer.routed:
            k, z = layer.route(h)  # (1)-(3)
            groups = layer.groups_of(k)
            xs = sort_by_area(h, groups)
        a = area_forward(h, layer.weight, layer.bias, groups, xs)  # (4)
        traces.append(LayerTrace(h, xs, a, groups, z, k))
        h = combine(role, h, branch(role, a))
    return traces, h


@torch.no_grad()
def learn(layers, roles, traces: list[LayerTrace], logits: torch.Tensor, y: torch.Tensor, lr: float | torch.Tensor,
          divisor: str, selector_lr_scale: float) -> torch.Tensor:
    """The backprop-free learning rule, (5)-(9), for every layer of one batch;
    `lr` a float, or (N,) one per stacked model. Returns the batch's mean
    cross-entropy before the update (per stacked model), from (5)'s softmax."""
    e, loss = global_error(logits, y, with_loss=True)  # (5)
    for layer, role, t in zip(layers, roles, traces):
        delta = layer_error(e, layer.feedback, role, t.a)  # (6)
        area_update(layer.weight, layer.bias, delta, t.x, t.groups, lr, divisor, t.xs)  # (7), (8)
        if t.groups is not None:
            selector_update(layer.router, t.x, t.z, y, lr * selector_lr_scale, divisor,
                            layer.router_readout, layer.router_active)  # (9)
    return loss


# ---------------------------------------------------------------------------
# The SAL layer
# ---------------------------------------------------------------------------
class AreaLayer(nn.Module):
    """A layer of K parameter areas.

    Tensors (public names):
      weight      (K, out, in)  one weight matrix per area, trainable
      bias        (K, out)      one bias per area, trainable
      router      (r, in)       learnable routing projection W_r (K > 1 only)
      prototypes  (r, K)        frozen prototypes P (K > 1 only)
      router_readout (r, C)     frozen map of z to class scores, only if r != C
      feedback    (C, out)      frozen DFA feedback F, only if out != C

    With K = 1 there is no router: the layer is a plain dense layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_areas: int,
        num_classes: int,
        *,
        router_width: int | None = SAL.router_width,
        prototype_norm: str = SAL.prototype_norm,
        feedback: bool = True,
        feedback_scale: float = SAL.feedback_scale,
        feedback_dist: str = SAL.feedback_dist,
        init: str = INIT,
        seed: int = 0,
        index: int = 0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.in_features, self.out_features, self.num_areas = in_features, out_features, num_areas
        self.weight = nn.Parameter(torch.empty(num_areas, out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.empty(num_areas, out_features, **kw))
        init_area_weights(self.weight, self.bias, init, layer_generator(seed, index, 0))
        frozen = layer_generator(seed, index, 1)
        meta = torch.device(device).type == "meta" if device is not None else False
        self.router = None
        self.register_buffer("router_readout", None)
        self.register_buffer("prototypes", None)
        if num_areas > 1:
            r = num_classes if router_width is None else router_width
            self.router = nn.Parameter(torch.empty(r, in_features, **kw))
            init_matrix(self.router, init, frozen)
            if meta:
                protos = torch.empty(r, num_areas, device="meta")
            else:
                protos = torch.randn(r, num_areas, generator=frozen)
                if prototype_norm == "unit":  # (2) each column scaled to unit norm
                    protos = protos / protos.norm(dim=0, keepdim=True)
            self.register_buffer("prototypes", protos.to(**kw))
            if r != num_classes:
                readout = torch.empty(r, num_classes, device="meta") if meta else random_feedback(r, num_classes, 1.0, frozen)
                self.register_buffer("router_readout", readout.to(**kw))
        self.register_buffer("feedback", None)
        if feedback and out_features != num_classes:
            fb = torch.empty(num_classes, out_features, device="meta") if meta else random_feedback(
                num_classes, out_features, feedback_scale, frozen, feedback_dist
            )
            self.register_buffer("feedback", fb.to(**kw))

    router_active = None  # (stacked layers only: which models have a router)

    @property
    def routed(self) -> bool:
        return self.num_areas > 1

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1)-(3): the area of each sample, and z."""
        return route(x, self.router, self.prototypes)

    def groups_of(self, k: torch.Tensor) -> Groups:
        return Groups.of(k, self.num_areas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation a of every sample, computed by its own area."""
        return area_forward(x, self.weight, self.bias, self.groups_of(self.route(x)[0]) if self.routed else None)

    def branch_out(self, role: str, x: torch.Tensor) -> torch.Tensor:
        return branch(role, self(x))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, K={self.num_areas}"


# ---------------------------------------------------------------------------
# The SAL network
# ---------------------------------------------------------------------------
class SALNet(Net):
    """A SAL network: SAL layers (K areas on the first layer, and on every
    hidden layer of deep nets), a one-area output layer, and the
    backprop-free learning rule.

    Options: the fields of SALOptions (their defaults are this constructor's), and init (nets.INIT).
    """

    method = "sal"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: int = 256,
        depth: int = 2,
        num_areas: int = 1,
        seed: int = 0,
        divisor: str = SAL.divisor,
        feedback_scale: float = SAL.feedback_scale,
        feedback_dist: str = SAL.feedback_dist,
        router_width: int | None = SAL.router_width,
        prototype_norm: str = SAL.prototype_norm,
        selector_lr_scale: float = SAL.selector_lr_scale,
        init: str = INIT,
        device=None,
        dtype=None,
    ):
        super().__init__(in_features, num_classes, hidden, depth, num_areas)
        self.divisor = divisor
        self.selector_lr_scale = selector_lr_scale
        for i, (n, m) in enumerate(widths_for(in_features, num_classes, hidden, depth)):
            last = i == depth - 1
            self.layers.append(
                AreaLayer(
                    n, m, 1 if last else num_areas, num_classes,
                    router_width=router_width, prototype_norm=prototype_norm,
                    feedback_scale=feedback_scale, feedback_dist=feedback_dist, init=init, seed=seed, index=i,
                    device=device, dtype=dtype,
                )
            )

    @torch.no_grad()
    def route(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Area index of each sample, per routed layer {layer index: (B,)}."""
        return routes(self.trace(x)[0])

    def trace(self, x: torch.Tensor) -> tuple[list[LayerTrace], torch.Tensor]:
        return forward_trace(self.layers, self.roles, self.check_x(x))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)[1]

    @torch.no_grad()
    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> float:
        """One SAL step on a batch; returns its mean cross-entropy before the update."""
        y = self.check_y(x, y)
        traces, logits = self.trace(x)
        return float(learn(self.layers, self.roles, traces, logits, y, lr, self.divisor, self.selector_lr_scale))
