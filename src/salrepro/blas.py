"""All areas of a layer in one BLAS call on CPU (MKL's batched GEMM).

A SAL layer's forward (4) and update (7) are one small matrix product per
area. Through torch, each of them costs a few microseconds of dispatch
whatever its size, and in a batched sweep (every (model, area) pair one
area) a step needs a hundred or more of them: the step is bound by those
calls, not by arithmetic. MKL, which torch's x86 builds carry, has a
batched GEMM that takes every area's product in one call. This module calls
it through ctypes (no compiler needed) and is used where it can be:

- a layer of at least `MIN_AREAS` areas (a batched sweep: (model, area)
  pairs; below it torch's per-area calls cost no more);
- float32 CPU tensors, contiguous, no autograd (SAL's rule; the MoE
  baseline keeps torch's differentiable grouped_mm);
- torch built with MKL (`cblas_sgemm_batch` found in torch's CPU library)
  and the environment variable `SALREPRO_BLAS` not set to `torch`.

Elsewhere (other builds, CUDA, float64) the callers take torch's path; the
two paths agree to float32 rounding (tested). Only areas with samples enter
the call, so an area without samples is not touched at all.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import torch

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# The call has a fixed cost (argument arrays, ~50 us on 2 cores): it pays where
# it replaces many per-area calls. Measured on 2 cores, forward + update of a
# 64 -> 256 layer, 16 samples per model of K = 16: 16 areas 148 vs 174 us
# (but a whole single-model SAL step got slower), 32 areas 175 vs 315 us,
# 128 areas 333 vs 1187 us. So: batched sweeps, not single models.
MIN_AREAS = 32


@functools.lru_cache(maxsize=1)
def _gemm_batch():
    """MKL's cblas_sgemm_batch from torch's CPU library, or None."""
    if os.environ.get("SALREPRO_BLAS", "").lower() == "torch" or not torch.backends.mkl.is_available():
        return None
    lib_dir = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        if (lib_dir / name).exists():
            try:
                fn = ctypes.CDLL(str(lib_dir / name)).cblas_sgemm_batch
            except (OSError, AttributeError):
                return None
            fn.restype = None
            fn.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 13 + [ctypes.c_int, ctypes.c_void_p]
            return fn
    return None


def usable(weight: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Should a layer of these (K, out, in) weights take the one-call path?"""
    if weight.shape[0] < MIN_AREAS or _gemm_batch() is None:
        return False
    tensors = (weight, *tensors)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


def _gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
    """C_g = alpha op(A_g) op(B_g) + beta C_g for every group g, in one call.
    m, n, k, lda, ldb, ldc: ints or (G,) int tensors; a, b, c: (G,) int64
    addresses; row-major."""
    G = a.numel()
    if G == 0:
        return
    ints = torch.empty(9, G, dtype=torch.int32)  # MKL_INT is 32-bit in the LP64 interface torch links
    for row, v in zip(ints, (trans_a, trans_b, m, n, k, lda, ldb, ldc, 1)):  # the last: group sizes, all 1
        if isinstance(v, torch.Tensor):
            row.copy_(v)
        else:
            row.fill_(v)
    scalars = torch.tensor([[alpha], [beta]], dtype=torch.float32).expand(2, G).contiguous()
    ptrs = torch.stack([a, b, c])
    i, f, p = (lambda r: ints[r].data_ptr()), (lambda r: scalars[r].data_ptr()), (lambda r: ptrs[r].data_ptr())
    # ints, scalars and ptrs stay referenced until the call returns
    _gemm_batch()(_ROW_MAJOR, i(0), i(1), i(2), i(3), i(4), f(0), p(0), i(5), p(1), i(6), f(1), p(2), i(7), G, i(8))


def area_matmul(xs: torch.Tensor, weight: torch.Tensor, groups) -> torch.Tensor:
    """(4) without bias: row i of `xs` (rows sorted by area, `groups` a
    sal.Groups) times W[k]^T, for all areas in one call. weight (K, out, in)."""
    K, out, inp = weight.shape
    ys = xs.new_empty(xs.shape[0], out)
    present, rows, starts = groups.present
    size = xs.element_size()
    _gemm(_NO_TRANS, _TRANS, m=rows, n=out, k=inp, alpha=1.0,
          a=xs.data_ptr() + starts * (inp * size), lda=inp,
          b=weight.data_ptr() + present * (out * inp * size), ldb=inp, beta=0.0,
          c=ys.data_ptr() + starts * (out * size), ldc=out)
    return ys


def area_accumulate(weight: torch.Tensor, ds: torch.Tensor, xs: torch.Tensor, groups, alpha: float) -> None:
    """(7) in place: W[k] += alpha sum_{i in area k} ds_i xs_i^T for every
    area with samples, one call; rows of ds (B, out) and xs (B, in) sorted
    by area (`groups` a sal.Groups). Areas without samples are not touched."""
    K, out, inp = weight.shape
    present, rows, starts = groups.present
    size = xs.element_size()
    _gemm(_TRANS, _NO_TRANS, m=out, n=inp, k=rows, alpha=alpha,
          a=ds.data_ptr() + starts * (out * size), lda=out,
          b=xs.data_ptr() + starts * (inp * size), ldb=inp, beta=1.0,
          c=weight.data_ptr() + present * (out * inp * size), ldc=inp)
