"""`spidercache bench kernels`: the weights front-end's matmul kernels against torch.matmul.

Naive vs tiled vs ``torch.matmul`` on n x n float32 matrices, on the CPU and,
when a CUDA GPU is present, on the GPU (``gpu`` forces it on or off).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..checks import at_least
from ..weights.kernels import cuda_available, launch_cuda, matmul_blocked_cpu, matmul_naive_cpu
from .runner import best_of

HELP = {
    "n": "Matrix edge.",
    "repeats": "Timed calls per kernel; the fastest is kept.",
    "gpu": "Also (or not) time the CUDA kernels (default: when a GPU is present).",
    "cpu": "Time the CPU kernels.",
}
TITLE = "matmul kernels vs torch.matmul"


def run(
    n: int = 512, repeats: int = 3, gpu: Optional[bool] = None, seed: int = 0, cpu: bool = True
) -> list[dict]:
    """Naive vs tiled vs torch.matmul on n x n float32 matrices (CPU, and GPU when present).

    Rows: ``{device, kernel, n, seconds, gflops, max_abs_error}``; the error is
    against torch.matmul on the same device. GPU timings exclude host-device
    copies (operands stay on the device), as torch's do.
    """
    at_least(1, flag=True, n=n, repeats=repeats)
    import torch

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    rows: list[dict] = []
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ref = torch.matmul(ta, tb).numpy()

    def row(device: str, kernel: str, seconds: float, out: np.ndarray | None) -> dict:
        err = None if out is None else float(np.abs(out - ref).max())
        return {
            "device": device,
            "kernel": kernel,
            "n": n,
            "seconds": seconds,
            "gflops": flops / seconds / 1e9,
            "max_abs_error": err,
        }

    if cpu:
        out_naive = matmul_naive_cpu(a, b)
        rows.append(
            row("cpu", "naive", best_of(lambda: matmul_naive_cpu(a, b), repeats, warmup=True), out_naive)
        )
        out_blocked = matmul_blocked_cpu(a, b)
        rows.append(
            row("cpu", "tiled", best_of(lambda: matmul_blocked_cpu(a, b), repeats, warmup=True), out_blocked)
        )
        rows.append(
            row("cpu", "torch.matmul", best_of(lambda: torch.matmul(ta, tb), repeats, warmup=True), None)
        )
    if gpu is None:
        gpu = cuda_available()
    if gpu:
        from numba import cuda

        da, db = cuda.to_device(a), cuda.to_device(b)
        dc = cuda.device_array((n, n), np.float32)
        for kind in ("naive", "tiled"):
            seconds = best_of(
                lambda kind=kind: launch_cuda(kind, da, db, dc), repeats, warmup=True, sync=cuda.synchronize
            )
            rows.append(row("cuda", kind, seconds, dc.copy_to_host()))
        ga, gb = ta.cuda(), tb.cuda()
        seconds = best_of(lambda: torch.matmul(ga, gb), repeats, warmup=True, sync=torch.cuda.synchronize)
        gref = torch.matmul(ga, gb).cpu().numpy()
        r = row("cuda", "torch.matmul", seconds, None)
        r["max_abs_error"] = float(np.abs(gref - ref).max())  # GPU torch (TF32 may apply) vs CPU torch
        rows.append(r)
    return rows
