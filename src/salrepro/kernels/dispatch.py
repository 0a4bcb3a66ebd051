"""How the area products of sal.py run fast: grouping samples by area and
the matrix products behind equations (4), (7), (8) and (9).

Nothing here is SAL-specific mathematics. `sal.py` states each equation once;
this module is the machinery under it:

- `Groups`: the samples of a batch sorted by area, computed once per layer per
  step and shared by the forward pass, the layer error and the update. With
  stacked models (a leading model dimension), every (model, area) pair is one
  group: model m's area k is group `offsets[m] + k`.
- `area_matmul`: rows sorted by area times their area's weight transposed.
  On CPU without autograd and with many areas (a batched sweep), MKL's
  batched GEMM in one call (`blas.py`); else one grouped matmul where torch
  has it; else a loop over the areas present. Works under autograd (the MoE
  baseline) as well as under no_grad (SAL).
- `area_accumulate_`: W[k] += alpha sum_{i in S_k} delta_i x_i^T and
  b[k] += alpha sum_{i in S_k} delta_i for every area with samples, in one of
  three ways: on CUDA one grouped matmul over the areas present, found with
  `nonzero_static` so that nothing waits for the host; on CPU for a layer of
  many areas one MKL call (`blas.py`); otherwise one in-place matmul per area
  present (each reads and writes its area once, no temporary gradient).
  Areas without samples are never touched.
- `dense`, `accumulate_`: the one-area products, for a lone model (x is
  (B, in)) or for N stacked models (x is (N, B, in), a batched matmul).

The dropless-MoE recipe: never a per-sample copy of the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import blas

_HAS_GROUPED_MM = hasattr(F, "grouped_mm")


@dataclass
class Groups:
    """Samples of a batch (all models' samples, when stacked) sorted by group."""

    k: torch.Tensor  # (rows,) group of each sample: its area k_i (offset by its model's first group when stacked)
    order: torch.Tensor  # (rows,) sample indices sorted by group (stable)
    inverse: torch.Tensor  # (rows,) position of each sample in `order`
    counts: torch.Tensor  # (groups,) samples per group

    @property
    def offsets(self) -> torch.Tensor:
        """(groups,) int32 cumulative counts (grouped_mm's offs), computed once on first use: the CPU's
        one-call path (`present`) does without."""
        if not hasattr(self, "_offsets"):
            self._offsets = torch.cumsum(self.counts, 0).to(torch.int32)
        return self._offsets

    @property
    def sizes(self) -> list[int]:
        """Samples per group as Python ints (for per-area loops)."""
        if not hasattr(self, "_sizes"):
            self._sizes = self.counts.tolist()
        return self._sizes

    @property
    def present(self) -> tuple:
        """Groups with samples, their sample counts and the first sorted row of
        each, as numpy int64 arrays (blas.py's one-call CPU path; computed once,
        shared by the forward and the update)."""
        if not hasattr(self, "_present"):
            counts = self.counts.numpy()
            present = np.flatnonzero(counts)
            rows = counts[present]
            self._present = (present, rows, np.cumsum(counts)[present] - rows)
        return self._present

    @classmethod
    def of(cls, k: torch.Tensor, num_groups: int, model_offsets: torch.Tensor | None = None) -> "Groups":
        """`k`: (B,) area k_i of each sample, or (N, B) per stacked model with
        `model_offsets` (N,) the first group of each model; `num_groups` in all."""
        if model_offsets is not None:
            k = (model_offsets.unsqueeze(1) + k).reshape(-1)
        # a scatter, not bincount: bincount's output size depends on the data (a host sync on CUDA)
        counts = torch.zeros(num_groups, dtype=torch.long, device=k.device).index_add_(0, k, torch.ones_like(k))
        order = torch.argsort(k, stable=True)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return cls(k, order, inverse, counts)


def rows(x: torch.Tensor) -> torch.Tensor:
    """x with any model dimension folded into the rows: (B, n) or (N * B, n)."""
    return x.reshape(-1, x.shape[-1])


def fold_lr(t: torch.Tensor, lr: float | torch.Tensor) -> tuple[torch.Tensor, float]:
    """(t, lr) for a float lr; for a tensor lr, one per leading row of t (stacked models), (t * lr, 1.0)."""
    if not isinstance(lr, torch.Tensor):
        return t, lr
    return t * lr.view(-1, *([1] * (t.dim() - 1))).to(t.dtype), 1.0


def sort_by_area(x: torch.Tensor, groups: Groups) -> torch.Tensor:
    """The rows of x (models folded in) in group order."""
    return rows(x).index_select(0, groups.order)


def grouped_mm_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """grouped_mm takes float32/bf16/fp16 with rows 16-byte aligned."""
    if not _HAS_GROUPED_MM or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    return all(d * x.element_size() % 16 == 0 for d in weight.shape[1:])


def area_matmul(xs: torch.Tensor, weight: torch.Tensor, groups: Groups) -> torch.Tensor:
    """Rows of `xs` (sorted by group) times their group's weight transposed; weight (groups, out, in)."""
    if blas.usable(weight, xs):
        return blas.area_matmul(xs, weight, groups)
    if grouped_mm_ok(xs, weight):
        return F.grouped_mm(xs, weight.transpose(1, 2), offs=groups.offsets)
    parts, start = [], 0
    for w, n in zip(weight.unbind(0), groups.sizes):  # unbind once: one view per area, not one index per sample
        if n:
            parts.append(xs[start : start + n] @ w.T)
        start += n
    return torch.cat(parts) if parts else xs.new_zeros(0, weight.shape[1])


def accumulate_path(weight: torch.Tensor, ds: torch.Tensor, xs: torch.Tensor) -> str:
    """Which of the three ways `area_accumulate_` takes: "grouped", "blas" or "loop"."""
    if xs.is_cuda and grouped_mm_ok(xs, weight):
        return "grouped"
    if blas.usable(weight, ds, xs):
        return "blas"
    return "loop"


def area_accumulate_(weight: torch.Tensor, bias: torch.Tensor, delta: torch.Tensor, xs: torch.Tensor,
                     groups: Groups, alpha: float) -> None:
    """In place, for every group k with samples: W[k] += alpha sum_{i in k} delta_i x_i^T
    and b[k] += alpha sum_{i in k} delta_i. `delta` in sample order, `xs` in group order."""
    ds = delta.index_select(0, groups.order)
    path = accumulate_path(weight, ds, xs)
    if path == "grouped":
        # at most min(groups, rows) groups are present; padding entries are empty groups of index 0 (adding zeros)
        size = min(groups.counts.numel(), xs.shape[0])
        present = torch.nonzero_static(groups.counts, size=size, fill_value=0).squeeze(1)
        real = torch.arange(size, device=xs.device) < (groups.counts > 0).sum()
        offs = torch.cumsum(groups.counts.index_select(0, present) * real, 0).to(torch.int32)
        dW = F.grouped_mm(ds.T, xs, offs=offs)  # (groups present, out, in)
        weight.index_add_(0, present, dW, alpha=alpha)
    elif path == "blas":
        blas.area_accumulate(weight, ds, xs, groups, alpha=alpha)
    else:
        start = 0
        for k, n in enumerate(groups.sizes):
            if n:  # groups with no sample in the batch do not change
                d_k, x_k = ds[start : start + n], xs[start : start + n]
                weight[k].addmm_(d_k.T, x_k, alpha=alpha)
                bias[k].add_(d_k.sum(0), alpha=alpha)
            start += n
        return
    bias.index_add_(0, groups.k, delta, alpha=alpha)


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x W^T + b with one area: x (B, in) with weight (1, out, in), or N stacked
    models, x (N, B, in) with weight (N, out, in), bias (N, out)."""
    if x.dim() == 2:
        return F.linear(x, weight[0], bias[0])
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def dense_accumulate_(weight: torch.Tensor, bias: torch.Tensor, delta: torch.Tensor, x: torch.Tensor, alpha: float) -> None:
    """In place, one area: W += alpha delta^T x and b += alpha sum delta, for a lone model (weight
    (1, out, in), x (B, in)) or per stacked model (weight (N, out, in), x (N, B, in))."""
    w, b = (weight[0], bias[0]) if x.dim() == 2 else (weight, bias)
    accumulate_(w, delta, x, alpha)
    b.add_(delta.sum(-2), alpha=alpha)


def accumulate_(weight: torch.Tensor, delta: torch.Tensor, x: torch.Tensor, alpha: float) -> None:
    """In place: W += alpha delta^T x; W (out, in) with x (B, in), or per stacked
    model, W (N, out, in) with x (N, B, in)."""
    if x.dim() == 2:
        weight.addmm_(delta.T, x, alpha=alpha)
    else:
        weight.baddbmm_(delta.transpose(1, 2), x, alpha=alpha)
