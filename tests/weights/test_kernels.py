"""Tiled matrix multiply: CPU blocked and naive always; the CUDA kernel on a GPU
(real run) and its logic under numba's CUDA simulator (no GPU needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from spidercache.weights import kernels

SHAPES = [(1, 1, 1), (17, 33, 5), (64, 64, 64), (70, 129, 65), (200, 31, 150)]


def _ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _operands(n: int, k: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k), dtype=np.float32), rng.standard_normal((k, m), dtype=np.float32)


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_blocked_cpu_matches_torch(n: int, k: int, m: int) -> None:
    a, b = _operands(n, k, m)
    for block in (1, 7, kernels.CPU_BLOCK):
        np.testing.assert_allclose(
            kernels.matmul_blocked_cpu(a, b, block=block), _ref(a, b), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_naive_cpu_matches_torch(n: int, k: int, m: int) -> None:
    a, b = _operands(n, k, m, seed=1)
    np.testing.assert_allclose(kernels.matmul_naive_cpu(a, b), _ref(a, b), rtol=1e-4, atol=1e-4)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot multiply"):
        kernels.matmul_blocked_cpu(np.ones((3, 4), np.float32), np.ones((5, 2), np.float32))


def test_cuda_kernels_logic_under_simulator() -> None:
    """The shared-memory kernel's indexing and edge padding, run by numba's CUDA simulator."""
    code = textwrap.dedent("""
        import numpy as np, torch
        from spidercache.weights import kernels as K
        rng = np.random.default_rng(3)
        for n, k, m in [(5, 3, 7), (17, 33, 18), (32, 16, 16)]:
            a = rng.standard_normal((n, k), dtype=np.float32)
            b = rng.standard_normal((k, m), dtype=np.float32)
            ref = torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
            for f in (K.matmul_tiled_cuda, K.matmul_naive_cuda):
                np.testing.assert_allclose(f(a, b), ref, rtol=1e-4, atol=1e-4)
        print("ok")
    """)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


@pytest.mark.skipif(not kernels.cuda_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("n,k,m", SHAPES + [(1024, 1024, 1024)])
def test_tiled_cuda_matches_torch_on_gpu(n: int, k: int, m: int) -> None:
    a, b = _operands(n, k, m, seed=2)
    tol = 1e-4 * max(1.0, np.sqrt(k))
    np.testing.assert_allclose(kernels.matmul_tiled_cuda(a, b), _ref(a, b), rtol=tol, atol=tol)
    np.testing.assert_allclose(kernels.matmul_naive_cuda(a, b), _ref(a, b), rtol=tol, atol=tol)


def test_benchmark_rows_check_against_torch() -> None:
    from spidercache.bench.kernels import run

    rows = run(n=48, repeats=1, gpu=False)
    assert [(r["device"], r["kernel"]) for r in rows] == [
        ("cpu", "naive"),
        ("cpu", "tiled"),
        ("cpu", "torch.matmul"),
    ]
    for r in rows:
        assert r["seconds"] > 0 and r["gflops"] > 0
    assert rows[0]["max_abs_error"] < 1e-3 and rows[1]["max_abs_error"] < 1e-3
