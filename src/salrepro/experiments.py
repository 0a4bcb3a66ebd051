"""Experiment runs: one configuration = one trained model = one result record.

    configs = grid("digits", methods=[("bp", 1), ("sal", 4)], seeds=range(5), epochs=25)
    results = run_all(configs, store="results/runs/digits")
    table = summarize(results)

A result record is a plain dict (JSON-serialisable): the configuration, the
per-epoch history, final metrics, parameter counts, wall time, device and the
code version. With a `store` folder, every finished run is written atomically
(temporary file, then rename) under a name derived from its configuration
and the code version; a rerun skips runs already stored, so an interrupted
sweep resumes where it stopped and never reads a half-written file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns (with the machine's paths) in kernels without ipywidgets

from .engine import workers as pool
from .engine.batched import batchable, train_many
from .data import DATA_OPTIONS, DATASETS, IN_FEATURES, NUM_CLASSES, TRAIN_SIZES, data_options, display_name
from .method.models import build_model, count_parameters, method_of, reading_of
from .method.models import label as method_label
from .engine.train import show_progress, train, unpack

log = logging.getLogger("salrepro")


def package_version() -> str:
    """salrepro's version, from the installed package's metadata (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("salrepro")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"

@functools.lru_cache(maxsize=1)
def code_commit() -> dict:
    """The git commit of the checkout the package runs from, and whether its code (src/) differs from
    that commit: {"commit": sha or None (not a git checkout), "dirty": bool}. Asked once per process."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "src"],
                                capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


# Bump when a change to the package changes results (not when it only speeds
# things up): stored runs of another version are recomputed, never reused.
RESULTS_VERSION = "1"


def last_level_cache_bytes() -> int | None:
    """The size of the CPU's last-level cache (Linux sysfs), None where unknown."""
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
            units = {"K": 2**10, "M": 2**20, "G": 2**30}
            nbytes = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError):
            continue
        if best is None or level > best[0]:
            best = (level, nbytes)
    return best[1] if best else None


def cpu_batch_bytes(cache: int | None = None) -> float:
    """Weights trained together in one CPU batch: half the last-level cache, between 16 and 32 MB.
    A batch whose weights outgrow the cache turns cache-hot single runs into DRAM-bound ones: on an
    AMD EPYC with 32 MB of L3, 25 MNIST-sized SAL nets batched were slower than one at a time (16 MB
    was best there). A virtual machine reports its host's cache, not the share it gets: an Intel Xeon
    VM reporting 504 MB of L3 streams one thread's in-place add at 42 GB/s up to 32 MB and at 22 GB/s
    from 128 MB, and there, with two workers side by side, one epoch of the MNIST Table 2 grid took
    28.0 and 28.1 s in batches of 32 MB against 39.0 and 38.4 s in batches of 256 MB (alternated; 16 MB:
    37.4-38.3 s against 47.3-49.2 s for 256 MB in a slower state of the same machine, 64 and 128 MB
    as slow as 256). (Before the workers, in one process with two threads, another such VM ran the
    grid faster in batches of 115 MB than of 16 MB.)"""
    cache = last_level_cache_bytes() if cache is None else cache
    return float(min(32e6, max(16e6, (cache or 32 * 2**20) / 2)))


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


# (input features, classes) of each dataset, to size batches before loading data.
DATA_SHAPES = {name: (IN_FEATURES[name], NUM_CLASSES[name]) for name in DATASETS}


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    method: str
    num_areas: int = 1  # K; run records and tables name it `areas`, as the paper's CSVs do
    depth: int = 2
    hidden: int = 256
    seed: int = 0
    epochs: int = 25
    batch_size: int = 16
    lr: float = 1e-4
    options: tuple = field(default=())  # sorted (name, value) pairs of method options
    data_options: tuple = field(default=())  # sorted (name, value) pairs of data options, defaults filled in (input_norm, ...)

    @property
    def label(self) -> str:
        """bp, SAL-4, MoE-4, ... as in the paper's tables."""
        return method_label(self.method, self.num_areas)

    def key(self) -> str:
        """Stable identity of the run (configuration + results version)."""
        opts = dict(self.data_options)
        if opts.get("split") == DATA_OPTIONS["split"][1]:
            del opts["split"]  # added after the results existed: named only when it is not the default
        fields = {**self.as_record(), "options": list(self.options), "data_options": sorted(opts.items())}
        if opts.get("input_norm", "unit") == "unit":
            # Before input_norm existed every run used [0, 1] inputs ("unit") and named only the data
            # options it changed: such runs keep the keys they had, so the pre-calibration results stay
            # readable. Every other map names all its options.
            legacy = {k: v for k, v in opts.items() if k != "input_norm" and v != DATA_OPTIONS[k][1]}
            fields["data_options"] = sorted(legacy.items())
            if not legacy:
                del fields["data_options"]
        blob = json.dumps({**fields, "v": RESULTS_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def as_record(self) -> dict:
        """The configuration as run records store it (K under `areas`, the name of the stored format)."""
        d = asdict(self)
        return {("areas" if k == "num_areas" else k): v for k, v in d.items()}

    def filename(self) -> str:
        return f"{self.dataset}-{self.method}-K{self.num_areas}-d{self.depth}-w{self.hidden}-s{self.seed}-{self.key()}.json"


def make_config(dataset, method, *, options=None, data_options=None, **kw) -> RunConfig:
    """A run's configuration; its data options are completed with their defaults (data.data_options),
    so every run names its input map, default or not, and runs under different maps never share a key."""
    return RunConfig(dataset=dataset, method=method, options=tuple(sorted((options or {}).items())),
                     data_options=tuple(sorted(_data_options(dataset, data_options).items())), **kw)


def _data_options(dataset, options) -> dict:
    return data_options(dataset, options) if dataset in DATASETS else dict(options or {})


def grid(dataset, methods, seeds, *, options=None, **shared) -> list[RunConfig]:
    """Every (method, K) pair of `methods` times every seed."""
    return [make_config(dataset, m, num_areas=k, seed=s, options=options, **shared) for m, k in methods for s in seeds]


class SetupError(ValueError):
    """A device or a run store that cannot be used; the message names it and says what can."""


def devices_here() -> list[str]:
    """The device names this machine can train on."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n)] if n else [])


def resolve_device(device: str | None) -> torch.device:
    """`auto` (or None): CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:N' when this machine has it.
    Anything else raises SetupError naming the devices that exist here."""
    if isinstance(device, torch.device):  # a device already resolved: as its name ('cpu', 'cuda:0')
        device = str(device)
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = devices_here()
    if device not in here:
        kind = "no such device on this machine" if str(device).startswith("cuda") else "not a device salrepro trains on"
        raise SetupError(f"device {device!r}: {kind}; devices here: {', '.join(here)}")
    return torch.device(device)


def check_store(store) -> Path:
    """The run store folder, created if needed; SetupError (naming the path) when it is a file or not writable."""
    path = Path(store)
    if path.exists() and not path.is_dir():
        raise SetupError(f"store {path}: is a file, not a folder; give a folder for the run records")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=f".tmp-{os.getpid()}-probe"):
            pass
    except OSError as e:
        raise SetupError(f"store {path}: cannot write there ({e.strerror or e}); give a writable folder") from None
    return path


def _model(config: RunConfig, data, dev):
    return build_model(config.method, data.in_features, data.num_classes, hidden=config.hidden, depth=config.depth,
                       num_areas=config.num_areas, seed=config.seed, device=dev, **dict(config.options))


def _record(config: RunConfig, model, history, seconds, dev, batched_with=1, stats=None) -> dict:
    counts = count_parameters(model)
    diverged = next((h["epoch"] for h in history if h.get("diverged")), None)
    final = history[-1] if history and diverged is None else {}  # a diverged run has no final metrics
    return {
        "config": {**config.as_record(), "options": dict(config.options), "data_options": dict(config.data_options)},
        "key": config.key(),
        "label": config.label,
        "history": [{**h, "occupancy": {str(k): v for k, v in h["occupancy"].items()}} for h in history],
        "final": {k: final.get(k, math.nan) for k in ("train_loss", "val_loss", "val_accuracy")},
        "diverged": diverged,  # None, or the epoch at which loss or weights stopped being finite
        "parameters": {"total": counts.total, "active": counts.active},
        "seconds": seconds,  # wall time of this run (a batch's time divided among its models), resumes included
        "batched_with": batched_with,
        # the batch's mean seconds per training step and the process's peak memory when it ended
        "resources": {k: (stats or {}).get(k) for k in ("step_seconds", "peak_memory_bytes")},
        "device": describe_device(dev),
        "version": {"salrepro": package_version(), "results": RESULTS_VERSION, "torch": torch.__version__,
                    **code_commit()},  # the commit that made it (dirty: its src/ had uncommitted changes)
    }


def run_one(config: RunConfig, data, *, device="auto", progress=False, on_epoch=None) -> dict:
    """Train one model from scratch, alone, and return its result record."""
    dev = resolve_device(device)
    model = _model(config, data, dev)
    t0 = time.perf_counter()
    history = train(model, data, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                    seed=config.seed, progress=progress, device=dev, on_epoch=on_epoch)
    return _record(config, model, history, time.perf_counter() - t0, dev)


def run_batch(configs: list[RunConfig], data, *, device="auto", progress=False, checkpoint=None,
              on_epoch=None) -> list[dict]:
    """Train models that share method, shape and training settings (seeds and
    learning rates may differ, and K for SAL and SAL-BP) as one batched
    computation; one record each, equal to what `run_one` gives (tested to 1e-5)."""
    dev = resolve_device(device)
    if dev.type == "cpu":  # a batch that cannot fit is refused before any model is built
        tensors = unpack(data)
        check_fits(configs, sum(t.numel() * t.element_size() for t in tensors), val_rows=tensors[2].shape[0])
    models = [_model(c, data, dev) for c in configs]
    c0 = configs[0]
    t0 = time.perf_counter()
    stats: dict = {}
    histories = train_many(models, data, epochs=c0.epochs, batch_size=c0.batch_size, lr=[c.lr for c in configs],
                           seeds=[c.seed for c in configs], progress=progress, device=dev,
                           desc=f"{c0.dataset} {c0.method} x{len(configs)}", checkpoint=checkpoint, on_epoch=on_epoch,
                           stats=stats)
    seconds = (time.perf_counter() - t0 + stats.get("resumed_seconds", 0.0)) / len(configs)  # resumes included
    return [_record(c, m, h, seconds, dev, len(configs), stats) for c, m, h in zip(configs, models, histories)]


def batch_id(configs: list[RunConfig]) -> str:
    return hashlib.sha256("".join(c.key() for c in configs).encode()).hexdigest()[:16]


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
    memory measured on a net alone (tests/test_experiments.py: within 30%)."""
    from .engine.batched import EVAL_BYTES, eval_rows

    c, n = configs[0], len(configs)
    models = sum(tensor_bytes(x) for x in configs)
    spec = method_of(c.method)
    copies = 1 + (n > 1) + spec.autograd_areas
    steps = 4.0 * 4 * n * c.batch_size * c.hidden * c.depth  # x, sorted x, a, delta per layer
    traces = 4.0 * 3 * min(val_rows, eval_rows(n, c.hidden, c.depth, EVAL_BYTES)) * n * c.hidden * c.depth
    return copies * models + steps + (traces if spec.traces else 0.0) + data_bytes


def available_bytes() -> float | None:
    """Memory free for a new allocation now (Linux: MemAvailable of /proc/meminfo), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


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


def describe_device(dev: torch.device) -> str:
    """The machine a run trained on, as its record names it: the GPU, or the CPU's model and threads."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    n = torch.get_num_threads()
    return f"cpu ({', '.join(filter(None, (cpu_model(), platform.machine())))}, {n} thread{'s' if n != 1 else ''})"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name where the system tells it (Linux's /proc/cpuinfo), else ''."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ---------------------------------------------------------------------------
# The run store: one JSON file per finished run, written atomically.
# ---------------------------------------------------------------------------
def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file atomically: a temporary beside it, flushed to disk, then renamed over the name.
    The file gets the mode a plain open() would give it (0o666 less the umask), not mkstemp's private 0o600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{os.getpid()}-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as a JSON file atomically (`write_text_atomic`); NaN stays NaN."""
    write_text_atomic(path, json.dumps(obj, allow_nan=True))


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files (`.tmp-<pid>-*`) of writers that no longer
    run: a process killed mid-write (SIGKILL, power loss) leaves its
    temporary behind, never a half-written record. A live writer's are kept."""
    for tmp in Path(folder).glob(".tmp-*"):
        pid = tmp.name.split("-")[1]
        if not (pid.isdigit() and _running(int(pid))):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, safe check here: keep the file
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_record(path: Path) -> dict | None:
    """A stored run record, or None if it is missing or unreadable (an atomic write never leaves one, but a disk may)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def stored_files(store: Path) -> list[Path]:
    """The finished run records' files of a store, in name order; writers' temporaries
    (`.tmp-*`) and checkpoints (`.ckpt-*`) are not records."""
    return sorted(p for p in Path(store).glob("*.json") if not p.name.startswith("."))


def stored_records(store: Path) -> list[dict]:
    """Every readable run record of a store."""
    return [r for r in map(read_record, stored_files(store)) if r is not None]


def record_input_norm(record: dict) -> str:
    """The input map a run trained under; records from before input_norm existed were all made on [0, 1] inputs."""
    return (record["config"].get("data_options") or {}).get("input_norm", "unit")


def load_stored(store: Path, config: RunConfig) -> dict | None:
    record = read_record(store / config.filename())  # missing or unreadable: recompute
    return record if record is not None and record.get("key") == config.key() else None


def train_planned(batch: list[RunConfig], data, *, device="auto", checkpoint=None, on_epoch=None,
                  plan: Plan | None = None) -> list[dict]:
    """Train one planned batch (`plan_batches`) and return its records, in batch order: batched, with a
    checkpoint at every epoch end (resumed from if it exists), or alone by the plain loop for the
    methods that do not stack (fa, dfa: their batches hold one run). Each record names its batch and
    the `plan` that cut it (a chaotic run's numbers depend on what it trained beside). What `run_all`
    does with each batch, and what a cluster job does with its own (pipeline/cluster.py)."""
    c = batch[0]
    if batch_key(c) is None:
        records = [run_one(c, data, device=device, on_epoch=on_epoch)]
    else:
        records = run_batch(batch, data, device=device, checkpoint=checkpoint, on_epoch=on_epoch)
    stamp = {"id": batch_id(batch), "models": len(batch), "plan": plan.as_record() if plan is not None else None}
    return [{**r, "batch": stamp} for r in records]


def batch_checkpoint(store: Path, batch: list[RunConfig]) -> Path:
    """The file a batch's epoch checkpoints go to in a run store (named by its runs' keys)."""
    return Path(store) / f".ckpt-{batch_id(batch)}.pt"


def store_batch(store: Path, batch: list[RunConfig], records: list[dict]) -> None:
    """Write a trained batch's records to the store, each atomically, then remove its checkpoint. Safe with
    many writers at once (other processes or machines on a shared filesystem): each writes its own
    temporary and renames it over the record's name, so a reader sees a whole record or none."""
    for config, record in zip(batch, records):
        write_json_atomic(Path(store) / config.filename(), record)
    batch_checkpoint(store, batch).unlink(missing_ok=True)


def run_all(configs, data_for, *, store=None, read_from=(), device="auto", progress=None, desc="runs",
            batched=True, workers: int | None = None, plan: Plan | None = None, executor=None) -> list[dict]:
    """Run every configuration, skipping those already in `store` (or in one
    of the read-only stores `read_from`, e.g. another stage's runs).

    `data_for(config)` returns the dataset a configuration trains on (its
    dataset under its data options: every run of a batch shares them), or
    pass one Dataset when every configuration uses it. Runs that can train together do, as
    one batched computation (`batched=False`: one at a time). On a CPU the
    batches of small models train side by side in `workers` single-threaded
    processes (default `workers.default_workers`: one per torch thread; 1
    trains everything here); larger models train here, one batch at a time,
    with every thread. `plan` (the profile's: `Plan`) cuts the batches; without one, this machine's
    cache and workers do (`cpu_batch_bytes`), as for a one-off run. Each new record names its batch and
    plan. Returns the records in config order.

    `executor` (pipeline/cluster.py, e.g. `cluster.SubmititExecutor`): the batches not yet stored go to
    it, each as one job that trains it and writes its records to `store` (required); `device` is then
    the jobs' (the executor's: CPU, or the GPUs it asks for), and without a `plan` the batches are planned
    for it with `workers` (default 1: each group cut by the budget alone). Returns once every job is done
    (or the executor raises: jobs still queued, or failed).
    """
    configs = list(configs)
    loader = data_for if callable(data_for) else (lambda config: data_for)
    if executor is not None and store is None:
        raise SetupError("an executor's jobs write their records to a run store: give store=")
    # an unusable device is refused before anything is read or trained (a cluster's: by the executor)
    dev = resolve_device(device) if executor is None else executor.device_for(device)
    store = check_store(store) if store is not None else None
    if store is not None and executor is None:  # (jobs of an executor may be writing there from other machines)
        remove_stale_temporaries(store)
    stores = ([store] if store else []) + [Path(s) for s in read_from]
    workers = pool.resolve(1 if executor is not None and workers is None else workers, dev)
    # Batches are planned over every configuration, done or not, and a batch is
    # rerun whole unless all of its runs are stored: a resumed sweep computes
    # exactly what an uninterrupted one does (with the same number of workers).
    if plan is None:
        plan = Plan(MAX_BATCH_BYTES.get(dev.type, MAX_BATCH_BYTES["cpu"]),
                    MAX_LARGE_BATCH_BYTES.get(dev.type, MAX_LARGE_BATCH_BYTES["cpu"]), workers)
    small_bytes = plan.batch_bytes
    batches = plan_batches(configs, plan.batch_bytes, plan.large_bytes, workers=plan.workers,
                           autograd_bytes=AUTOGRAD_AREA_BATCH_BYTES if dev.type == "cpu" else None) \
        if batched else [[i] for i in range(len(configs))]
    records: list[dict | None] = [next((r for s in stores if (r := load_stored(s, c)) is not None), None) for c in configs]
    todo = [b for b in batches if any(records[i] is None for i in b)]
    reused = sum(r is not None for r in records) - sum(records[i] is not None for b in todo for i in b)
    if reused:
        log.info("%s: %d of %d run(s) already stored: reused, not retrained", desc, reused, len(configs))
    if executor is not None and todo:  # each batch a job, which writes its records to the store
        executor.train([[configs[i] for i in b] for b in todo], loader, store=store, device=device, desc=desc, plan=plan)
        return [r if r is not None else load_stored(store, c) for r, c in zip(records, configs)]
    # progress in model-epochs, so that a batch trained together moves the bar at every epoch
    bar = tqdm(total=sum(len(b) * configs[b[0]].epochs for b in todo), desc=desc, unit="model-epoch",
               disable=not show_progress(progress))

    def train_batch(t: int, on_epoch) -> list[dict]:
        chosen = [configs[i] for i in todo[t]]
        # a checkpoint at every epoch end: an interrupted batch resumes mid-training
        return train_planned(chosen, loader(chosen[0]), device=device, plan=plan,
                             checkpoint=batch_checkpoint(store, chosen) if store else None, on_epoch=on_epoch)

    def finish(t: int, done: list[dict]) -> None:
        for i, record in zip(todo[t], done):
            records[i] = record
        if store:
            store_batch(store, [configs[i] for i in todo[t]], done)

    # a batch holds only small models or only large ones (plan_batches): its first model says which
    side_by_side = [t for t, b in enumerate(todo) if weight_bytes(configs[b[0]]) <= small_bytes] if workers > 1 else []
    if len(side_by_side) > 1:  # (one small batch trains here, with every thread)
        bar.set_postfix_str(f"{len(side_by_side)} batches, {min(workers, len(side_by_side))} workers")
        longest_first = sorted(side_by_side, key=lambda t: -sum(weight_bytes(configs[i]) for i in todo[t]))
        for t, done in pool.run(lambda t, report: train_batch(t, lambda epoch, n=len(todo[t]): report(n)),
                                longest_first, workers, bar.update):
            finish(t, done)
    done_side_by_side = set(side_by_side) if len(side_by_side) > 1 else set()
    for t in (t for t in range(len(todo)) if t not in done_side_by_side):
        c = configs[todo[t][0]]
        bar.set_postfix_str(f"{c.dataset} {c.method} d{c.depth} w{c.hidden} x{len(todo[t])}")
        finish(t, train_batch(t, lambda epoch, n=len(todo[t]): bar.update(n)))
    bar.close()
    return records


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------
def unstable(record: dict) -> bool:
    """Did this run fail to train stably? Its final training loss is not finite (it diverged), is above
    ln(C) (worse than predicting the class frequencies of C balanced classes: it learned nothing, or lost
    it), or is more than twice the lowest training loss of its epochs (it blew up late). Such a run is
    a fact about its configuration, not noise: an lr with an unstable selection run has failed
    (pipeline/tuned.py), and a reported point with unstable runs is flagged, never silently averaged."""
    if record.get("diverged") is not None:
        return True
    losses = [h["train_loss"] for h in record.get("history") or []]
    final = (record.get("final") or {}).get("train_loss", math.nan)
    if not losses or not math.isfinite(final):
        return True
    classes = NUM_CLASSES.get(record["config"]["dataset"])
    return (classes is not None and final > math.log(classes)) or final > 2 * min(losses)


def runs_frame(records) -> pd.DataFrame:
    """One row per run: configuration and final metrics (`unstable`: see `unstable`)."""
    rows = []
    for r in records:
        c = r["config"]
        data_opts = c.get("data_options") or {}
        reading = reading_of(c["method"], c.get("options") or {})
        rows.append({
            "dataset": c["dataset"], "method": c["method"], "areas": c["areas"], "depth": c["depth"],
            "hidden": c["hidden"], "seed": c["seed"], "reading": reading,
            "label": r["label"] + ("" if reading == "default" else f" [{reading}]"),
            "input_norm": record_input_norm(r),
            "display": display_name(c["dataset"], data_opts) if c["dataset"] in DATASETS else c["dataset"],
            "options": json.dumps(c.get("options") or {}, sort_keys=True),
            "split": data_opts.get("split", DATA_OPTIONS["split"][1]),
            "lr": c["lr"], "epochs": c["epochs"],
            "batch_size": c["batch_size"], "val_accuracy_pct": 100 * r["final"]["val_accuracy"], "train_loss": r["final"]["train_loss"],
            "val_loss": r["final"]["val_loss"], "params_total": r["parameters"]["total"],
            "params_active": r["parameters"]["active"], "seconds": r["seconds"],
            "step_seconds": (r.get("resources") or {}).get("step_seconds"),
            "peak_memory_gb": (lambda b: b / 1e9 if b is not None else None)((r.get("resources") or {}).get("peak_memory_bytes")),
            "diverged": r.get("diverged") is not None, "unstable": unstable(r),
        })
    return pd.DataFrame(rows)


# What tells two configurations apart in a runs_frame: every setting of a run but its seed. A summary
# groups by all of them, so that a sweep over any setting (an lr, a batch size, an option, an input map)
# is never averaged across it as if its values were seeds.
CONFIG_COLUMNS = ("dataset", "method", "areas", "depth", "hidden", "reading", "options", "input_norm", "split", "lr",
                  "epochs", "batch_size")


def summarize(records, by=CONFIG_COLUMNS) -> pd.DataFrame:
    """Mean and std over seeds of the final-epoch metrics (std with ddof=1,
    as numpy/pandas report a sample standard deviation), one row per
    configuration (`by`: every setting but the seed, CONFIG_COLUMNS). Diverged
    runs are never averaged in: `seeds` counts the runs that finished,
    `diverged` the others."""
    df = runs_frame(records)
    metrics = ["val_accuracy_pct", "train_loss", "val_loss"]
    if df.empty:  # nothing ran (e.g. every lr of a selection failed): a summary with no rows
        return pd.DataFrame(columns=[*by, *(f"{m}_{s}" for m in metrics for s in ("mean", "std")), "seeds", "diverged"])
    g = df.groupby(list(by), sort=False)
    finished = df[~df["diverged"]].groupby(list(by), sort=False)
    out = finished[metrics].agg(["mean", "std"]).reindex(g.size().index)
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["seeds"] = finished.size().reindex(g.size().index).fillna(0).astype(int)
    out["diverged"] = g["diverged"].sum().astype(int)
    out["params_total"] = g["params_total"].first()
    out["step_seconds"] = g["step_seconds"].mean()  # records from before resources were recorded: NaN
    out["peak_memory_gb"] = g["peak_memory_gb"].max()
    out["params_active"] = g["params_active"].first()
    out["label"] = g["label"].first()
    for col in ("input_norm", "display"):
        if col not in by:
            out[col] = g[col].first()
    return out.reset_index()


def curves_frame(records) -> pd.DataFrame:
    """Per-epoch history of every run, long format (one row per run and epoch)."""
    rows = []
    for r in records:
        c = r["config"]
        for h in r["history"]:
            rows.append({
                "dataset": c["dataset"], "method": c["method"], "areas": c["areas"], "depth": c["depth"],
                "hidden": c["hidden"], "seed": c["seed"], "label": r["label"], "epoch": h["epoch"],
                "diverged": bool(h.get("diverged")),
                "train_loss": h["train_loss"], "val_loss": h["val_loss"], "val_accuracy_pct": 100 * h["val_accuracy"],
            })
    return pd.DataFrame(rows)


def occupancy_frame(records) -> pd.DataFrame:
    """Final-epoch area occupancy: validation samples per area, per routed layer."""
    rows = []
    for r in records:
        c = r["config"]
        if not r["history"]:
            continue
        for layer, counts in r["history"][-1]["occupancy"].items():
            for area, n in enumerate(counts):
                rows.append({"dataset": c["dataset"], "method": c["method"], "areas": c["areas"], "depth": c["depth"],
                             "hidden": c["hidden"], "seed": c["seed"], "layer": int(layer), "area": area, "samples": n})
    return pd.DataFrame(rows)
