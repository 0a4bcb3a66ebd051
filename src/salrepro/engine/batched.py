"""Many independent models of one shape, trained as one batched computation.

A step of a small model is dominated by per-call overhead, not arithmetic.
So the sweep runner stacks N independent models on a leading dimension and
takes every step for all of them at once:

- `BatchedSAL`: SAL nets that differ in seed and in K (mixed K in one batch:
  the (model, area) pair is one group index of a single grouped matmul);
- `BatchedBP`: BP nets that differ in seed (batched matmuls, autograd on the
  sum of the models' losses, whose gradients are each model's own);
- `BatchedMoE`: MoE nets of the same K that differ in seed;
- `BatchedSALBP`: SAL-BP nets that differ in seed and in K.

Every kind may also differ in learning rate: `train_many` takes one lr per
model, and each step gets them as an (N,) tensor, which the method's updates
fold into each model's own error or gradient (`dispatch.fold_lr`). So seeds,
K (SAL, SAL-BP) and learning rates train together; one lr for all models
takes the plain float path, unchanged.

Each model keeps its own initialisation (the stacks are built from models
made by `build_model`) and its own data order (its own generator), so that
its history equals training it alone (tested to 1e-5). The engine holds no
equation of its own: `BatchedSAL` stacks each layer's tensors on a leading
model dimension (`StackedAreaLayer`, the tensors of `sal.AreaLayer`) and
runs `sal.forward_trace` and `sal.learn`, the very lines that train one
model; `BatchedMoE` runs `baselines.moe_branch`.

No host synchronisation inside the step loop on CUDA (by design; not yet
measured on a GPU): losses, correct counts and occupancy accumulate on the
device and are read once per epoch, group counts come from a scatter rather
than bincount, and the area update takes the grouped path with
`nonzero_static` (on CPU, one MKL call over the areas present when a
layer has many, `blas.py`, else one in-place matmul per area present).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm  # text bars: tqdm.auto warns (with the machine's paths) in kernels without ipywidgets

from ..method.baselines import BPNet, MoENet, SALBPNet, bp_step, moe_branch, salbp_step, sgd_
from ..kernels import blas
from ..kernels.dispatch import Groups, dense
from ..method.models import method_of
from ..method.nets import branch, combine, cross_entropy, mean_cross_entropy
from ..method.sal import SALNet, forward_trace, learn, route, routes
from .train import check_training_args, keep_freed_memory, show_progress, unpack

log = logging.getLogger("salrepro")


def _cat(tensors) -> torch.Tensor:
    """The models' tensors concatenated (a new tensor); one model's is shared, not copied: a model
    alone (the widest nets) trains in its own memory, and `load_into` copies onto itself."""
    tensors = [t.detach() for t in tensors]
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _stack(tensors) -> torch.Tensor:
    """The models' tensors on a new leading dimension; one model's is a view of it (see `_cat`)."""
    tensors = [t.detach() for t in tensors]
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


# Checkpoints: written at every epoch end, unless the last one took more than CHECKPOINT_SECONDS to
# write; then only once 1 / CHECKPOINT_SHARE times that much training has passed since it.
CHECKPOINT_SECONDS, CHECKPOINT_SHARE = 1.0, 0.1

# Rows of the validation set evaluated at once: the forward pass keeps every layer's trace, so a
# chunk of rows costs about 3 x rows x width x depth floats per model (1.6 GB at 512 rows of the
# paper's widest net, width 4096 at depth 64); chunks are cut to stay under this many bytes.
EVAL_BYTES = 256e6


def eval_rows(n_models: int, width: int, depth: int, budget: float = EVAL_BYTES) -> int:
    """Validation rows per chunk: 512, or fewer for nets whose traces would outgrow `budget`."""
    return int(max(16, min(512, budget // (3 * 4 * n_models * width * depth))))


def peak_memory_bytes(device: torch.device) -> int | None:
    """The process's peak resident memory so far (CPU: getrusage), or the device's peak allocation (CUDA)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB
    except (ImportError, OSError):  # pragma: no cover - not a POSIX system
        return None


# ---------------------------------------------------------------------------
# Stacked layers: one layer of N models, their tensors on a leading dimension
# ---------------------------------------------------------------------------
@dataclass
class StackedLayer:
    """Weights of N models' layer l: weight (rows, out, in), bias (rows, out),
    where rows = N (one area each) or the sum of the models' area counts."""

    num_areas: list[int]  # K of each model in this layer
    weight: torch.Tensor
    bias: torch.Tensor
    _owners: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # owners(), computed once

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """The layer's floating-point tensors by name, in name order (checkpoints)."""
        named = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return sorted((n, t) for n, t in named if isinstance(t, torch.Tensor) and t.is_floating_point())

    def owners(self, name: str, rows: int) -> torch.Tensor:
        """Model index of each leading row of tensor `name` (computed once: no host sync in the step loop)."""
        if (name, rows) not in self._owners:
            n = len(self.num_areas)
            device = self.weight.device
            owner = torch.arange(n, device=device)
            if rows != n:
                owner = torch.repeat_interleave(owner, torch.tensor(self.num_areas, device=device))
            self._owners[name, rows] = owner
        return self._owners[name, rows]


@dataclass
class StackedAreaLayer(StackedLayer):
    """N SAL layers: the tensors of sal.AreaLayer, stacked, so that sal.py's
    `forward_trace` and `learn` run them as they run one layer. Models of
    different K: weight and bias concatenate every model's areas (model m's
    area k is row offsets[m] + k); router (N, r, in) and prototypes (N, r,
    Kmax) pad to the largest K, and `valid` marks each model's own areas."""

    feedback: torch.Tensor | None = None  # (N, C, out)
    router: torch.Tensor | None = None  # (N, r, in); zeros for one-area models
    prototypes: torch.Tensor | None = None  # (N, r, Kmax)
    valid: torch.Tensor | None = None  # (N, Kmax) bool
    router_active: torch.Tensor | None = None  # (N,) bool: the model has a router
    offsets: torch.Tensor | None = None  # (N,) first row of each model's areas
    router_readout: torch.Tensor | None = None  # (N, r, C): the frozen readout of z, only if r != C

    @property
    def routed(self) -> bool:
        return any(k > 1 for k in self.num_areas)

    def route(self, h):
        return route(h, self.router, self.prototypes, self.beyond)  # (1)-(3), per model

    @functools.cached_property
    def beyond(self) -> torch.Tensor:
        """(N, 1, Kmax): 0 at each model's own areas, -inf beyond its K (for `route`; not a checkpointed tensor)."""
        return torch.zeros(self.valid.shape, device=self.valid.device).masked_fill_(~self.valid, float("-inf")).unsqueeze(1)

    def groups_of(self, k):
        return Groups.of(k, self.weight.shape[0], self.offsets)

    @classmethod
    def stack(cls, layers, in_out: bool = False) -> "StackedAreaLayer":
        """`in_out`: a routed layer of several models on a CPU, where MKL's one-call path exists, keeps
        its areas' weights in (rows, in, out) storage, `weight` the transposed view (blas.in_out: MKL's
        products are faster so; torch's own path, SALREPRO_BLAS=torch, keeps the public layout and its
        numbers); a lone model's weights are shared, not copied, whatever the flag (`_cat`)."""
        ks = [layer.num_areas for layer in layers]
        dev = layers[0].weight.device
        if in_out and len(layers) > 1 and dev.type == "cpu" and any(k > 1 for k in ks) and blas.available():
            weight = torch.cat([la.weight.detach().transpose(1, 2) for la in layers]).transpose(1, 2)  # one copy
        else:
            weight = _cat(la.weight for la in layers)
        L = cls(ks, weight, _cat(la.bias for la in layers),
                feedback=None if layers[0].feedback is None else _stack(la.feedback for la in layers),
                offsets=torch.tensor([0] + ks[:-1], device=dev).cumsum(0))
        if L.routed:
            src = next(la for la in layers if la.routed)
            r, kmax = src.router.shape[0], max(ks)
            L.router = torch.zeros(len(layers), r, layers[0].in_features, device=dev)
            if src.router_readout is not None:  # one options set per batch: every routed model has one
                L.router_readout = torch.zeros(len(layers), r, src.router_readout.shape[1], device=dev)
            L.prototypes = torch.zeros(len(layers), r, kmax, device=dev)
            L.valid = torch.zeros(len(layers), kmax, dtype=torch.bool, device=dev)
            for i, la in enumerate(layers):
                if la.routed:
                    L.router[i] = la.router.detach()
                    L.prototypes[i, :, : la.num_areas] = la.prototypes
                    if L.router_readout is not None:
                        L.router_readout[i] = la.router_readout
                L.valid[i, : la.num_areas] = True
            L.router_active = torch.tensor([la.routed for la in layers], device=dev)
        return L


@dataclass
class StackedMoELayer(StackedLayer):
    """N MoE layers of one K (expert k of model m is row m*K + k), or the dense output layer (gate None)."""

    gate: torch.Tensor | None = None  # (N, K, in)
    offsets: torch.Tensor | None = None  # (N,) m*K


class BatchedNet:
    """Common frame: N models, their roles, batched forward and evaluation."""

    layers: list[StackedLayer]

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
        self.num_areas = [m.num_areas for m in models]

    def losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per model, (N,)."""
        return mean_cross_entropy(logits, y)

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
        return self.layers[layer].num_areas

    def tensors(self) -> list[torch.Tensor]:
        """Every trained tensor, in a fixed order (checkpoints)."""
        return [t for L in self.layers for _, t in L.tensors()]

    @torch.no_grad()
    def finite(self) -> torch.Tensor:
        """(N,) bool: are all of a model's weights finite?"""
        ok = torch.ones(self.n, dtype=torch.bool, device=self.tensors()[0].device)
        for L in self.layers:
            for name, t in L.tensors():
                flat = t.detach().flatten(1)  # NaN propagates to amax and amin; inf and -inf show at the ends
                rows = torch.isfinite(flat.amax(1)) & torch.isfinite(flat.amin(1))  # 0.13 ms vs 2.2 for isfinite().all()
                owner = L.owners(name, rows.shape[0])
                ok &= torch.zeros(self.n, device=t.device).index_add_(0, owner, (~rows).float()) == 0
        return ok


# ---------------------------------------------------------------------------
# SAL: sal.py's forward pass and learning rule on stacked layers
# ---------------------------------------------------------------------------
class BatchedSAL(BatchedNet):
    """N SAL nets (any K each) of one shape and one set of options."""

    def __init__(self, models: list[SALNet]):
        super().__init__(models)
        first = models[0]
        self.divisor, self.selector_lr_scale = first.divisor, first.selector_lr_scale
        if any((m.divisor, m.selector_lr_scale) != (self.divisor, self.selector_lr_scale) for m in models):
            raise ValueError("models: a SAL batch needs one divisor and selector_lr_scale")
        self.layers = [StackedAreaLayer.stack([m.layers[l] for m in models], in_out=True) for l in range(self.depth)]

    def forward(self, x, keep_routes=False):
        traces, logits = forward_trace(self.layers, self.roles, x)
        if keep_routes:
            return logits, routes(traces)
        return logits

    @torch.no_grad()
    def train_step(self, x, y, lr) -> torch.Tensor:
        """One SAL step for every model; x (N, B, in), y (N, B), lr a float or (N,).
        Returns (N,) losses."""
        traces, logits = forward_trace(self.layers, self.roles, x)
        return learn(self.layers, self.roles, traces, logits, y, lr, self.divisor, self.selector_lr_scale)

    def load_into(self, models):
        """Copy the trained tensors back into the N single models."""
        with torch.no_grad():
            for l, L in enumerate(self.layers):
                start = 0
                for i, m in enumerate(models):
                    layer, k = m.layers[l], L.num_areas[i]
                    layer.weight.copy_(L.weight[start : start + k])
                    layer.bias.copy_(L.bias[start : start + k])
                    if layer.routed:
                        layer.router.copy_(L.router[i])
                    start += k


# ---------------------------------------------------------------------------
# BP and MoE: stacked parameters, autograd on the sum of per-model losses
# ---------------------------------------------------------------------------
def _dense_stack(layers, cls=StackedLayer, **extra):
    return cls([1] * len(layers), _stack(la.weight[0] for la in layers).requires_grad_(),
               _stack(la.bias[0] for la in layers).requires_grad_(), **extra)


class BatchedBP(BatchedNet):
    """N BP nets stacked, trained by baselines.bp_step (one batched matmul per layer)."""

    def __init__(self, models: list[BPNet]):
        super().__init__(models)
        self.layers = [_dense_stack([m.layers[l] for m in models]) for l in range(self.depth)]

    def forward(self, x, keep_routes=False):
        h = x
        for L, role in zip(self.layers, self.roles):
            h = combine(role, h, branch(role, dense(h, L.weight, L.bias)))
        return (h, {}) if keep_routes else h

    def train_step(self, x, y, lr) -> torch.Tensor:
        return bp_step(self.layers, self.roles, x, y, lr)

    def load_into(self, models):
        with torch.no_grad():
            for l, L in enumerate(self.layers):
                for i, m in enumerate(models):
                    m.layers[l].weight[0].copy_(L.weight[i])
                    m.layers[l].bias[0].copy_(L.bias[i])


class BatchedMoE(BatchedNet):
    """N MoE nets of one K (baselines.moe_branch on stacked layers), trained by
    autograd on the sum of the models' losses, whose gradients are each model's own."""

    def __init__(self, models: list[MoENet]):
        super().__init__(models)
        self.num_experts = models[0].num_areas
        if any(m.num_areas != self.num_experts for m in models):
            raise ValueError("models: a MoE batch needs one K")
        self.balance_coef = models[0].balance_coef
        self.layers = []
        for l in range(self.depth):
            layers = [m.layers[l] for m in models]
            if l == self.depth - 1:  # the dense output layer
                self.layers.append(_dense_stack(layers, StackedMoELayer))
                continue
            dev = layers[0].weight.device
            self.layers.append(StackedMoELayer(
                [self.num_experts] * self.n, _cat(la.weight for la in layers).requires_grad_(),
                _cat(la.bias for la in layers).requires_grad_(),
                gate=_stack(la.gate for la in layers).requires_grad_(),
                offsets=self.num_experts * torch.arange(self.n, device=dev)))
        self._balance = 0.0

    def params(self):
        return [t for L in self.layers for _, t in L.tensors()]

    def owners(self):
        """The model of each leading row of each of `params()` (for a per-model lr)."""
        return [L.owners(name, t.shape[0]) for L in self.layers for name, t in L.tensors()]

    def layer_areas(self, layer):
        return [self.num_experts] * self.n

    def forward(self, x, keep_routes=False):
        h, routes, balance = x, {}, 0.0
        for l, (L, role) in enumerate(zip(self.layers, self.roles)):
            if L.gate is None:  # the dense output layer
                h = combine(role, h, branch(role, dense(h, L.weight, L.bias)))
                continue
            out, experts, layer_balance = moe_branch(role, h, L.weight, L.bias, L.gate, L.offsets)
            balance = balance + layer_balance
            if keep_routes:
                routes[l] = experts
            h = combine(role, h, out)
        self._balance = balance
        return (h, routes) if keep_routes else h

    def train_step(self, x, y, lr) -> torch.Tensor:
        params = self.params()
        losses = self.losses(self.forward(x), y)
        total = losses.sum() + self.balance_coef * self._balance  # models share no parameter: each gets its own gradient
        sgd_(params, torch.autograd.grad(total, params), lr, self.owners())  # lr: a float or (N,)
        return losses.detach()

    def load_into(self, models):
        with torch.no_grad():
            for l, L in enumerate(self.layers):
                for i, m in enumerate(models):
                    layer = m.layers[l]
                    k = layer.num_areas
                    layer.weight.copy_(L.weight[i * k : (i + 1) * k])
                    layer.bias.copy_(L.bias[i * k : (i + 1) * k])
                    if L.gate is not None:
                        layer.gate.copy_(L.gate[i])


class BatchedSALBP(BatchedSAL):
    """N SAL-BP nets (any K each): SAL's stacked layers, trained by baselines.salbp_step."""

    def __init__(self, models: list[SALBPNet]):
        BatchedNet.__init__(self, models)
        self.selector_lr_scale = models[0].selector_lr_scale
        if any(m.selector_lr_scale != self.selector_lr_scale for m in models):
            raise ValueError("models: a SAL-BP batch needs one selector_lr_scale")
        self.layers = [StackedAreaLayer.stack([m.layers[l] for m in models]) for l in range(self.depth)]
        for L in self.layers:
            L.weight.requires_grad_()
            L.bias.requires_grad_()

    def train_step(self, x, y, lr) -> torch.Tensor:
        return salbp_step(self.layers, self.roles, x, y, lr, self.selector_lr_scale)


BATCHES = {SALNet: BatchedSAL, BPNet: BatchedBP, MoENet: BatchedMoE, SALBPNet: BatchedSALBP}  # every method whose
# record (method/models.py) says `batched`: a test holds the two to each other


def batchable(model) -> bool:
    """Whether several models of this one's method train stacked in one step (its record's `batched`)."""
    if not method_of(model.method).batched:
        return False
    if type(model) not in BATCHES:
        raise ValueError(f"method {model.method!r}: its record says batched, but engine/batched.py BATCHES has no "
                         f"stacked class for {type(model).__name__}")
    return True


# ---------------------------------------------------------------------------
# The loop: train() for N models at once
# ---------------------------------------------------------------------------
def train_many(models, data, *, epochs: int, batch_size: int, lr, seeds, progress=None, device=None,
               desc="batch", checkpoint=None, on_epoch=None, stats=None) -> list[list[dict]]:
    """Train N models of one method and shape on one dataset, each with its
    own seed's data order, as one batched computation. Returns one history
    per model, as `train` would (and the models hold the trained weights).

    `lr`: one number for every model, or a sequence of one per model (a
    learning-rate grid trains together; if they are all equal, it is the
    one-number path, bit for bit).

    Divergence: a model whose loss or weights stop being finite stops
    recording; its last history entry carries `diverged: True` and its
    epoch. (It keeps being computed alongside the others, which it cannot
    affect: the models share no tensor.)

    `checkpoint`: a file written atomically at epoch ends (weights,
    generators, histories); if it exists when training starts, training
    resumes from it, and the result is bitwise that of an uninterrupted run.
    It is written at every epoch end unless the last write took over
    CHECKPOINT_SECONDS (the widest nets: 17 GB a write); then once ten times
    that much training has passed since (CHECKPOINT_SHARE). Writing streams the
    tensors to disk: no copy of the weights is made in memory.
    A resume reads the checkpoint memory-mapped (`torch.load(mmap=True)`): the
    weights are copied in from the page cache, not from a second copy in
    memory (a 4096-wide net's checkpoint is 17 GB; the process's peak resident
    memory then counts those file pages, which the kernel can reclaim).
    `stats` (a dict, if given) receives the mean seconds per step, the peak
    memory (`peak_memory_bytes`) and the seconds trained before a resume
    (`resumed_seconds`, carried by the checkpoint) once training ends.
    """
    x_train, y_train, x_val, y_val = unpack(data)
    lrs = learning_rates(lr, len(models), lambda v: check_training_args(epochs, batch_size, v, x_train.shape[0]))
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
    if len(set(lrs)) > 1:  # one per model: an (N,) tensor, which each update folds in
        lr = torch.tensor(lrs, device=device, dtype=net.tensors()[0].dtype)
    elif not isinstance(lr, (int, float)):  # a sequence of equal values: the one-number path
        lr = lrs[0]
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n, N = x_train.shape[0], len(models)
    histories: list[list[dict]] = [[] for _ in models]
    alive = [True] * N
    start, before, t_start = 1, 0.0, time.perf_counter()  # before: seconds trained before a resume
    if checkpoint is not None and Path(checkpoint).exists():
        done, before = _resume(checkpoint, net, gens, histories, alive, seeds, lrs)
        start = done + 1
        if start > 1:
            log.info("%s: resumed from its checkpoint after epoch %d of %d (%s)", desc, start - 1, epochs, checkpoint)
            if on_epoch is not None:  # the epochs already done count as progress
                for e in range(1, start):
                    on_epoch(e)
    bar = tqdm(range(start, epochs + 1), desc=desc, disable=not show_progress(progress), leave=False,
               initial=start - 1, total=epochs)
    chunk = eval_rows(N, models[0].hidden, models[0].depth)
    steps, stepping = 0, 0.0  # steps taken here and their seconds (the step time a record reports)
    trained, last_write = 0.0, 0.0  # seconds trained since the last checkpoint, and what writing that one cost
    for epoch in bar:
        t0 = time.perf_counter()
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # each model its own order
        loss_sum = torch.zeros(N, device=device, dtype=torch.float64)
        for i in range(0, n, batch_size):
            steps += 1
            idx = perms[:, i : i + batch_size]
            xb = x_train.index_select(0, idx.reshape(-1)).view(N, idx.shape[1], -1)
            yb = y_train.index_select(0, idx.reshape(-1)).view(N, idx.shape[1])
            loss_sum.add_(net.train_step(xb, yb, lr), alpha=idx.shape[1])  # in float64
        stepping += time.perf_counter() - t0
        val = net.evaluate(x_val, y_val, chunk)
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
        trained += time.perf_counter() - t0
        if checkpoint is not None and epoch < epochs and (last_write <= CHECKPOINT_SECONDS
                                                          or trained * CHECKPOINT_SHARE >= last_write):
            t1 = time.perf_counter()
            _save(checkpoint, epoch, net, gens, histories, alive, seeds, lrs,
                  seconds=before + time.perf_counter() - t_start)
            trained, last_write = 0.0, time.perf_counter() - t1
        if on_epoch is not None:
            on_epoch(epoch)
    net.load_into(models)
    if stats is not None:  # on CUDA the steps are asynchronous: the last epoch's read waited for them
        stats.update(step_seconds=stepping / steps if steps else None, peak_memory_bytes=peak_memory_bytes(device),
                     resumed_seconds=before)
    return histories


def learning_rates(lr, n: int, check) -> list[float]:
    """One learning rate per model, from one number or a sequence of n; `check(value)` validates each."""
    if isinstance(lr, (int, float)):
        check(lr)  # one number (or a bad one, bool included: check names it)
        return [float(lr)] * n
    try:
        values = list(lr)
    except TypeError:
        check(lr)  # neither a number nor a sequence: check names it
        raise
    if len(values) != n:
        raise ValueError(f"lr: one number, or one per model ({n}), got {len(values)}")
    for i, v in enumerate(values):
        try:
            check(v)
        except ValueError as e:
            raise ValueError(f"{e} (the lr of model {i} of {n})") from None
    return [float(v) for v in values]


def _save(path, epoch, net, gens, histories, alive, seeds, lrs, seconds: float = 0.0) -> None:
    """Atomically: write a temporary file beside the checkpoint, then rename. `seconds`: the wall time
    trained so far, resumes included."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"epoch": epoch, "seeds": seeds, "lrs": lrs, "tensors": [t.detach().cpu() for t in net.tensors()],
             "generators": [g.get_state() for g in gens], "histories": histories, "alive": alive, "seconds": seconds}
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _resume(path, net, gens, histories, alive, seeds, lrs) -> tuple[int, float]:
    """(epochs done, seconds trained) from the checkpoint, its state loaded into the run; (0, 0.0) for
    another batch's checkpoint."""
    state = torch.load(path, weights_only=False, mmap=True)  # tensors map the file: no second copy in memory
    tensors = net.tensors()
    if state["seeds"] != seeds or state.get("lrs", lrs) != lrs or len(state["tensors"]) != len(tensors) or any(
        a.shape != b.shape for a, b in zip(state["tensors"], tensors)
    ):
        return 0, 0.0  # another batch's checkpoint: start afresh
    with torch.no_grad():
        for t, saved in zip(tensors, state["tensors"]):
            t.copy_(saved)
    for g, s in zip(gens, state["generators"]):
        g.set_state(s)
    histories[:] = state["histories"]
    alive[:] = state["alive"]
    return state["epoch"], float(state.get("seconds", 0.0))  # checkpoints written before "seconds" existed: 0
