"""Synthetic images for the inference tests (imported by name: tests have no packages)."""

import numpy as np


def make_images(n: int, seed: int = 0, size: int = 28):
    """Two-class-ish synthetic images: class k has a bright square in quadrant k (4 classes) plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = rng.integers(0, 60, size=(n, 1, size, size)).astype(np.uint8)
    half = size // 2
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 2)
        images[i, 0, r * half:(r + 1) * half, c * half:(c + 1) * half] += np.uint8(120)
    return images, labels.astype(np.int64)
