"""All areas of a layer in one BLAS call on CPU (MKL's batched GEMM).

A SAL layer's forward (4) and update (7) are one small matrix product per
area. Through torch, each of them costs a few microseconds of dispatch
whatever its size, and in a batched sweep (every (model, area) pair one
area) a step needs a hundred or more of them: the step is bound by those
calls, not by arithmetic. MKL, which torch's x86 builds carry, has a
batched GEMM that takes every area's product in one call. This module calls
it through ctypes (no compiler needed) and is used where it can be:

- a layer of at least `MIN_AREAS` areas (a batched sweep: (model, area)
  pairs), or of at least `MIN_LARGE_AREAS` areas of `LARGE_AREA` weights
  or more each (256 x 256 or larger: MNIST-sized first layers, the
  hidden layers of deep nets with seeds batched, where each product is large
  enough to hide the call's fixed cost); below that torch's per-area calls
  cost no more;
- float32 CPU tensors, contiguous, no autograd (SAL's rule; the MoE
  baseline keeps torch's differentiable grouped_mm); the weights (K, out,
  in) either stored so, or a transposed view of (K, in, out) storage, the
  layout the batched engine gives routed layers (`in_out`: MKL's forward
  product runs 20-40% faster on it, the update as fast; measured below);
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

import numpy as np
import torch

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# The call has a fixed cost (MKL's own, ~20 us, plus ~5 us to build the
# argument arrays with numpy; it was ~30 us more when they were torch
# tensors): it pays where it replaces many per-area calls. Measured on
# 2 cores, whole SAL steps: a lone Digits model (64 -> 256, K = 4 .. 16)
# got slower through it (K = 16: 204 -> 278 us), a lone MNIST model
# (784 -> 256) faster from K = 8 (K = 8: 496 -> 415 us, K = 16: 600 -> 475
# us) but not at K = 2 (310 -> 400 us); a layer's forward + update of a
# 25-model Digits batch (155 areas) 1062 + 875 -> 238 + 183 us.
MIN_AREAS = 32
# Areas of 256 x 256 weights or more pay from 8 on (measured on 2 cores: a lone
# Semeion SAL-16 step 1.16 -> 0.95 ms; 5 seeds of a depth-64 SAL-4 net, 20
# areas a layer, 147 -> 109 ms a step).
MIN_LARGE_AREAS, LARGE_AREA = 8, 2**16  # areas, and weights per area (256 KB in float32)


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


def available() -> bool:
    """Is MKL's one-call path on here (an MKL build, and SALREPRO_BLAS not `torch`)?"""
    return _gemm_batch() is not None


def in_out(weight: torch.Tensor) -> bool:
    """Are these (K, out, in) weights a transposed view of contiguous (K, in, out) storage?
    Measured on 2 Xeon cores, one thread, MKL's call over 35 Digits areas (64 -> 256, 208 rows): the
    forward product 214 us on (out, in) storage against 130 on (in, out); 40 areas of MNIST (784 -> 256,
    80 rows) 1.70 against 1.38 ms; 20 of 256 -> 256, 345 against 266 us. The update costs the same
    (150 against 150 us; 1.41 against 1.55 ms; 301 against 304 us)."""
    return not weight.is_contiguous() and weight.transpose(1, 2).is_contiguous()


def usable(weight: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Should a layer of these (K, out, in) weights take the one-call path?"""
    K, out, inp = weight.shape
    if not (K >= MIN_AREAS or (K >= MIN_LARGE_AREAS and out * inp >= LARGE_AREA)) or _gemm_batch() is None:
        return False
    tensors = (weight, *tensors)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and (
        all(t.is_contiguous() for t in tensors[1:]) and (weight.is_contiguous() or weight.transpose(1, 2).is_contiguous()))


def _gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> None:
    """C_g = alpha op(A_g) op(B_g) + beta C_g for every group g, in one call.
    m, n, k, lda, ldb, ldc: ints or (G,) int arrays; a, b, c: (G,) int64
    addresses; row-major. The argument arrays are numpy: a handful of
    sub-microsecond numpy operations where torch's took ~30 us per call."""
    G = len(a)
    if G == 0:
        return
    ints = np.empty((9, G), dtype=np.int32)  # MKL_INT is 32-bit in the LP64 interface torch links
    for row, v in enumerate((trans_a, trans_b, m, n, k, lda, ldb, ldc, 1)):  # the last: group sizes, all 1
        ints[row] = v
    scalars = np.empty((2, G), dtype=np.float32)
    scalars[0], scalars[1] = alpha, beta
    ptrs = np.stack([a, b, c])
    i, f, p = _rows(ints), _rows(scalars), _rows(ptrs)  # ints, scalars and ptrs stay referenced until the call returns
    _gemm_batch()(_ROW_MAJOR, i[0], i[1], i[2], i[3], i[4], f[0], p[0], i[5], p[1], i[6], f[1], p[2], i[7], G, i[8])


def _rows(arr: np.ndarray) -> list[int]:
    """Address of each row of a C-contiguous 2-D array."""
    base, step = arr.ctypes.data, arr.strides[0]
    return [base + r * step for r in range(arr.shape[0])]


def area_matmul(xs: torch.Tensor, weight: torch.Tensor, groups) -> torch.Tensor:
    """(4) without bias: row i of `xs` (rows sorted by area, `groups` a
    dispatch.Groups) times W[k]^T, for all areas in one call. weight (K, out, in), stored so or `in_out`."""
    K, out, inp = weight.shape
    ys = xs.new_empty(xs.shape[0], out)
    present, rows, starts = groups.present
    size = xs.element_size()
    stored_in_out = in_out(weight)  # W[k]^T as stored, or transposed by MKL
    _gemm(_NO_TRANS, _NO_TRANS if stored_in_out else _TRANS, m=rows, n=out, k=inp, alpha=1.0,
          a=xs.data_ptr() + starts * (inp * size), lda=inp,
          b=weight.data_ptr() + present * (out * inp * size), ldb=out if stored_in_out else inp, beta=0.0,
          c=ys.data_ptr() + starts * (out * size), ldc=out)
    return ys


def area_accumulate(weight: torch.Tensor, ds: torch.Tensor, xs: torch.Tensor, groups, alpha: float) -> None:
    """(7) in place: W[k] += alpha sum_{i in area k} ds_i xs_i^T for every
    area with samples, one call; rows of ds (B, out) and xs (B, in) sorted
    by area (`groups` a dispatch.Groups). Areas without samples are not touched. weight (K, out, in),
    stored so or `in_out` (then W[k]^T += alpha xs^T ds, the same sums)."""
    K, out, inp = weight.shape
    present, rows, starts = groups.present
    size = xs.element_size()
    if in_out(weight):
        _gemm(_TRANS, _NO_TRANS, m=inp, n=out, k=rows, alpha=alpha,
              a=xs.data_ptr() + starts * (inp * size), lda=inp,
              b=ds.data_ptr() + starts * (out * size), ldb=out, beta=1.0,
              c=weight.data_ptr() + present * (out * inp * size), ldc=out)
        return
    _gemm(_TRANS, _NO_TRANS, m=out, n=inp, k=rows, alpha=alpha,
          a=ds.data_ptr() + starts * (out * size), lda=out,
          b=xs.data_ptr() + starts * (inp * size), ldb=inp, beta=1.0,
          c=weight.data_ptr() + present * (out * inp * size), ldc=inp)
