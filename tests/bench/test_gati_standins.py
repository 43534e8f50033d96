"""The 100-class stand-in written as a .npz pair, read back through ``--dataset``'s reader."""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.bench.gati_standins import pairs_npz
from spidercache.data.datasets import FashionMNIST
from spidercache.errors import UserError
from spidercache.inference.basemodel import resize_images
from spidercache.inference.datasets import load_splits


def test_pairs_npz_is_a_100_class_32px_dataset_read_by_path(tmp_path):
    train, test = pairs_npz(tmp_path / "a", seed=3, train_samples=3000, test_samples=200)
    splits = load_splits(f"{train},{test}")
    assert splits.train_images.shape == (3000, 1, 32, 32) and splits.test_images.shape == (200, 1, 32, 32)
    assert splits.train_images.dtype == np.uint8 and splits.num_classes == 100
    assert len(np.unique(splits.train_labels)) > 90  # 3,000 random pairs reach nearly every class
    # image k's left half is Fashion-MNIST training image k, resized; its class is the label's tens digit
    fm = FashionMNIST(train=True)
    left = resize_images(np.asarray(fm.data[:3000]), (1, 32, 16))
    assert np.array_equal(splits.train_images[:, :, :, :16], left)
    assert np.array_equal(splits.train_labels // 10, np.asarray(fm.targets[:3000]))
    # the right half is another image of the same split, whose class is the units digit
    every = resize_images(np.asarray(fm.data), (1, 32, 16))
    targets = np.asarray(fm.targets)
    for k in range(3):
        match = np.flatnonzero((every == splits.train_images[k, :, :, 16:]).all(axis=(1, 2, 3)))
        assert len(match) >= 1 and splits.train_labels[k] % 10 in targets[match]


def test_pairs_npz_is_deterministic_by_seed(tmp_path):
    a = pairs_npz(tmp_path / "a", seed=1, train_samples=500, test_samples=100)
    b = pairs_npz(tmp_path / "b", seed=1, train_samples=500, test_samples=100)
    c = pairs_npz(tmp_path / "c", seed=2, train_samples=500, test_samples=100)
    for pa, pb, pc in zip(a, b, c):
        with np.load(pa) as fa, np.load(pb) as fb, np.load(pc) as fc:
            assert np.array_equal(fa["x"], fb["x"]) and np.array_equal(fa["y"], fb["y"])
            assert not np.array_equal(fa["y"], fc["y"])


def test_pairs_npz_refuses_an_empty_split(tmp_path):
    with pytest.raises(UserError, match="at least 1"):
        pairs_npz(tmp_path, test_samples=0)
