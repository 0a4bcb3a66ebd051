"""The baselines SAL is compared with, on the same network shapes.

- `BPNet`   (method "bp"): one area per layer, trained by autograd
  backpropagation on mean cross-entropy, plain SGD.
- `MoENet`  (method "moe"): the SAL layers replaced by K dense experts and a
  learned softmax gate, top-1 routing, each expert's output scaled by its gate
  probability so the gate learns; trained end to end with backpropagation on
  cross-entropy plus a Switch-style load-balancing loss.
- `FeedbackNet` (methods "fa" and "dfa"): a one-area net trained by feedback
  alignment, written as plain matrices and explicit tensor algebra, without
  any of the area machinery of `sal.py`:
    fa:  the error travels layer to layer backwards, each layer's weight
         replaced by a fixed random matrix of the same shape (Lillicrap 2016);
    dfa: the output error reaches every layer directly through a fixed random
         (C x out) matrix (Nokland 2016), i.e. SAL with one area everywhere.
  Because it shares no code with `SALNet`, "SAL with one area equals dfa" is
  a real cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.dispatch import Groups, dense, dense_accumulate_, fold_lr
from .nets import (INIT, RESIDUAL, Net, branch, combine, mean_cross_entropy, init_area_weights, init_matrix, layer_generator,
                   random_feedback, times_phi_prime, widths_for)
from .sal import SAL, AreaLayer, area_forward, forward_trace, routes, selector_update


# ---------------------------------------------------------------------------
# Dense layer in the area layout (K = 1), shared by BP, FA and DFA
# ---------------------------------------------------------------------------
class DenseLayer(nn.Module):
    """A plain layer stored in the area layout: weight (1, out, in), bias (1, out).

    `feedback`, when present, is a frozen matrix: (C, out) for dfa (output
    error -> this layer), (out, in) for fa (stands in for this layer's weight
    when the error travels back through it).
    """

    def __init__(self, in_features, out_features, *, init, seed, index, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.in_features, self.out_features, self.num_areas = in_features, out_features, 1
        self.weight = nn.Parameter(torch.empty(1, out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.empty(1, out_features, **kw))
        init_area_weights(self.weight, self.bias, init, layer_generator(seed, index, 0))
        self.register_buffer("feedback", None)

    def set_feedback(self, rows: int, cols: int, scale: float, seed: int, index: int) -> None:
        meta = self.weight.device.type == "meta"
        fb = torch.empty(rows, cols, device="meta") if meta else random_feedback(rows, cols, scale, layer_generator(seed, index, 1))
        self.register_buffer("feedback", fb.to(device=self.weight.device, dtype=self.weight.dtype))

    def forward(self, x):
        return F.linear(x, self.weight[0], self.bias[0])

    def branch_out(self, role, x):
        return branch(role, self(x))

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}"


def dense_layers(in_features, num_classes, hidden, depth, *, init, seed, device, dtype) -> nn.ModuleList:
    return nn.ModuleList(
        DenseLayer(n, m, init=init, seed=seed, index=i, device=device, dtype=dtype)
        for i, (n, m) in enumerate(widths_for(in_features, num_classes, hidden, depth))
    )


def sgd_(params, grads, lr: float | torch.Tensor, owners=None) -> None:
    """Plain SGD: no momentum, no weight decay (paper 4.1). `lr`: a float, or (N,)
    one per stacked model, with `owners` one tensor per parameter: the model of
    each of its leading rows (`batched.StackedLayer.owners`; a float lr ignores them)."""
    per_row = isinstance(lr, torch.Tensor) and owners is not None
    with torch.no_grad():
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is not None:
                g, scale = fold_lr(g, lr.index_select(0, owners[i]) if per_row else lr)  # a float lr: unchanged
                p.sub_(g, alpha=scale)


# ---------------------------------------------------------------------------
# Backpropagation
# ---------------------------------------------------------------------------
def bp_step(layers, roles, x: torch.Tensor, y: torch.Tensor, lr: float | torch.Tensor) -> torch.Tensor:
    """One SGD step of backpropagation on mean cross-entropy, for one model
    (x (B, in), weight (1, out, in)) or N stacked ones (x (N, B, in), weight
    (N, out, in)); returns each model's loss before the step. `lr`: a float,
    or (N,) one per stacked model.

    Autograd gives only the gradient of the loss with respect to each layer's
    pre-activation a_l (backpropagation proper); the update W_l -= lr
    dL/da_l^T h_l, b_l -= lr sum dL/da_l is then SGD on dL/dW_l, written in
    place without a full weight gradient (the step is memory-bound).
    """
    inputs, pre, h = [], [], x
    for layer, role in zip(layers, roles):
        a = dense(h, layer.weight, layer.bias)
        inputs.append(h)
        pre.append(a)
        h = combine(role, h, branch(role, a))
    losses = mean_cross_entropy(h, y)
    grads = torch.autograd.grad(losses.sum(), pre)  # dL/da_l, every layer (and every model: they share nothing)
    with torch.no_grad():
        for layer, h_in, g in zip(layers, inputs, grads):
            g, scale = fold_lr(g, lr)  # a float lr: unchanged
            dense_accumulate_(layer.weight, layer.bias, g, h_in, alpha=-scale)  # W -= lr (dL/da)^T h, b -= lr sum dL/da
    return losses.detach()


class BPNet(Net):
    method = "bp"

    def __init__(self, in_features, num_classes, *, hidden=256, depth=2, seed=0, init=INIT, device=None, dtype=None):
        super().__init__(in_features, num_classes, hidden, depth, 1)
        self.layers = dense_layers(in_features, num_classes, hidden, depth, init=init, seed=seed, device=device, dtype=dtype)

    def train_step(self, x, y, lr):
        y = self.check_y(x, y)
        return float(bp_step(self.layers, self.roles, self.check_x(x), y, lr))  # .grad is never populated


# ---------------------------------------------------------------------------
# Mixture of experts
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MoEOptions:
    """The MoE baseline's option and its default (docs/method.md)."""

    balance_coef: float = 0.01  # Switch Transformer's load-balancing coefficient


MOE = MoEOptions()


def gate_probs(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """The gate: p = softmax(G x) over the K experts; x (B, in) or (N, B, in) stacked."""
    return torch.softmax(x @ gate.transpose(-1, -2), dim=-1)


def moe_branch(role: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gate: torch.Tensor,
               model_offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One MoE layer, top-1: sample i goes to k_i = argmax_k p_ik and its
    output is p_ik * phi(W[k_i] x_i + b[k_i]), so the gate learns through p.
    For N stacked models (x (N, B, in), weight (N*K, out, in), gate (N, K, in))
    `model_offsets` is m*K for model m. Returns the branch output, the expert
    of each sample, and the Switch load-balancing loss K sum_k f_k P_k (f the
    fraction of the batch routed to k, P its mean gate probability), summed over models."""
    probs = gate_probs(x, gate)
    experts = torch.argmax(probs, dim=-1)  # top-1
    K = gate.shape[-2]
    groups = Groups.of(experts, weight.shape[0], model_offsets)
    a = area_forward(x, weight, bias, groups if K > 1 else None)
    p = probs.gather(-1, experts.unsqueeze(-1))  # gate probability of the chosen expert
    f = groups.counts.view(*probs.shape[:-2], K).to(probs.dtype) / x.shape[-2]
    balance = K * (f * probs.mean(-2)).sum()  # Switch load balancing
    return p * branch(role, a), experts, balance


class MoELayer(nn.Module):
    """K dense experts and a softmax gate, top-1 (`moe_branch`).

    Tensors: weight (K, out, in), bias (K, out), gate (K, in).
    """

    def __init__(self, in_features, out_features, experts, *, init, seed, index, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.in_features, self.out_features, self.num_areas = in_features, out_features, experts
        self.weight = nn.Parameter(torch.empty(experts, out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.empty(experts, out_features, **kw))
        self.gate = nn.Parameter(torch.empty(experts, in_features, **kw))
        init_area_weights(self.weight, self.bias, init, layer_generator(seed, index, 0))
        init_matrix(self.gate, init, layer_generator(seed, index, 1))
        self.last_experts = self.last_balance = None  # of the last forward: each sample's expert, balance loss

    def route(self, x):
        """The expert of each sample."""
        self.branch_out("linear", x)
        return self.last_experts

    def branch_out(self, role, x):
        out, self.last_experts, self.last_balance = moe_branch(role, x, self.weight, self.bias, self.gate)
        return out


class MoENet(Net):
    """Options: balance_coef [0.01], init ["kaiming_normal"]."""

    method = "moe"

    def __init__(self, in_features, num_classes, *, hidden=256, depth=2, num_areas=1, seed=0, balance_coef=MOE.balance_coef,
                 init=INIT, device=None, dtype=None):
        super().__init__(in_features, num_classes, hidden, depth, num_areas)
        self.balance_coef = balance_coef
        for i, (n, m) in enumerate(widths_for(in_features, num_classes, hidden, depth)):
            if i == depth - 1:
                self.layers.append(DenseLayer(n, m, init=init, seed=seed, index=i, device=device, dtype=dtype))
            else:
                self.layers.append(MoELayer(n, m, num_areas, init=init, seed=seed, index=i, device=device, dtype=dtype))

    def moe_layers(self):
        return [layer for layer in self.layers if isinstance(layer, MoELayer)]

    def balance_loss(self) -> torch.Tensor:
        return sum(layer.last_balance for layer in self.moe_layers())

    @torch.no_grad()
    def route(self, x):
        """Expert index of each sample, per MoE layer with K > 1 {layer index: (B,)}."""
        h, out = self.check_x(x), {}
        for i, (layer, role) in enumerate(zip(self.layers, self.roles)):
            h = combine(role, h, layer.branch_out(role, h))
            if isinstance(layer, MoELayer) and layer.num_areas > 1:
                out[i] = layer.last_experts
        return out

    def train_step(self, x, y, lr):
        y = self.check_y(x, y)
        params = list(self.parameters())
        ce = F.cross_entropy(self(x), y)
        loss = ce + self.balance_coef * self.balance_loss()
        sgd_(params, torch.autograd.grad(loss, params), lr)
        return float(ce.detach())


# ---------------------------------------------------------------------------
# SAL's areas, trained by backpropagation (salbp): is it the areas or the rule?
# ---------------------------------------------------------------------------
def salbp_step(layers, roles, x: torch.Tensor, y: torch.Tensor, lr: float | torch.Tensor,
               selector_lr_scale: float) -> torch.Tensor:
    """One step of SAL's routing with backpropagation in place of the feedback rule, for one model
    (x (B, in)) or N stacked ones (x (N, B, in)); returns each model's loss before the step.
    `lr`: a float, or (N,) one per stacked model (the layers then being `batched.StackedAreaLayer`s).

    The forward pass is SAL's (sal.forward_trace: routing (1)-(3) decided first, (4) per area); the
    area weights and biases then take one SGD step on mean cross-entropy with autograd's gradient
    (only the areas a sample went through receive any), and each router takes SAL's own selector
    step (9) on its local loss. Nothing else differs from SAL: same layers, routing and prototypes.
    """
    traces, logits = forward_trace(layers, roles, x)
    losses = mean_cross_entropy(logits, y)
    named = [(layer, name, getattr(layer, name)) for layer in layers for name in ("weight", "bias")]
    params = [t for _, _, t in named]
    owners = [layer.owners(name, t.shape[0]) for layer, name, t in named] if isinstance(lr, torch.Tensor) else None
    sgd_(params, torch.autograd.grad(losses.sum(), params), lr, owners)
    with torch.no_grad():
        for layer, t in zip(layers, traces):
            if t.groups is not None:
                selector_update(layer.router, t.x.detach(), t.z.detach(), y, lr * selector_lr_scale, "batch",
                                layer.router_readout, layer.router_active)  # (9), as in SAL
    return losses.detach()


class SALBPNet(Net):
    """SAL's layers and routing (areas on the first and hidden layers, learned projection, frozen
    prototypes, hard argmax, selector trained by its own loss), with the area weights trained by
    backpropagation (`salbp_step`) instead of the fixed random feedback.

    Options: router_width [None = C], prototype_norm ["unit"], selector_lr_scale [1.0],
    init ["kaiming_normal"] (as SAL's)."""

    method = "salbp"

    def __init__(self, in_features, num_classes, *, hidden=256, depth=2, num_areas=1, seed=0, router_width=SAL.router_width,
                 prototype_norm=SAL.prototype_norm, selector_lr_scale=SAL.selector_lr_scale, init=INIT, device=None,
                 dtype=None):
        super().__init__(in_features, num_classes, hidden, depth, num_areas)
        self.selector_lr_scale = selector_lr_scale
        for i, (n, m) in enumerate(widths_for(in_features, num_classes, hidden, depth)):
            self.layers.append(AreaLayer(n, m, 1 if i == depth - 1 else num_areas, num_classes, router_width=router_width,
                                         prototype_norm=prototype_norm, feedback=False, init=init, seed=seed, index=i,
                                         device=device, dtype=dtype))

    @torch.no_grad()
    def route(self, x):
        """Area index of each sample, per routed layer {layer index: (B,)}."""
        return routes(forward_trace(self.layers, self.roles, self.check_x(x))[0])

    def forward(self, x):
        return forward_trace(self.layers, self.roles, self.check_x(x))[1]

    def train_step(self, x, y, lr):
        y = self.check_y(x, y)
        return float(salbp_step(self.layers, self.roles, self.check_x(x), y, lr, self.selector_lr_scale))


# ---------------------------------------------------------------------------
# Feedback alignment (fa) and direct feedback alignment (dfa)
# ---------------------------------------------------------------------------
class FeedbackNet(Net):
    """Options: divisor ["batch"] ("batch" = mean over the batch, "area" is the
    same with one area, "sum" = no averaging), feedback_scale [1.0],
    init ["kaiming_normal"]."""

    def __init__(self, in_features, num_classes, *, mode, hidden=256, depth=2, seed=0, divisor=SAL.divisor,
                 feedback_scale=SAL.feedback_scale, init=INIT, device=None, dtype=None):
        super().__init__(in_features, num_classes, hidden, depth, 1)
        self.method, self.divisor = mode, divisor
        self.layers = dense_layers(in_features, num_classes, hidden, depth, init=init, seed=seed, device=device, dtype=dtype)
        for i, layer in enumerate(self.layers):
            if mode == "dfa" and layer.out_features != num_classes:
                layer.set_feedback(num_classes, layer.out_features, feedback_scale, seed, i)
            if mode == "fa" and i > 0:  # the first layer passes no error on
                layer.set_feedback(layer.out_features, layer.in_features, feedback_scale, seed, i)

    @torch.no_grad()
    def forward(self, x):
        return super().forward(x)

    @torch.no_grad()
    def train_step(self, x, y, lr):
        y = self.check_y(x, y)
        xs, pre, h = [], [], self.check_x(x)
        for layer, role in zip(self.layers, self.roles):
            a = h @ layer.weight[0].T + layer.bias[0]
            xs.append(h)
            pre.append(a)
            h = combine(role, h, branch(role, a))
        loss = F.cross_entropy(h, y)
        e = torch.softmax(h, dim=1) - F.one_hot(y, self.num_classes).to(h.dtype)
        scale = lr if self.divisor == "sum" else lr / x.shape[0]
        g = e  # fa: error with respect to the current layer's output
        for i in reversed(range(self.depth)):
            layer, role = self.layers[i], self.roles[i]
            if self.method == "dfa":
                delta = times_phi_prime(role, e if layer.feedback is None else e @ layer.feedback, pre[i])
            else:
                delta = times_phi_prime(role, g, pre[i])
                if i > 0:  # pass the error on through the fixed matrix, not the weight
                    back = delta @ layer.feedback
                    g = g + back if role == RESIDUAL else back
            layer.weight[0].sub_(delta.T @ xs[i], alpha=scale)
            layer.bias[0].sub_(delta.sum(0), alpha=scale)
        return float(loss)
