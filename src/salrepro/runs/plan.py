"""How a grid of runs is cut into batches (`plan_batches`), from a cost model of each run's time and memory fitted
on measured steps, and whether a batch fits the memory free (`check_fits`)."""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

from ..data import TRAIN_SIZES
from ..engine.batched import batchable
from ..engine.hardware import SetupError, available_bytes, cpu_batch_bytes
from ..method.models import build_model, count_parameters, method_of
from .keys import DATA_SHAPES, RunConfig

log = logging.getLogger("salrepro")


# Float32 bytes of weights trained together in one batch (models no larger than this are "small": on
# a CPU their batches train side by side in single-threaded workers, engine/workers.py); on a GPU,
# larger batches only fill it better.
MAX_BATCH_BYTES = {"cpu": cpu_batch_bytes(), "cuda": 8e9}
# The methods whose areas train by autograd through torch's grouped matmul (MoE, SAL-BP) slow down
# in larger CPU batches whatever the cache: on the Intel Xeon, 5 seeds of MNIST MoE-16 took 5.9 s for
# 600 steps one model a batch (16 MB) and 12.2 s as one batch; SAL-BP-4/16 7.6 s against 16.8 s. On a
# CPU their batches keep to this many bytes.
AUTOGRAD_AREA_BATCH_BYTES = 16e6  # for the methods whose record says autograd_areas (method/models.py)
# A model whose weights alone outgrow that budget (the deep and wide nets of
# Figures 2-3) streams them from memory whatever it trains with; such models
# train together up to this many bytes, sharing every layer's per-call costs
# (measured on 2 cores, depth 64, batch 16, SAL-4: 48.4 ms a step alone, 21.8
# per model with 5 seeds together at width 256; 284 -> 191 ms with 3 at 1024).
MAX_LARGE_BATCH_BYTES = {"cpu": 4e9, "cuda": 8e9}
@dataclass(frozen=True)
class Plan:
    """How a grid is cut into batches, stated by the profile (params.yaml `plan`) so that the same profile
    plans the same batches on every machine: the numbers of a chaotic configuration depend on the batch it
    trains in (its stacked products round differently), so a plan that followed the machine's cache or
    cores would make another machine report other numbers. `workers` is the count the plan splits for;
    the processes that run the batches follow the machine (engine/workers.py) and change nothing but time."""

    batch_bytes: float  # weights of small models trained together in one batch
    large_bytes: float  # ... of models larger than that alone (the deep and wide nets), batched together
    workers: int  # the small batches of a group are cut to a multiple of this

    @classmethod
    def from_params(cls, plan: dict) -> "Plan":
        return cls(plan["batch_mb"] * 1e6, plan["large_batch_mb"] * 1e6, plan["workers"])

    def as_record(self) -> dict:
        return {"batch_mb": self.batch_bytes / 1e6, "large_batch_mb": self.large_bytes / 1e6, "workers": self.workers}


def batch_key(config: RunConfig):
    """Configurations with equal keys train together: same dataset, method,
    shape, epochs, batch size and options; seeds and learning rates may
    differ; a batch mixes K where the method's record says so (SAL, SAL-BP; not MoE). Methods whose
    record is not `batched` (fa, dfa) train alone."""
    if not batchable(meta_model(config)):
        return None
    spec = method_of(config.method)
    return (config.dataset, config.data_options, config.method, config.depth, config.hidden, config.epochs,
            config.batch_size, config.options, config.num_areas if spec.areas and not spec.mixed_areas else 0)


SPLIT_SHARE = 0.5  # with workers, a group splits if it holds >= SPLIT_SHARE / workers of the small models' time


def plan_batches(configs: list[RunConfig], max_bytes: float = MAX_BATCH_BYTES["cpu"],
                 large_bytes: float = MAX_LARGE_BATCH_BYTES["cpu"], workers: int = 1,
                 autograd_bytes: float | None = AUTOGRAD_AREA_BATCH_BYTES) -> list[list[int]]:
    """Indices of `configs` grouped into batches, each within a weight budget:
    `max_bytes` (`autograd_bytes`, if smaller, for MoE and SAL-BP: the CPU's; None on
    a GPU), or `large_bytes` for models larger than `max_bytes` on their own
    (they batch only with each other).

    With `workers` > 1, the small models of each group that could train
    together are split into as many batches as the budget needs, rounded up
    to a multiple of `workers` (at most one per model), so that the workers
    share them evenly (`_split_evenly`: of about equal estimated training
    time, `train_seconds`, where there is one batch per worker; of about
    equal bytes where there are more); except a group that holds less than
    1 / (2 x workers) of all the small models' time (SPLIT_SHARE): it is cut
    by the budget alone, usually one batch, since each batch pays a step's
    fixed cost (its calls), which splitting repeats (measured on the Digits
    grid, one thread: BP's 5 seeds train in 1.0 s as one batch, 0.91 + 0.78 s
    as two). Those whole batches count as load in the split of the group with
    the most time, where it splits one batch per worker: on the Digits grid, SAL's 25 models go 16 and 9, BP's 5
    seeds beside the 9 (equal bytes, 14 and 11, left one worker idle for a
    sixth of the grid: 3.4-3.7 -> 3.2-3.3 s, alternated on the Xeon)."""
    groups: dict = {}
    batches = []
    for i, c in enumerate(configs):
        key = batch_key(c)
        if key is None:
            batches.append([i])
        else:
            groups.setdefault(key, []).append(i)

    def small(idx):
        return [i for i in idx if weight_bytes(configs[i]) <= max_bytes]

    def budget_of(idx):  # for the small models
        if method_of(configs[idx[0]].method).autograd_areas and autograd_bytes is not None:
            return min(max_bytes, autograd_bytes)
        return max_bytes

    seconds = {key: sum(train_seconds(configs[i]) for i in small(idx)) for key, idx in groups.items()}
    all_small = sum(seconds.values())  # the small models' time, per group and in all
    split = [key for key in groups if workers > 1 and seconds[key] and seconds[key] >= SPLIT_SHARE * all_small / workers]
    whole = []  # the batches cut by the budget alone: every group's large models, the small ones of groups that do not split
    for key, idx in groups.items():
        budget = budget_of(idx)
        if key in split:  # the small models split below; the large ones here, as with one worker
            idx = [i for i in idx if weight_bytes(configs[i]) > max_bytes]
        open_batches: dict[bool, tuple[list[int], float]] = {}  # small / large models: (batch, bytes)
        for i in idx:
            b = weight_bytes(configs[i])
            large = b > max_bytes
            current, size = open_batches.get(large, ([], 0.0))
            if current and size + b > (large_bytes if large else budget):
                whole.append(current)
                current, size = [], 0.0
            current.append(i)
            open_batches[large] = (current, size + b)
        whole.extend(current for current, _ in open_batches.values())
    batches.extend(whole)
    # the small whole batches load the bins of the group with the most time
    preload = [batch_seconds([configs[i] for i in b]) for b in whole if weight_bytes(configs[b[0]]) <= max_bytes]
    for key in sorted(split, key=lambda key: -seconds[key]):
        idx = small(groups[key])
        batches.extend(_split_evenly(idx, [weight_bytes(configs[i]) for i in idx],
                                     [train_seconds(configs[i]) for i in idx], budget_of(idx), workers, preload))
        preload = []
    return sorted(batches, key=lambda b: b[0])


def _split_evenly(idx: list[int], sizes: list[float], costs: list[float], max_bytes: float, workers: int,
                  preload: list[float] = ()) -> list[list[int]]:
    """`idx` in n batches: n the batches their `sizes` need under `max_bytes`, rounded up to a multiple of
    `workers`, at most one per index. With one batch per worker (n = workers), each is that worker's share:
    the batches take about equal total `costs` (seconds) with the `preload` (other batches, trained beside
    these) counted in, each preload onto the lightest batch so far, largest first, then the indices, most
    costly first, each onto the lightest batch it fits in (within `max_bytes`; the lightest of all if
    none). With more batches than workers, the pool hands them out as workers come free and the whole
    batches end the queue: the batches take about equal `sizes` (bytes), each index onto the lightest."""
    if not idx:
        return []
    n = max(workers, math.ceil(sum(sizes) / max_bytes))
    n = min(len(idx), -(-n // workers) * workers)
    bins: list[list[int]] = [[] for _ in range(n)]
    load, filled = [0.0] * n, [0.0] * n
    if n > workers:  # by bytes alone
        costs, preload = sizes, ()
    for cost in sorted(preload, reverse=True):
        load[min(range(n), key=load.__getitem__)] += cost
    for i, size, cost in sorted(zip(idx, sizes, costs), key=lambda t: -t[2]):  # stable: equal costs keep their order
        fits = [j for j in range(n) if filled[j] + size <= max_bytes] or range(n)
        j = min(fits, key=load.__getitem__)
        bins[j].append(i)
        load[j], filled[j] = load[j] + cost, filled[j] + size
    return [sorted(b) for b in bins if b]


# A batch's training time on one thread, estimated to balance the workers' loads (never to size a batch:
# its bytes do that). A step costs the training loop's own time, a fixed time per layer for its calls
# (the area machinery of a routed layer: routing, sorting, scattering; autograd's graph for BP, MoE,
# SAL-BP), and for each model its arithmetic (forward, update, error: 6 flops per active weight and
# sample), the bytes of the areas its samples touch (SAL: read, then read and written, 12 bytes a weight;
# autograd adds a gradient written and read and the backward pass's read: 24) and a little more.
# Fitted (least squares of the log ratio) to 23 batches on a 2-core Intel Xeon, one thread, real data,
# batch 16, hidden 256, ms a step measured / estimated: Digits BP x1 0.19 / 0.18, x10 0.49 / 0.50; SAL-1
# x25 0.80 / 0.82; SAL-2 x5 0.63 / 0.71; SAL-16 x5 0.87 / 0.82, x15 1.47 / 1.40; SAL-1..16 x10 1.06 /
# 0.96, x25 1.69 / 1.60; MNIST BP x5 1.14 / 1.22; SAL-1 x5 1.00 / 0.93; SAL-16 x2 1.59 / 1.53; the MNIST
# grid's batches of 31 MB, K 1..16: 2.11 / 2.21, 2.46 / 2.49, 2.65 / 3.07 (all 23 within -9% and +16%).
FLOPS_PER_SECOND, BYTES_PER_SECOND, MODEL_STEP_SECONDS = 150e9, 72e9, 16e-6
LAYER_STEP_SECONDS = {"routed": 5.2e-4, "autograd": 7.5e-5, "dense": 1.6e-5}
LOOP_STEP_SECONDS = 7e-5  # batching, learning rates, losses: a run's time over its steps' (Digits BP x5: 0.39 / 0.32 ms)


def steps_of(c: RunConfig) -> int:
    """Training steps of a configuration (the dataset's training-split size; 1000 samples if unknown)."""
    return c.epochs * -(-TRAIN_SIZES.get(c.dataset, 1000) // c.batch_size)


def train_seconds(c: RunConfig) -> float:
    """Estimated seconds one model adds to its batch's training on one thread (see FLOPS_PER_SECOND)."""
    seconds, per_weight = MODEL_STEP_SECONDS, 24 if method_of(c.method).autograd else 12
    for layer in meta_model(c).layers:
        K, area = layer.num_areas, layer.weight[0].numel() + layer.bias[0].numel()
        touched = K * (1 - (1 - 1 / K) ** c.batch_size)  # areas with samples, expected under even routing
        shared = sum(p.numel() for name, p in layer.named_parameters() if name not in ("weight", "bias"))
        seconds += 6 * c.batch_size * (area + shared) / FLOPS_PER_SECOND + per_weight * touched * area / BYTES_PER_SECOND
    return steps_of(c) * seconds


def batch_seconds(configs: list[RunConfig]) -> float:
    """Estimated seconds to train these configurations together on one thread: the models' own time and,
    at every step, the loop's and each layer's fixed time (see FLOPS_PER_SECOND)."""
    c = configs[0]
    kinds = ["routed" if max(layers) > 1 else "autograd" if method_of(c.method).autograd else "dense"
             for layers in zip(*([layer.num_areas for layer in meta_model(x).layers] for x in configs))]
    return steps_of(c) * (LOOP_STEP_SECONDS + sum(LAYER_STEP_SECONDS[k] for k in kinds)) + sum(map(train_seconds, configs))


@functools.lru_cache(maxsize=4096)
def meta_model(c: RunConfig):
    """The configuration's model on the meta device (shapes, no memory)."""
    n_in, n_cls = DATA_SHAPES.get(c.dataset, (784, 10))
    return build_model(c.method, n_in, n_cls, hidden=c.hidden, depth=c.depth, num_areas=c.num_areas, device="meta",
                       **dict(c.options))


def weight_bytes(c: RunConfig) -> float:
    """Float32 bytes of a configuration's weights."""
    return 4.0 * count_parameters(meta_model(c)).total


def tensor_bytes(c: RunConfig) -> float:
    """Float32 bytes of every tensor of a configuration's model: the trained weights, biases and routers,
    and the frozen prototypes, feedback matrices and router readouts."""
    m = meta_model(c)
    return 4.0 * (sum(t.numel() for t in m.parameters()) + sum(t.numel() for t in m.buffers()))


def training_bytes(configs: list[RunConfig], data_bytes: float = 0.0, val_rows: int = 512) -> float:
    """The memory a batch of configurations needs to train (`train_many`), estimated before anything is
    built: its models' tensors, once more for the stacked copy when several models train together (a model
    alone trains in its own tensors), once more for autograd's weight gradients (MoE, SAL-BP), the
    activations of a step and, for SAL's forward pass that keeps every layer's trace, of an evaluation
    chunk (batched.eval_rows, at most `val_rows`), and the dataset's tensors. Tested against the resident
    memory measured on a net alone (tests/test_runs.py: within 30%)."""
    from ..engine.batched import EVAL_BYTES, eval_rows

    c, n = configs[0], len(configs)
    models = sum(tensor_bytes(x) for x in configs)
    spec = method_of(c.method)
    copies = 1 + (n > 1) + spec.autograd_areas
    steps = 4.0 * 4 * n * c.batch_size * c.hidden * c.depth  # x, sorted x, a, delta per layer
    traces = 4.0 * 3 * min(val_rows, eval_rows(n, c.hidden, c.depth, EVAL_BYTES)) * n * c.hidden * c.depth
    return copies * models + steps + (traces if spec.traces else 0.0) + data_bytes


def check_fits(configs: list[RunConfig], data_bytes: float = 0.0, available: float | None = None,
               val_rows: int = 512) -> None:
    """SetupError, before any allocation, when a batch cannot fit in the memory free now; the message
    names the sizes. On the CPU only (a GPU's memory is its own; it raises OutOfMemoryError)."""
    need = training_bytes(configs, data_bytes, val_rows)
    free = available_bytes() if available is None else available
    if free is None or need <= free:
        return
    c = configs[0]
    what = f"{c.label} depth {c.depth} width {c.hidden}" + (f" x{len(configs)} trained together" if len(configs) > 1 else "")
    raise SetupError(f"{what}: needs about {need / 1e9:.1f} GB to train ({sum(tensor_bytes(x) for x in configs) / 1e9:.1f} GB "
                     f"of tensors), {free / 1e9:.1f} GB free now; free memory, or train it on a machine with more")


