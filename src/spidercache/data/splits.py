"""The train and test datasets named by ``spidercache train``'s paths (local paths or URLs).

=========================================  =====================================================
(no path)                                  the embedded Fashion-MNIST (train / t10k)
Fashion-MNIST folder or its images .gz     its train and t10k files
CIFAR-10/100 python folder                 its train and test batches
``train.npz [test.npz]``                   x / y arrays; without a second file, a held-out split
``root`` holding ``train/`` + ``test/``    ImageFolder trees (``val/`` also names a test split)
``root/train`` (an ImageFolder)            evaluates on the sibling ``root/test`` or ``root/val``
any other ImageFolder tree                 a held-out split of it, said in one line
=========================================  =====================================================

A test (or val) tree's class folders take the training tree's labels by name: it may
lack some training classes; a class training never saw is an error naming it.
ImageFolder trees are read lazily, one file per access (``imagefolder.py``);
the small in-memory datasets go through the same cached path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from .datasets import CIFAR, FashionMNIST, NpzDataset, Subset
from .imagefolder import ImageFolder, open_fs

HELD_OUT = 0.1  # share of a training set kept for evaluation when no test split exists


def held_out(ds, seed: int, what: str):
    """(train part, test part, note): ``HELD_OUT`` of ``ds`` kept for evaluation."""
    n = len(ds)
    if n < 2:
        raise UserError(f"{what} has {n} sample(s): too few to hold some out for evaluation")
    perm = np.random.default_rng([seed, 17]).permutation(n)
    k = max(1, int(round(HELD_OUT * n)))
    test, train = np.sort(perm[:k]), np.sort(perm[k:])
    note = f"no test split for {what}: evaluating on a held-out {HELD_OUT:.0%} of it ({k} of {n} samples)"
    return Subset(ds, train, f"train-part-{seed}"), Subset(ds, test, f"held-out-{seed}"), note


def _image_splits(first: str, image_size: int, seed: int):
    fs, base = open_fs(first)
    name = base.rsplit("/", 1)[-1]
    subdirs = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False) if fs.isdir(p)}
    if "train" in subdirs:
        test = next((d for d in ("test", "val") if d in subdirs), None)
        tr = ImageFolder(f"{first.rstrip('/')}/train", image_size)
        if test:
            return tr, ImageFolder(f"{first.rstrip('/')}/{test}", image_size, classes=tr.classes), ""
        return held_out(tr, seed, f"{first.rstrip('/')}/train")
    if name == "train":
        parent = base.rsplit("/", 1)[0]
        for sib in ("test", "val"):
            if fs.isdir(f"{parent}/{sib}"):
                url = first.rstrip("/").rsplit("/", 1)[0]
                tr = ImageFolder(first, image_size)
                return tr, ImageFolder(f"{url}/{sib}", image_size, classes=tr.classes), ""
    return held_out(ImageFolder(first, image_size), seed, first)


def open_splits(train_paths: Sequence[str] = (), image_size: int = 32, seed: int = 0):
    """(train dataset, test dataset, note); ``note`` is a line to print when a split was made up."""
    paths = [str(p) for p in train_paths]
    if not paths:
        return FashionMNIST(train=True), FashionMNIST(train=False), ""
    first = paths[0]
    if "://" in first:
        return _image_splits(first, image_size, seed)
    p = Path(first)
    if not p.exists():
        raise UserError(f"dataset path not found: {p}")
    if p.suffix == ".npz":
        train = NpzDataset(p)
        if len(paths) > 1:
            return train, NpzDataset(paths[1]), ""
        return held_out(train, seed, str(p))
    if p.is_file() and p.name.endswith("-idx3-ubyte.gz"):
        p = p.parent
    if not p.is_dir():
        raise UserError(f"do not know how to read {p} (expected a folder, a .npz file or a URL)")
    if (p / "train-images-idx3-ubyte.gz").exists():
        return FashionMNIST(p, train=True), FashionMNIST(p, train=False), ""
    if any((p / n).is_file() for n in ("data_batch_1", "test_batch", "train", "test")):
        return CIFAR(p, train=True), CIFAR(p, train=False), ""
    return _image_splits(str(p), image_size, seed)
