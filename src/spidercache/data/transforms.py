"""Batch transforms applied after the cache (or before it, when deterministic).

They work on a whole batch at once (N x C x H x W), because the loader fetches
batches, and a per-sample Python call would cost more than the cache saves.
Each has ``random`` (may it give a different output for the same input?) and
``describe()`` (a stable text that goes into the cache's fingerprint).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


class Normalize:
    """uint8 -> float32 in [0, 1], then ``(x - mean) / std`` per channel. Deterministic."""

    random = False

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        c = len(self.mean)
        # Fold /255 and the normalisation into one multiply-add.
        self._scale = np.array([1.0 / (255.0 * s) for s in self.std], np.float32).reshape(1, c, 1, 1)
        self._shift = np.array([-m / s for m, s in zip(self.mean, self.std)], np.float32).reshape(1, c, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x
        # numpy, not torch: torch's intra-op threads spin on a busy machine
        # (measured 40x slower than one numpy pass on 2 shared cores).
        a = x.numpy()
        out = np.empty(a.shape, np.float32)
        np.multiply(a, self._scale, out=out, casting="unsafe")
        out += self._shift
        return torch.from_numpy(out)

    def describe(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomFlipCrop:
    """Random horizontal flip and random crop after zero padding (CIFAR-style augmentation)."""

    random = True

    def __init__(self, flip: bool = True, pad: int = 4, seed: int | None = None) -> None:
        self.flip = flip
        self.pad = int(pad)
        self._gen = torch.Generator()
        if seed is not None:
            self._gen.manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.flip:
            mask = torch.rand(n, generator=self._gen) < 0.5
            if mask.any():
                x = x.clone()
                x[mask] = x[mask].flip(-1)
        if self.pad:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=self._gen)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=self._gen)
            out = torch.empty_like(x)
            for i in range(n):  # one slice per sample: cheap next to the model
                out[i] = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
            x = out
        return x

    def describe(self) -> str:
        return f"RandomFlipCrop(flip={self.flip}, pad={self.pad})"


class Compose:
    def __init__(self, transforms: Sequence) -> None:
        self.transforms = [t for t in transforms if t is not None]

    @property
    def random(self) -> bool:
        return any(getattr(t, "random", True) for t in self.transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def describe(self) -> str:
        return "Compose(" + ", ".join(describe(t) for t in self.transforms) + ")"


def describe(transform) -> str:
    if transform is None:
        return "none"
    d = getattr(transform, "describe", None)
    return d() if callable(d) else repr(transform)


def channel_stats(data: np.ndarray, max_samples: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (on a subset), in [0, 1] units."""
    sub = data[:max_samples].astype(np.float32) / 255.0
    mean = sub.mean(axis=(0, 2, 3))
    std = sub.std(axis=(0, 2, 3)) + 1e-6
    return [float(m) for m in mean], [float(s) for s in std]
