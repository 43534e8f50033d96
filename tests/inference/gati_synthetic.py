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
        images[i, 0, r * half : (r + 1) * half, c * half : (c + 1) * half] += np.uint8(120)
    return images, labels.astype(np.int64)


def write_cifar(root, n_per_batch: int = 40, classes: int = 10, size: int = 32, seed: int = 0):
    """A CIFAR-10 (classes=10: data_batch_1..5, test_batch) or CIFAR-100 (train, test) python folder."""
    import pickle
    from pathlib import Path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if classes == 10 else ["train", "test"]
    key = "labels" if classes == 10 else "fine_labels"
    for k, name in enumerate(names):
        x, y = make_images(n_per_batch, seed=seed + k, size=size)
        y = (y * (classes // 4)) % classes  # spread the 4 patterns over the label range
        data = x.repeat(3, axis=1).reshape(len(x), -1)
        with open(root / name, "wb") as f:
            pickle.dump({"data": data, key: [int(v) for v in y]}, f)
    return root


def write_image_folder(root, n: int = 40, size: int = 48, seed: int = 0, prefix_names: bool = False):
    """root/<class>/<image>.png with 4 classes; ``prefix_names`` names files LFW-style (class_0001.png)."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    x, y = make_images(n, seed=seed, size=size)
    counts: dict[int, int] = {}
    for i in range(n):
        cls = f"person{int(y[i])}"
        counts[int(y[i])] = counts.get(int(y[i]), 0) + 1
        (root / cls).mkdir(parents=True, exist_ok=True)
        name = f"{cls}_{counts[int(y[i])]:04d}.png" if prefix_names else f"{i}.png"
        Image.fromarray(np.repeat(x[i, 0][:, :, None], 3, axis=2)).save(root / cls / name)
    return root
