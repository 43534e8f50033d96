"""Matrix multiply that stages tiles in fast memory (DisCo's tiled kernels).

* ``matmul_tiled_cuda``: a numba.cuda kernel; each thread block copies a
  TILE x TILE tile of A and of B into shared memory, synchronises, and every
  thread accumulates its output element from the shared tiles, so each global
  element is read N / TILE times instead of N times.
* ``matmul_blocked_cpu``: the same idea for the CPU cache: blocks of rows are
  spread over cores (numba prange) and the k and j loops are blocked so that a
  block of B stays in L1/L2 while it is reused; the inner loop runs over j so
  it vectorises.
* ``matmul_naive_cpu`` / ``matmul_naive_cuda``: the textbook loops, as references.

All take and return float32 C-contiguous 2-D numpy arrays. ``benchmark``
compares them with ``torch.matmul`` on the same inputs.

This module imports only numpy, numba and torch, so that it also runs on a GPU
machine that has none of the network clients.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from numba import njit, prange

from ..checks import at_least

TILE = 16  # CUDA tile edge: 16 x 16 = 256 threads per block, 2 KiB of shared memory per operand
CPU_BLOCK = 64  # CPU block edge: 64 x 64 float32 = 16 KiB of B per block


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply shapes {a.shape} and {b.shape}")
    return a, b


# --------------------------------------------------------------------- CPU
@njit(cache=True)
def _naive_cpu(a, b, c):
    n, k = a.shape
    m = b.shape[1]
    for i in range(n):
        for j in range(m):
            acc = np.float32(0.0)
            for p in range(k):
                acc += a[i, p] * b[p, j]
            c[i, j] = acc


@njit(parallel=True, fastmath=True, cache=True)
def _blocked_cpu(a, b, c, block):
    n, k = a.shape
    m = b.shape[1]
    n_row_blocks = (n + block - 1) // block
    for rb in prange(n_row_blocks):
        i0 = rb * block
        i1 = min(i0 + block, n)
        for p0 in range(0, k, block):
            p1 = min(p0 + block, k)
            for j0 in range(0, m, block):
                j1 = min(j0 + block, m)
                for i in range(i0, i1):
                    crow = c[i]  # 1-D row views let LLVM vectorise the j loop
                    arow = a[i]
                    for p in range(p0, p1):
                        aip = arow[p]
                        brow = b[p]
                        for j in range(j0, j1):
                            crow[j] += aip * brow[j]


def matmul_naive_cpu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _check(a, b)
    c = np.empty((a.shape[0], b.shape[1]), np.float32)
    _naive_cpu(a, b, c)
    return c


def matmul_blocked_cpu(a: np.ndarray, b: np.ndarray, block: int = CPU_BLOCK) -> np.ndarray:
    a, b = _check(a, b)
    at_least(1, block=block)
    c = np.zeros((a.shape[0], b.shape[1]), np.float32)
    _blocked_cpu(a, b, c, block)
    return c


# --------------------------------------------------------------------- GPU
def cuda_available() -> bool:
    """True when numba can launch CUDA kernels here."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # no driver, no numba-cuda, a broken toolkit: all mean "no GPU"
        return False


_cuda_kernels: dict[str, Callable] = {}
cuda = None  # numba.cuda and its float32, imported on first use; module globals so
float32 = None  # that numba's CUDA simulator can swap them inside the kernels


def _kernels() -> dict[str, Callable]:
    global cuda, float32
    if _cuda_kernels:
        return _cuda_kernels
    from numba import cuda, float32

    @cuda.jit
    def tiled(a, b, c):
        sa = cuda.shared.array((TILE, TILE), float32)
        sb = cuda.shared.array((TILE, TILE), float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        n, k = a.shape
        m = b.shape[1]
        acc = float32(0.0)
        for t in range((k + TILE - 1) // TILE):
            # Stage one tile of each operand; pad with zeros past the edges.
            ka = t * TILE + tx
            kb = t * TILE + ty
            sa[ty, tx] = a[row, ka] if row < n and ka < k else float32(0.0)
            sb[ty, tx] = b[kb, col] if kb < k and col < m else float32(0.0)
            cuda.syncthreads()
            for p in range(TILE):
                acc += sa[ty, p] * sb[p, tx]
            cuda.syncthreads()
        if row < n and col < m:
            c[row, col] = acc

    @cuda.jit
    def naive(a, b, c):
        row, col = cuda.grid(2)
        n, k = a.shape
        m = b.shape[1]
        if row < n and col < m:
            acc = float32(0.0)
            for p in range(k):
                acc += a[row, p] * b[p, col]
            c[row, col] = acc

    _cuda_kernels.update(tiled=tiled, naive=naive)
    return _cuda_kernels


def launch_cuda(kind: str, a, b, c) -> None:
    """Launch on device arrays (numba device arrays or anything with __cuda_array_interface__)."""
    n, m = c.shape
    if kind == "tiled":
        blocks = (math.ceil(m / TILE), math.ceil(n / TILE))
        _kernels()["tiled"][blocks, (TILE, TILE)](a, b, c)
    else:
        # cuda.grid(2) is (x, y): x indexes rows here.
        blocks = (math.ceil(n / TILE), math.ceil(m / TILE))
        _kernels()["naive"][blocks, (TILE, TILE)](a, b, c)


def _matmul_cuda(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from numba import cuda

    a, b = _check(a, b)
    da, db = cuda.to_device(a), cuda.to_device(b)
    dc = cuda.device_array((a.shape[0], b.shape[1]), np.float32)
    launch_cuda(kind, da, db, dc)
    return dc.copy_to_host()


def matmul_tiled_cuda(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shared-memory tiled product on the GPU (numba.cuda); needs ``cuda_available()``."""
    return _matmul_cuda("tiled", a, b)


def matmul_naive_cuda(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _matmul_cuda("naive", a, b)


def matmul_tiled(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The tiled product on the GPU when there is one, else the cache-blocked CPU version."""
    return matmul_tiled_cuda(a, b) if cuda_available() else matmul_blocked_cpu(a, b)


__all__ = [
    "matmul_naive_cpu",
    "matmul_blocked_cpu",
    "matmul_tiled_cuda",
    "matmul_naive_cuda",
    "matmul_tiled",
    "cuda_available",
    "TILE",
    "CPU_BLOCK",
]
