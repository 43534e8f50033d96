"""A tiny separable image data set as train/test .npz files, for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_npz(dir: Path, n: int = 256, size: int = 16, seed: int = 0) -> tuple[str, str]:
    """``n`` images of 4 classes (class c adds 50·c to noise) and a 64-image test split from them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = (rng.integers(0, 60, (n, size, size)) + y[:, None, None] * 50).astype(np.uint8)
    tr, te = dir / "train.npz", dir / "test.npz"
    np.savez(tr, x=x, y=y)
    np.savez(te, x=x[:64], y=y[:64])
    return str(tr), str(te)
