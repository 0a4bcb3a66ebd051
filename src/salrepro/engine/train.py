"""Training one model: the loop, evaluation and per-epoch history.

    history = train(model, data, epochs=25, batch_size=16, lr=1e-4, seed=0)

`data` is a `salrepro.data.Dataset` (or anything with x_train, y_train, x_val,
y_val tensors, or a 4-tuple of them). Data order comes from a generator
seeded with `seed` only, so the same seed on the same machine gives a
bitwise-identical history.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import sys

import torch
from tqdm import tqdm  # text bars: tqdm.auto warns (with the machine's paths) in kernels without ipywidgets

from ..method.nets import cross_entropy


def unpack(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return tuple(data)
    try:
        return data.x_train, data.y_train, data.x_val, data.y_val
    except AttributeError:
        raise ValueError("data: expected a salrepro Dataset or a tuple (x_train, y_train, x_val, y_val)") from None


def show_progress(progress: bool | None) -> bool:
    """Progress bars: on when asked, off when asked, else only on a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> dict:
    """Mean cross-entropy, accuracy and area occupancy (samples per area, per
    routed layer) on a held-out set."""
    loss_sum, correct, occupancy = 0.0, 0, {}
    route = getattr(model, "route", None)
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        logits = model(xb)
        loss_sum += float(cross_entropy(logits, yb).sum())
        correct += int((logits.argmax(1) == yb).sum())
        if route is not None:
            for layer, areas in route(xb).items():
                counts = torch.bincount(areas, minlength=model.layers[layer].num_areas)
                occupancy[layer] = occupancy.get(layer, 0) + counts
    n = max(x.shape[0], 1)
    return {
        "loss": loss_sum / n,
        "accuracy": correct / n,
        "occupancy": {layer: c.tolist() for layer, c in occupancy.items()},
    }


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Keep glibc malloc from handing freed memory back to the OS between
    training steps (process-wide, once; returns whether it applied).

    A step allocates and frees the same temporaries every time. By default
    glibc serves large blocks with fresh mmaps and trims the heap whenever
    its free top grows, so those temporaries page-fault afresh at every
    step: measured on 2 cores, ~190,000 minor faults and ~0.35 s of system
    time in one 2.5 s batched Digits grid. With the mmap threshold at 32 MiB
    (glibc's maximum) and trimming only beyond 1 GiB: ~7,000 faults, the
    grid 10-30% faster; single-model steps (small tensors) are unaffected.
    Only on glibc; `SALREPRO_MALLOC=system` leaves malloc as it is.
    """
    if os.environ.get("SALREPRO_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, 32 * 2**20)) and bool(mallopt(M_TRIM_THRESHOLD, 2**30))


def check_training_args(epochs, batch_size, lr, n_train: int) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs: must be an integer >= 0, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= max(n_train, 1):
        raise ValueError(f"batch_size: must be an integer in 1..{n_train} (the training set size), got {batch_size!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr: must be a number > 0, got {lr!r}")


def train(model, data, *, epochs: int, batch_size: int, lr: float, seed: int = 0, progress: bool | None = None,
          device=None, on_epoch=None) -> list[dict]:
    """Train `model` with its own learning rule; return one dict per epoch:
    epoch, train_loss (mean over the epoch's samples, each batch's loss taken
    before its update), val_loss, val_accuracy, occupancy {routed layer: [count per area]}.
    A run whose loss or weights stop being finite stops at that epoch, whose
    entry carries `diverged: True`.
    """
    x_train, y_train, x_val, y_val = unpack(data)
    check_training_args(epochs, batch_size, lr, x_train.shape[0])
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cpu":
        keep_freed_memory()
    model.to(device)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    gen = torch.Generator().manual_seed(int(seed))
    n = x_train.shape[0]
    history = []
    bar = tqdm(range(1, epochs + 1), desc=f"{model.method} K={model.num_areas}", disable=not show_progress(progress), leave=False)
    for epoch in bar:
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss_sum += model.train_step(x_train.index_select(0, idx), y_train.index_select(0, idx), lr) * idx.numel()
        val = evaluate(model, x_val, y_val)
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum / max(n, 1),
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "occupancy": val["occupancy"],
            }
        )
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", acc=f"{val['accuracy']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch)
        if diverged(model, history[-1]):
            history[-1]["diverged"] = True  # stop: a NaN or Inf never comes back
            break
    return history


def diverged(model, entry: dict) -> bool:
    """Loss or weights no longer finite."""
    if not (math.isfinite(entry["train_loss"]) and math.isfinite(entry["val_loss"])):
        return True
    return not all(bool(torch.isfinite(p).all()) for p in model.parameters())
