"""Stand-in datasets for GATI's figures, written as files a user would give by path.

No 100-class image dataset ships on the development machine (nothing can be
downloaded there). ``pairs_npz`` writes the package's ``fashion-pairs``
stand-in (``inference.datasets.fashion_pairs``: each 32x32 image is two
Fashion-MNIST images side by side, each resized to 32x16, label
``10 * left class + right class``, the partners a fixed permutation made from
``seed``) as ``train.npz`` and ``test.npz`` in the format ``--dataset`` reads
(``x``: uint8 N x 1 x 32 x 32, ``y``: int64 N), so a benchmark on it goes
through the same by-path reader as a real dataset::

    from spidercache.bench.gati_standins import pairs_npz
    train, test = pairs_npz("/tmp/pairs")
    # then: spidercache gati bench --dataset /tmp/pairs/train.npz,/tmp/pairs/test.npz ...

It is a stand-in for a 100-class 32 px task such as CIFAR-100, not CIFAR-100.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..checks import at_least


def pairs_npz(
    root: str | os.PathLike,
    seed: int = 0,
    data_root: Optional[str] = None,
    train_samples: Optional[int] = None,
    test_samples: Optional[int] = None,
) -> tuple[Path, Path]:
    """Write ``root/train.npz`` and ``root/test.npz`` (100 classes, 32x32) and return their paths.

    ``train_samples`` / ``test_samples`` keep only the first N images of each
    split (default: all, 60,000 and 10,000). The same ``seed`` writes the same
    arrays; ``data_root`` is a Fashion-MNIST folder (default: the embedded one).
    """
    from ..inference.datasets import fashion_pairs

    at_least(1, train_samples=train_samples, test_samples=test_samples)  # None: the whole split
    splits = fashion_pairs(data_root, seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = (root / "train.npz", root / "test.npz")
    parts = (
        (splits.train_images[:train_samples], splits.train_labels[:train_samples]),
        (splits.test_images[:test_samples], splits.test_labels[:test_samples]),
    )
    for path, (x, y) in zip(paths, parts):
        np.savez_compressed(path, x=np.ascontiguousarray(x, np.uint8), y=np.asarray(y, np.int64))
    return paths
