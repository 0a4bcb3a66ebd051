"""Many independent models of one shape, trained as one batched computation.

A step of a small model is dominated by per-call overhead, not arithmetic.
So the sweep runner stacks N independent models on a leading dimension and
takes every step for all of them at once:

- `BatchedSAL`: SAL nets that differ in seed and in K (mixed K in one batch:
  the (model, area) pair is one group index of a single grouped matmul);
- `BatchedBP`: BP nets that differ in seed (batched matmuls, autograd on the
  sum of the models' losses, whose gradients are each model's own);
- `BatchedMoE`: MoE nets of the same K that differ in seed.

Each model keeps its own initialisation (the stacks are built from models
made by `build_model`) and its own data order (its own generator), so that
its history equals training it alone (tested to 1e-5). The SAL rule is the
one of `sal.py`, called with the model dimension folded into the batch: the
same `Groups`, `area_forward`, `global_error`, `layer_error`, `area_update`.

No host synchronisation inside the step loop on CUDA (by design; not yet
measured on a GPU): losses, correct counts and occupancy accumulate on the
device and are read once per epoch, group counts come from a scatter rather
than bincount, and the area update takes the grouped path with
`nonzero_static` (on CPU, one MKL call over the areas present when a
layer has many, `blas.py`, else one in-place matmul per area present).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from tqdm import tqdm  # text bars: tqdm.auto warns (with the machine's paths) in kernels without ipywidgets

from . import sal
from .baselines import BPNet, MoENet
from .nets import branch, combine, cross_entropy
from .sal import Groups, SALNet, area_forward, global_error, layer_error

log = logging.getLogger("salrepro")
from .train import check_training_args, keep_freed_memory, show_progress, unpack


def _cat(tensors) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors]).clone()


def _stack(tensors) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors]).clone()


class BatchedNet:
    """Common frame: N models, their roles, batched forward and evaluation."""

    def __init__(self, models):
        first = models[0]
        for m in models:
            if (m.in_features, m.num_classes, m.hidden, m.depth, type(m)) != (
                first.in_features, first.num_classes, first.hidden, first.depth, type(first)
            ):
                raise ValueError("models: a batch needs models of one method and shape (in, classes, hidden, depth)")
        self.n = len(models)
        self.roles = first.roles
        self.depth, self.num_classes = first.depth, first.num_classes
        self.areas = [m.areas for m in models]

    def losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per model, (N,)."""
        N, B, C = logits.shape
        return cross_entropy(logits.reshape(N * B, C), y.reshape(N * B)).view(N, B).mean(1)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> dict:
        """Summed cross-entropy, correct counts and occupancy per model,
        as device tensors (the caller reads them once)."""
        loss = torch.zeros(self.n, device=x.device, dtype=torch.float64)
        correct = torch.zeros(self.n, device=x.device, dtype=torch.long)
        occupancy: dict[int, torch.Tensor] = {}
        for i in range(0, x.shape[0], chunk):
            xb = x[i : i + chunk].unsqueeze(0).expand(self.n, -1, -1)
            yb = y[i : i + chunk].unsqueeze(0).expand(self.n, -1)
            logits, routes = self.forward(xb, keep_routes=True)
            N, B, C = logits.shape
            loss += cross_entropy(logits.reshape(N * B, C), yb.reshape(N * B)).view(N, B).double().sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
            for layer, areas in routes.items():
                kmax = max(self.layer_areas(layer))
                counts = torch.zeros(self.n, kmax, dtype=torch.long, device=x.device)
                counts.scatter_add_(1, areas, torch.ones_like(areas))
                occupancy[layer] = occupancy.get(layer, 0) + counts
        return {"loss": loss, "correct": correct, "occupancy": occupancy}

    def layer_areas(self, layer: int) -> list[int]:
        return [1] * self.n

    def tensors(self) -> list[torch.Tensor]:
        """Every trained tensor, in a fixed order (checkpoints)."""
        return [t for L in self.layers for _, t in sorted(L.items()) if isinstance(t, torch.Tensor) and t.is_floating_point()]

    @torch.no_grad()
    def finite(self) -> torch.Tensor:
        """(N,) bool: are all of a model's weights finite?"""
        ok = torch.ones(self.n, dtype=torch.bool, device=self.tensors()[0].device)
        for L in self.layers:
            for name, t in L.items():
                if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                    continue
                flat = t.detach().flatten(1)  # NaN propagates to amax and amin; inf and -inf show at the ends
                rows = torch.isfinite(flat.amax(1)) & torch.isfinite(flat.amin(1))  # 0.13 ms vs 2.2 for isfinite().all()
                owner = self.owners(L, name, rows.shape[0], t.device)
                ok &= torch.zeros(self.n, device=t.device).index_add_(0, owner, (~rows).float()) == 0
        return ok

    def owners(self, L, name, rows, device) -> torch.Tensor:
        """Model index of each leading row of a layer tensor."""
        if rows == self.n:
            return torch.arange(self.n, device=device)
        sizes = torch.tensor(L.get("K", [rows // self.n] * self.n), device=device)
        return torch.repeat_interleave(torch.arange(self.n, device=device), sizes)


# ---------------------------------------------------------------------------
# SAL
# ---------------------------------------------------------------------------
class BatchedSAL(BatchedNet):
    """N SAL nets (any K each) of one shape and one set of options."""

    def __init__(self, models: list[SALNet]):
        super().__init__(models)
        first = models[0]
        self.divisor, self.selector_lr_scale = first.divisor, first.selector_lr_scale
        if any((m.divisor, m.selector_lr_scale) != (self.divisor, self.selector_lr_scale) for m in models):
            raise ValueError("models: a SAL batch needs one divisor and selector_lr_scale")
        dev = first.layers[0].weight.device
        self.layers = []
        for l in range(self.depth):
            layers = [m.layers[l] for m in models]
            ks = [layer.num_areas for layer in layers]
            L = {"K": ks, "weight": _cat(la.weight for la in layers), "bias": _cat(la.bias for la in layers)}
            L["offset"] = torch.tensor([0] + ks[:-1], device=dev).cumsum(0)
            L["feedback"] = None if layers[0].feedback is None else _stack(la.feedback for la in layers)
            L["routed"] = any(k > 1 for k in ks)
            if L["routed"]:
                src = next(la for la in layers if la.routed)
                r, kmax = src.router.shape[0], max(ks)
                if any(la.router_readout is not None for la in layers):
                    raise NotImplementedError("batched SAL with router_width != classes: train those models alone")
                L["router"] = torch.zeros(self.n, r, layers[0].in_features, device=dev)
                L["prototypes"] = torch.zeros(self.n, r, kmax, device=dev)
                L["valid"] = torch.zeros(self.n, kmax, dtype=torch.bool, device=dev)
                for i, la in enumerate(layers):
                    if la.routed:
                        L["router"][i] = la.router.detach()
                        L["prototypes"][i, :, : la.num_areas] = la.prototypes
                    L["valid"][i, : la.num_areas] = True
                L["has_router"] = torch.tensor([la.routed for la in layers], device=dev)
            self.layers.append(L)

    def layer_areas(self, layer):
        return self.layers[layer]["K"]

    def route(self, L, h):
        """(1)-(3) per model: z = h W_r^T, s = z P, k = argmax (padded areas masked); one-area models: 0."""
        z = torch.bmm(h, L["router"].transpose(1, 2))
        s = torch.bmm(z, L["prototypes"]).masked_fill(~L["valid"].unsqueeze(1), float("-inf"))
        return torch.argmax(s, dim=-1) * L["has_router"].unsqueeze(1), z

    def forward(self, x, keep_routes=False, trace=None):
        h, routes = x, {}
        N, B = x.shape[:2]
        for l, (L, role) in enumerate(zip(self.layers, self.roles)):
            n_in = h.shape[-1]
            groups = xs = z = None
            flat = h.reshape(N * B, n_in)
            if L["routed"]:
                areas, z = self.route(L, h)
                groups = Groups.of((L["offset"].unsqueeze(1) + areas).reshape(-1), sum(L["K"]))
                xs = flat.index_select(0, groups.order)
                a = area_forward(flat, L["weight"], L["bias"], groups, xs).view(N, B, -1)  # (4)
                if keep_routes:
                    routes[l] = areas
            else:  # one area per model: a batched matmul
                a = torch.baddbmm(L["bias"].unsqueeze(1), h, L["weight"].transpose(1, 2))
            if trace is not None:
                trace.append((flat, xs, a, groups, z))
            h = combine(role, h, branch(role, a))
        return (h, routes) if keep_routes else h

    @torch.no_grad()
    def train_step(self, x, y, lr) -> torch.Tensor:
        """One SAL step for every model; x (N, B, in), y (N, B). Returns (N,) losses."""
        N, B = y.shape
        trace = []
        logits = self.forward(x, trace=trace)
        losses = self.losses(logits, y)
        e = global_error(logits.reshape(N * B, -1), y.reshape(-1)).view(N, B, -1)  # (5)
        for L, role, (flat, xs, a, groups, z) in zip(self.layers, self.roles, trace):
            delta = layer_error(e, L["feedback"], role, a)  # (6), batched over models
            if groups is None:
                D = 1 if self.divisor == "sum" else B
                L["weight"].baddbmm_(delta.transpose(1, 2), flat.view(N, B, -1), alpha=-lr / D)  # (7)
                L["bias"].sub_(delta.sum(1), alpha=lr / D)  # (8)
            else:
                sal.area_update(L["weight"], L["bias"], delta.reshape(N * B, -1), flat, groups, lr, self.divisor,
                                xs, batch=B)  # (7), (8)
                self.selector_update(L, flat.view(N, B, -1), z, y, lr * self.selector_lr_scale)  # (9)
        return losses

    def selector_update(self, L, h, z, y, lr):
        """(9) per model: W_r -= lr/D (softmax(z) - 1_y)^T h; one-area models have no router."""
        N, B, r = z.shape
        g = global_error(z.reshape(N * B, r), y.reshape(-1)).view(N, B, r) * L["has_router"].view(N, 1, 1)
        D = 1 if self.divisor == "sum" else B
        L["router"].baddbmm_(g.transpose(1, 2), h, alpha=-lr / D)

    def load_into(self, models):
        """Copy the trained tensors back into the N single models."""
        with torch.no_grad():
            for l, L in enumerate(self.layers):
                start = 0
                for i, m in enumerate(models):
                    layer, k = m.layers[l], L["K"][i]
                    layer.weight.copy_(L["weight"][start : start + k])
                    layer.bias.copy_(L["bias"][start : start + k])
                    if layer.routed:
                        layer.router.copy_(L["router"][i])
                    start += k


# ---------------------------------------------------------------------------
# BP and MoE: stacked parameters, autograd on the sum of per-model losses
# ---------------------------------------------------------------------------
class _AutogradBatch(BatchedNet):
    def params(self):
        return [p for L in self.layers for p in L.values() if isinstance(p, torch.Tensor) and p.requires_grad]

    def extra_loss(self) -> torch.Tensor | float:
        return 0.0

    def train_step(self, x, y, lr) -> torch.Tensor:
        params = self.params()
        losses = self.losses(self.forward(x), y)
        total = losses.sum() + self.extra_loss()  # models share no parameter: each gets its own gradient
        grads = torch.autograd.grad(total, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(g, alpha=lr)
        return losses.detach()

    @staticmethod
    def dense(layers):
        return {"weight": _stack(la.weight[0] for la in layers).requires_grad_(),
                "bias": _stack(la.bias[0] for la in layers).requires_grad_()}


class BatchedBP(_AutogradBatch):
    """N BP nets stacked. The step asks autograd only for the gradient of the
    loss with respect to each layer's pre-activation a_l (backpropagation
    proper), then applies SGD to W_l in place, W_l -= lr dL/da_l^T h_l, in one
    batched matmul: the same update as SGD on autograd's dL/dW_l, without
    writing and re-reading a full weight gradient (the step is memory-bound).
    """

    def __init__(self, models: list[BPNet]):
        super().__init__(models)
        self.layers = [self.dense([m.layers[l] for m in models]) for l in range(self.depth)]

    def forward(self, x, keep_routes=False, trace=None):
        h = x
        for L, role in zip(self.layers, self.roles):
            a = torch.baddbmm(L["bias"].unsqueeze(1), h, L["weight"].transpose(1, 2))
            if trace is not None:
                trace.append((h, a))
            h = combine(role, h, branch(role, a))
        return (h, {}) if keep_routes else h

    def train_step(self, x, y, lr) -> torch.Tensor:
        trace = []
        losses = self.losses(self.forward(x, trace=trace), y)
        grads = torch.autograd.grad(losses.sum(), [a for _, a in trace])  # dL/da_l for every layer, every model
        with torch.no_grad():
            for L, (h, _), g in zip(self.layers, trace, grads):
                L["weight"].baddbmm_(g.transpose(1, 2), h, alpha=-lr)  # W -= lr (dL/da)^T h
                L["bias"].sub_(g.sum(1), alpha=lr)
        return losses.detach()

    def load_into(self, models):
        with torch.no_grad():
            for l, L in enumerate(self.layers):
                for i, m in enumerate(models):
                    m.layers[l].weight[0].copy_(L["weight"][i])
                    m.layers[l].bias[0].copy_(L["bias"][i])


class BatchedMoE(_AutogradBatch):
    """N MoE nets of one K: expert (model, k) is group m*K + k of one grouped matmul."""

    def __init__(self, models: list[MoENet]):
        super().__init__(models)
        self.k = models[0].areas
        if any(m.areas != self.k for m in models):
            raise ValueError("models: a MoE batch needs one K")
        self.balance_coef = models[0].balance_coef
        self.layers = []
        for l in range(self.depth):
            layers = [m.layers[l] for m in models]
            if l == self.depth - 1 or self.k == 1:
                L = self.dense(layers)
                L["gate"] = None if l == self.depth - 1 else _stack(la.gate for la in layers).requires_grad_()
            else:
                L = {"weight": _cat(la.weight for la in layers).requires_grad_(),
                     "bias": _cat(la.bias for la in layers).requires_grad_(),
                     "gate": _stack(la.gate for la in layers).requires_grad_()}
            self.layers.append(L)
        self._balance = 0.0

    def layer_areas(self, layer):
        return [self.k] * self.n

    def forward(self, x, keep_routes=False):
        h, routes, balance = x, {}, 0.0
        N, B = x.shape[:2]
        for l, (L, role) in enumerate(zip(self.layers, self.roles)):
            if L["gate"] is None:  # the dense output layer
                h = combine(role, h, branch(role, torch.baddbmm(L["bias"].unsqueeze(1), h, L["weight"].transpose(1, 2))))
                continue
            probs = torch.softmax(torch.bmm(h, L["gate"].transpose(1, 2)), dim=-1)  # (N, B, K)
            areas = torch.argmax(probs, dim=-1)
            if self.k == 1:
                a = torch.baddbmm(L["bias"].unsqueeze(1), h, L["weight"].transpose(1, 2))
                counts = torch.full((N, 1), B, device=x.device)
            else:
                groups = Groups.of((areas + self.k * torch.arange(N, device=x.device).unsqueeze(1)).reshape(-1), N * self.k)
                a = area_forward(h.reshape(N * B, -1), L["weight"], L["bias"], groups).view(N, B, -1)
                counts = groups.counts.view(N, self.k)
            p = probs.gather(-1, areas.unsqueeze(-1))
            f = counts.to(probs.dtype) / B
            balance = balance + self.k * (f * probs.mean(1)).sum()  # Switch: K sum_k f_k P_k, summed over models
            if keep_routes:
                routes[l] = areas
            h = combine(role, h, p * branch(role, a))
        self._balance = balance
        return (h, routes) if keep_routes else h

    def extra_loss(self):
        return self.balance_coef * self._balance

    def load_into(self, models):
        with torch.no_grad():
            for l, L in enumerate(self.layers):
                for i, m in enumerate(models):
                    layer = m.layers[l]
                    k = layer.num_areas
                    if L["weight"].dim() == 3 and L["weight"].shape[0] == self.n and k == 1:
                        layer.weight[0].copy_(L["weight"][i])
                        layer.bias[0].copy_(L["bias"][i])
                    else:
                        layer.weight.copy_(L["weight"][i * k : (i + 1) * k])
                        layer.bias.copy_(L["bias"][i * k : (i + 1) * k])
                    if L["gate"] is not None:
                        layer.gate.copy_(L["gate"][i])


BATCHES = {SALNet: BatchedSAL, BPNet: BatchedBP, MoENet: BatchedMoE}


def batchable(model) -> bool:
    return type(model) in BATCHES and not (
        isinstance(model, SALNet) and any(layer.router_readout is not None for layer in model.layers)
    )


# ---------------------------------------------------------------------------
# The loop: train() for N models at once
# ---------------------------------------------------------------------------
def train_many(models, data, *, epochs: int, batch_size: int, lr: float, seeds, progress=None, device=None,
               desc="batch", checkpoint=None, on_epoch=None) -> list[list[dict]]:
    """Train N models of one method and shape on one dataset, each with its
    own seed's data order, as one batched computation. Returns one history
    per model, as `train` would (and the models hold the trained weights).

    Divergence: a model whose loss or weights stop being finite stops
    recording; its last history entry carries `diverged: True` and its
    epoch. (It keeps being computed alongside the others, which it cannot
    affect: the models share no tensor.)

    `checkpoint`: a file written atomically at every epoch end (weights,
    generators, histories); if it exists when training starts, training
    resumes from it, and the result is bitwise that of an uninterrupted run.
    """
    x_train, y_train, x_val, y_val = unpack(data)
    check_training_args(epochs, batch_size, lr, x_train.shape[0])
    seeds = list(seeds)
    if len(seeds) != len(models):
        raise ValueError(f"seeds: one per model ({len(models)}), got {len(seeds)}")
    device = torch.device(device) if device is not None else next(models[0].parameters()).device
    if device.type == "cpu":
        keep_freed_memory()
    for m in models:
        m.to(device)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    net = BATCHES[type(models[0])](models)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n, N = x_train.shape[0], len(models)
    histories: list[list[dict]] = [[] for _ in models]
    alive = [True] * N
    start = 1
    if checkpoint is not None and Path(checkpoint).exists():
        start = _resume(checkpoint, net, gens, histories, alive, seeds) + 1
        if start > 1:
            log.info("%s: resumed from its checkpoint after epoch %d of %d (%s)", desc, start - 1, epochs, checkpoint)
            if on_epoch is not None:  # the epochs already done count as progress
                for e in range(1, start):
                    on_epoch(e)
    bar = tqdm(range(start, epochs + 1), desc=desc, disable=not show_progress(progress), leave=False,
               initial=start - 1, total=epochs)
    for epoch in bar:
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # each model its own order
        loss_sum = torch.zeros(N, device=device, dtype=torch.float64)
        for i in range(0, n, batch_size):
            idx = perms[:, i : i + batch_size]
            xb = x_train.index_select(0, idx.reshape(-1)).view(N, idx.shape[1], -1)
            yb = y_train.index_select(0, idx.reshape(-1)).view(N, idx.shape[1])
            loss_sum.add_(net.train_step(xb, yb, lr), alpha=idx.shape[1])  # in float64
        val = net.evaluate(x_val, y_val)
        train_loss = (loss_sum / n).tolist()  # the one read of the epoch
        val_loss = (val["loss"] / max(x_val.shape[0], 1)).tolist()
        val_acc = (val["correct"].double() / max(x_val.shape[0], 1)).tolist()
        occ = {layer: c.tolist() for layer, c in val["occupancy"].items()}
        finite = net.finite().tolist()
        for j in range(N):
            if not alive[j]:
                continue
            diverged = not (finite[j] and math.isfinite(train_loss[j]) and math.isfinite(val_loss[j]))
            histories[j].append({
                "epoch": epoch, "train_loss": train_loss[j], "val_loss": val_loss[j], "val_accuracy": val_acc[j],
                "occupancy": {layer: c[j][: net.layer_areas(layer)[j]] for layer, c in occ.items()
                              if net.layer_areas(layer)[j] > 1},
                **({"diverged": True} if diverged else {}),
            })
            alive[j] = not diverged
        bar.set_postfix(acc=f"{max(val_acc):.3f}")
        if checkpoint is not None and epoch < epochs:
            _save(checkpoint, epoch, net, gens, histories, alive, seeds)
        if on_epoch is not None:
            on_epoch(epoch)
    net.load_into(models)
    return histories


def _save(path, epoch, net, gens, histories, alive, seeds) -> None:
    """Atomically: write a temporary file beside the checkpoint, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"epoch": epoch, "seeds": seeds, "tensors": [t.detach().cpu() for t in net.tensors()],
             "generators": [g.get_state() for g in gens], "histories": histories, "alive": alive}
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _resume(path, net, gens, histories, alive, seeds) -> int:
    state = torch.load(path, weights_only=False)
    tensors = net.tensors()
    if state["seeds"] != seeds or len(state["tensors"]) != len(tensors) or any(
        a.shape != b.shape for a, b in zip(state["tensors"], tensors)
    ):
        return 0  # another batch's checkpoint: start afresh
    with torch.no_grad():
        for t, saved in zip(tensors, state["tensors"]):
            t.copy_(saved)
    for g, s in zip(gens, state["generators"]):
        g.set_state(s)
    histories[:] = state["histories"]
    alive[:] = state["alive"]
    return state["epoch"]
