"""Training a grid: one run (`run_one`), one stacked batch (`run_batch`), a planned batch stored as it finishes
(`train_planned`) and a whole grid, resumable, through the planner and the workers or a cluster (`run_all`)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm  # text bars: tqdm.auto warns (with the machine's paths) in kernels without ipywidgets

from ..engine import workers as pool
from ..engine.batched import train_many
from ..engine.hardware import SetupError, describe_device, resolve_device
from ..engine.train import show_progress, train, unpack
from ..method.models import build_model, count_parameters
from .keys import RESULTS_VERSION, RunConfig, batch_id, code_commit, package_version
from .plan import (AUTOGRAD_AREA_BATCH_BYTES, MAX_BATCH_BYTES, MAX_LARGE_BATCH_BYTES, Plan, batch_key, check_fits,
                   plan_batches, weight_bytes)
from .store import batch_checkpoint, check_store, load_stored, remove_stale_temporaries, store_batch

log = logging.getLogger("salrepro")


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


