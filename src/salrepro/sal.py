"""SAL: Selective Adaptive Learning, the method of the paper, in one file.

A SAL layer holds K parameter *areas* (weights `W[k]`, biases `b[k]`). A
learnable routing projection and frozen prototypes send every sample to
exactly one area (hard routing); only that area computes the sample and only
that area learns from it. Learning needs no backpropagation: the output
error reaches every layer directly through a fixed random *feedback* matrix
(direct feedback alignment), and each layer's router (the *selector*) learns
from its own local loss.

The equations of docs/method.md, each in one place:

  (1) routing projection       z = x W_r^T                  AreaLayer.route
  (2) frozen prototypes        s = z P                      AreaLayer.route
  (3) hard routing             k_i = argmax_j s_ij          AreaLayer.route
  (4) area-conditional forward a_i = W[k_i] x_i + b[k_i]    area_forward
  (5) global error             e = softmax(logits) - 1_y    global_error
  (6) fixed feedback           delta = (e F) * phi'(a)      layer_error
  (7) area weight update       W[k] -= lr/D sum delta x^T   area_update
  (8) area bias update         b[k] -= lr/D sum delta       area_update
  (9) selector loss            L_aux = CE(z, y) on W_r      selector_update

The paper's text numbers no equation (5); we give the number to the global
error, the one quantity the prose defines between (4) and (6).

Every update is explicit tensor algebra under `torch.no_grad()`: no autograd
graph exists, and nothing passes between layers but the global error `e`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import blas
from .nets import (Net, branch, combine, cross_entropy, init_area_weights, init_matrix, layer_generator,
                   random_feedback, softmax, times_phi_prime, widths_for)

DIVISORS = ("batch", "area", "sum")
PROTOTYPE_NORMS = ("unit", "none")

_HAS_GROUPED_MM = hasattr(F, "grouped_mm")


# ---------------------------------------------------------------------------
# Dispatch: group samples by area, one matmul per area, scatter back.
# (The dropless MoE recipe; never a per-sample copy of the weights.)
# ---------------------------------------------------------------------------
@dataclass
class Groups:
    """Samples of a batch sorted by area; computed once per layer per step and
    shared by the forward pass, the layer error and the update."""

    areas: torch.Tensor  # (B,) area of each sample
    order: torch.Tensor  # (B,) sample indices sorted by area (stable)
    inverse: torch.Tensor  # (B,) position of each sample in `order`
    counts: torch.Tensor  # (K,) samples per area
    offsets: torch.Tensor  # (K,) int32 cumulative counts (grouped_mm's offs)

    @property
    def sizes(self) -> list[int]:
        """Samples per area as Python ints (for per-area loops)."""
        if not hasattr(self, "_sizes"):
            self._sizes = self.counts.tolist()
        return self._sizes

    @property
    def present(self) -> tuple:
        """Areas with samples, their sample counts and the first sorted row of
        each, as numpy int64 arrays (blas.py's one-call CPU path; computed once,
        shared by the forward and the update)."""
        if not hasattr(self, "_present"):
            counts = self.counts.numpy()
            present = np.flatnonzero(counts)
            rows = counts[present]
            self._present = (present, rows, self.offsets.numpy()[present] - rows)
        return self._present

    @classmethod
    def of(cls, areas: torch.Tensor, num_areas: int) -> "Groups":
        # a scatter, not bincount: bincount's output size depends on the data (a host sync on CUDA)
        counts = torch.zeros(num_areas, dtype=torch.long, device=areas.device).index_add_(0, areas, torch.ones_like(areas))
        order = torch.argsort(areas, stable=True)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return cls(areas, order, inverse, counts, torch.cumsum(counts, 0).to(torch.int32))


def _grouped_mm_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """grouped_mm takes float32/bf16/fp16 with rows 16-byte aligned."""
    if not _HAS_GROUPED_MM or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    return all(d * x.element_size() % 16 == 0 for d in weight.shape[1:])


def grouped_matmul(xs: torch.Tensor, weight: torch.Tensor, groups: Groups) -> torch.Tensor:
    """Rows of `xs` (sorted by area) times their area's weight transposed.

    On CPU without autograd and with many areas (a batched sweep), MKL's
    batched GEMM (`blas`, one call); else one grouped matmul where torch has
    it, else a loop over the areas present.
    Works under autograd (the MoE baseline) as well as under no_grad (SAL).
    """
    if blas.usable(weight, xs):
        return blas.area_matmul(xs, weight, groups)
    if _grouped_mm_ok(xs, weight):
        return F.grouped_mm(xs, weight.transpose(1, 2), offs=groups.offsets)
    parts, start = [], 0
    for w, n in zip(weight.unbind(0), groups.sizes):  # unbind once: see ENGINEERING-NOTES
        if n:
            parts.append(xs[start : start + n] @ w.T)
        start += n
    return torch.cat(parts) if parts else xs.new_zeros(0, weight.shape[1])


def area_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: Groups | None, xs: torch.Tensor | None = None
) -> torch.Tensor:
    """(4) a_i = W[k_i] x_i + b[k_i], dispatched by area; K = 1 is a plain layer.
    `xs` is x already sorted by area, if the caller has it."""
    if groups is None:
        return F.linear(x, weight[0], bias[0])
    xs = x.index_select(0, groups.order) if xs is None else xs
    return grouped_matmul(xs, weight, groups).index_select(0, groups.inverse) + bias.index_select(0, groups.areas)


def global_error(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(5) e = softmax(logits) - onehot(y), one row per sample (B x C)."""
    e = softmax(logits)
    return e.scatter_add_(1, y.unsqueeze(1), e.new_full((y.numel(), 1), -1.0))


def layer_error(e: torch.Tensor, feedback: torch.Tensor | None, role: str, a: torch.Tensor) -> torch.Tensor:
    """(6) delta_l = (e F_l) * phi'(a_l); F_l is the identity when absent."""
    delta = e if feedback is None else e @ feedback
    return times_phi_prime(role, delta, a)


def area_update(
    weight: torch.Tensor,
    bias: torch.Tensor,
    delta: torch.Tensor,
    x: torch.Tensor,
    groups: Groups | None,
    lr: float,
    divisor: str,
    xs: torch.Tensor | None = None,
    batch: int | None = None,
    grouped: bool | None = None,
) -> None:
    """(7) W[k] -= lr/D sum_{i in S_k} delta_i x_i^T and (8) b[k] -= lr/D sum delta_i.

    D is B (`batch`), |S_k| (`area`) or 1 (`sum`). Only areas present in the
    batch are touched; the others stay bit-identical. `xs` is x already
    sorted by area, if the caller has it; `batch` is B when the rows of x
    belong to several models trained together (default: all rows).

    Three ways to the same update. On CPU, for a layer of many areas (a
    batched sweep), MKL's batched GEMM accumulates into every area present in
    one call (`blas`); otherwise one in-place matmul per area present (each
    reads and writes its area once, no temporary gradient). On CUDA
    (`grouped`), one grouped matmul over the areas present, found with
    `nonzero_static` so that nothing waits for the host.
    """
    B = x.shape[0] if batch is None else batch
    if groups is None:  # one area: a plain DFA update
        D = 1 if divisor == "sum" else B
        weight[0].addmm_(delta.T, x, alpha=-lr / D)
        bias[0].add_(delta.sum(0), alpha=-lr / D)
        return
    xs = x.index_select(0, groups.order) if xs is None else xs
    if divisor == "area":  # each sample weighs 1/|S_k| of its own area
        delta = delta / groups.counts.index_select(0, groups.areas).unsqueeze(1).to(delta.dtype)
    D = B if divisor == "batch" else 1
    ds = delta.index_select(0, groups.order)
    if grouped if grouped is not None else (xs.is_cuda and _grouped_mm_ok(xs, weight)):
        # at most min(K, rows) areas are present; padding entries are empty groups of area 0 (adding zeros)
        size = min(groups.counts.numel(), xs.shape[0])
        present = torch.nonzero_static(groups.counts, size=size, fill_value=0).squeeze(1)
        real = torch.arange(size, device=xs.device) < (groups.counts > 0).sum()
        offs = torch.cumsum(groups.counts.index_select(0, present) * real, 0).to(torch.int32)
        dW = F.grouped_mm(ds.T, xs, offs=offs)  # (areas present, out, in)
        weight.index_add_(0, present, dW, alpha=-lr / D)  # (7)
    elif grouped is None and blas.usable(weight, ds, xs):
        blas.area_accumulate(weight, ds, xs, groups, alpha=-lr / D)  # (7)
    else:
        start = 0
        for k, n in enumerate(groups.sizes):
            if n:  # areas with no sample in the batch do not change
                d_k, x_k = ds[start : start + n], xs[start : start + n]
                weight[k].addmm_(d_k.T, x_k, alpha=-lr / D)  # (7)
                bias[k].add_(d_k.sum(0), alpha=-lr / D)  # (8)
            start += n
        return
    bias.index_add_(0, groups.areas, delta, alpha=-lr / D)  # (8)


def selector_update(layer: "AreaLayer", x: torch.Tensor, z: torch.Tensor, y: torch.Tensor, lr: float, divisor: str) -> None:
    """(9) one SGD step on L_aux = CE(z, y) with respect to W_r alone.

    Its exact local gradient: dL/dW_r = (softmax(z Q) - 1_y) Q^T x / D, with
    Q the identity when r = C (the default) and otherwise the frozen random
    `router_readout` (r x C). P never changes. `area` counts as `batch` here:
    the selector belongs to no area.
    """
    readout = layer.router_readout
    g = global_error(z if readout is None else z @ readout, y)
    if readout is not None:
        g = g @ readout.T
    scale = lr if divisor == "sum" else lr / x.shape[0]
    layer.router.addmm_(g.T, x, alpha=-scale)


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
        areas: int,
        num_classes: int,
        *,
        router_width: int | None = None,
        prototype_norm: str = "unit",
        feedback: bool = True,
        feedback_scale: float = 1.0,
        init: str = "kaiming_normal",
        seed: int = 0,
        index: int = 0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.in_features, self.out_features, self.num_areas = in_features, out_features, areas
        self.weight = nn.Parameter(torch.empty(areas, out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.empty(areas, out_features, **kw))
        init_area_weights(self.weight, self.bias, init, layer_generator(seed, index, 0))
        frozen = layer_generator(seed, index, 1)
        meta = torch.device(device).type == "meta" if device is not None else False
        self.router = None
        self.register_buffer("router_readout", None)
        self.register_buffer("prototypes", None)
        if areas > 1:
            r = num_classes if router_width is None else router_width
            self.router = nn.Parameter(torch.empty(r, in_features, **kw))
            init_matrix(self.router, init, frozen)
            if meta:
                protos = torch.empty(r, areas, device="meta")
            else:
                protos = torch.randn(r, areas, generator=frozen)
                if prototype_norm == "unit":  # (2) each column scaled to unit norm
                    protos = protos / protos.norm(dim=0, keepdim=True)
            self.register_buffer("prototypes", protos.to(**kw))
            if r != num_classes:
                readout = torch.empty(r, num_classes, device="meta") if meta else random_feedback(r, num_classes, 1.0, frozen)
                self.register_buffer("router_readout", readout.to(**kw))
        self.register_buffer("feedback", None)
        if feedback and out_features != num_classes:
            fb = torch.empty(num_classes, out_features, device="meta") if meta else random_feedback(
                num_classes, out_features, feedback_scale, frozen
            )
            self.register_buffer("feedback", fb.to(**kw))

    @property
    def routed(self) -> bool:
        return self.num_areas > 1

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1) z = x W_r^T, (2) s = z P, (3) k = argmax_j s_j (ties: lowest index).
        Returns the area of each sample and z (for the selector's loss)."""
        z = x @ self.router.T
        return torch.argmax(z @ self.prototypes, dim=1), z

    def groups(self, x: torch.Tensor) -> tuple[Groups | None, torch.Tensor | None]:
        if not self.routed:
            return None, None
        areas, z = self.route(x)
        return Groups.of(areas, self.num_areas), z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation a of every sample, computed by its own area."""
        return area_forward(x, self.weight, self.bias, self.groups(x)[0])

    def branch_out(self, role: str, x: torch.Tensor) -> torch.Tensor:
        return branch(role, self(x))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, areas={self.num_areas}"


# ---------------------------------------------------------------------------
# The SAL network and its learning rule
# ---------------------------------------------------------------------------
@dataclass
class LayerTrace:
    """What the learning rule needs of one layer's forward pass."""

    x: torch.Tensor  # the layer's input
    xs: torch.Tensor | None  # the input sorted by area (routed layers)
    a: torch.Tensor  # its pre-activation
    groups: Groups | None  # its routing (None for one area)
    z: torch.Tensor | None  # its routing projection (for the selector)


class SALNet(Net):
    """A SAL network: SAL layers (K areas on the first layer, and on every
    hidden layer of deep nets), a one-area output layer, and the
    backprop-free learning rule.

    Options (docs/method.md; defaults in brackets):
      divisor            ["batch"] D in (7), (8), (9): B, |S_k| ("area") or 1 ("sum")
      feedback_scale     [1.0]  multiplies the Kaiming-uniform feedback F
      router_width       [None = C] r, the routing dimension
      prototype_norm     ["unit"] unit-norm prototype columns, or "none"
      selector_lr_scale  [1.0]  selector learning rate = lr x this
      init               ["kaiming_normal"] area weight init
    """

    method = "sal"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: int = 256,
        depth: int = 2,
        areas: int = 1,
        seed: int = 0,
        divisor: str = "batch",
        feedback_scale: float = 1.0,
        router_width: int | None = None,
        prototype_norm: str = "unit",
        selector_lr_scale: float = 1.0,
        init: str = "kaiming_normal",
        device=None,
        dtype=None,
    ):
        super().__init__(in_features, num_classes, hidden, depth, areas)
        self.divisor = divisor
        self.selector_lr_scale = selector_lr_scale
        for i, (n, m) in enumerate(widths_for(in_features, num_classes, hidden, depth)):
            last = i == depth - 1
            self.layers.append(
                AreaLayer(
                    n, m, 1 if last else areas, num_classes,
                    router_width=router_width, prototype_norm=prototype_norm,
                    feedback_scale=feedback_scale, init=init, seed=seed, index=i,
                    device=device, dtype=dtype,
                )
            )

    @torch.no_grad()
    def route(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Area index of each sample, per routed layer {layer index: (B,)}."""
        return {i: t.groups.areas for i, t in enumerate(self.trace(x)[0]) if t.groups is not None}

    def trace(self, x: torch.Tensor) -> tuple[list[LayerTrace], torch.Tensor]:
        """The forward pass, keeping each layer's input, pre-activation and
        routing. Routing is decided here, before any update of the batch."""
        h, traces = self.check_x(x), []
        for layer, role in zip(self.layers, self.roles):
            groups, z = layer.groups(h)
            xs = None if groups is None else h.index_select(0, groups.order)
            a = area_forward(h, layer.weight, layer.bias, groups, xs)
            traces.append(LayerTrace(h, xs, a, groups, z))
            h = combine(role, h, branch(role, a))
        return traces, h

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)[1]

    @torch.no_grad()
    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> float:
        """One SAL step on a batch; returns its mean cross-entropy before the update."""
        y = self.check_y(x, y)
        traces, logits = self.trace(x)
        loss = cross_entropy(logits, y).mean()
        e = global_error(logits, y)  # (5)
        for layer, role, t in zip(self.layers, self.roles, traces):
            delta = layer_error(e, layer.feedback, role, t.a)  # (6)
            area_update(layer.weight, layer.bias, delta, t.x, t.groups, lr, self.divisor, t.xs)  # (7), (8)
            if t.groups is not None:
                selector_update(layer, t.x, t.z, y, lr * self.selector_lr_scale, self.divisor)  # (9)
        return float(loss)

