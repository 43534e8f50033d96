"""The images GATI trains, explores and benchmarks on, read through the package's dataset layer.

``load_splits(dataset)`` returns the training and test images of a dataset
given by name (``fashion-mnist``, the embedded default) or by path, through
the data layer (``data.splits.open_splits``), which reads Fashion-MNIST IDX folders, CIFAR-10
and CIFAR-100 python folders, ImageFolder trees (``root/<class>/<image>``, or
``root/train`` and ``root/test``) and ``.npz`` files (``train.npz,test.npz``
for a separate test file). Where the data has no test split of its own (one
ImageFolder tree such as LFW's person folders, one ``.npz``), a fixed part of
it (the data layer's seeded share) is held out as the test split, and
``ImageSplits.note`` says so.
``image_size`` decodes ImageFolder images at that size; every array is resized
to the model's input by ``BaseModel.adapt`` / ``resize_images``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import at_least
from ..errors import UserError

DEFAULT_DATASET = "fashion-mnist"
PAIRS_DATASET = "fashion-pairs"  # a 100-class 32 px stand-in made from Fashion-MNIST (see fashion_pairs)


@dataclass
class ImageSplits:
    train_images: np.ndarray  # uint8 N x C x H x W
    train_labels: np.ndarray  # int64 N
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    name: str
    note: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _paths(dataset: str, data_root: str | None) -> list[str]:
    key = dataset.lower().replace("_", "-")
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return [data_root] if data_root else []
    return [p for p in dataset.split(",") if p]


def _arrays(ds, skipped: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x C x H x W images and int64 labels of a map-style dataset of the data layer.

    A file of a lazily read tree that does not decode (``BadSample``) is left out, as the
    training-data cache does, and its message added to ``skipped`` for the caller to report.
    """
    from ..data.cached import BadSample

    if hasattr(ds, "data"):  # in-memory datasets (Fashion-MNIST, CIFAR, .npz)
        return np.asarray(ds.data), np.asarray(ds.targets, np.int64)
    inner, ids = getattr(ds, "dataset", None), getattr(ds, "ids", None)
    if inner is not None and ids is not None and hasattr(inner, "data"):  # a Subset of one
        return np.asarray(inner.data)[ids], np.asarray(ds.targets, np.int64)
    items = []
    for i in range(len(ds)):  # lazily read trees: decode every file once
        try:
            items.append(ds[i])
        except BadSample as exc:
            if skipped is not None:
                skipped.append(str(exc))
                continue
            raise UserError(str(exc)) from None
    images = np.stack([np.asarray(x, dtype=np.uint8) for x, _ in items]) if items else np.zeros((0, 3, 1, 1))
    return images.astype(np.uint8, copy=False), np.asarray([int(y) for _, y in items], np.int64)


def _skip_note(skipped: list[str]) -> str:
    """One warning line for the images left out (how many, and the first one's reason)."""
    if not skipped:
        return ""
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f"warning: skipped {len(skipped)} unreadable image(s): {skipped[0]}{more}"


def _open(paths: list[str], size: int, seed: int):
    """(train, test, note) through the data layer's reader of that format (it holds out a test split
    where the data has none, and says so in ``note``)."""
    from ..data.splits import open_splits

    return open_splits(paths, image_size=size, seed=seed)


def load_splits(
    dataset: str = DEFAULT_DATASET, data_root: str | None = None, image_size: int | None = None, seed: int = 0
) -> ImageSplits:
    """Training and test images of ``dataset`` (a name or a path; see the module docstring)."""
    if dataset.lower() == PAIRS_DATASET:
        return fashion_pairs(data_root, seed)
    paths = _paths(dataset, data_root)
    size = image_size or 64  # only ImageFolder trees use it: they have no native size
    train, test, note = _open(paths, size, seed)
    classes = [str(c) for c in (getattr(train, "classes", None) or [])]
    skipped: list[str] = []
    train_x, train_y = _arrays(train, skipped)
    if len(train) and not len(train_y):
        raise UserError(f"{dataset}: no training image could be read ({skipped[0]})")
    if not classes:
        classes = [str(c) for c in range(int(train_y.max()) + 1)] if len(train_y) else []
    name = getattr(train, "name", "fashion-mnist") if not paths else dataset
    test_x, test_y = _arrays(test, skipped)
    # the reader's own notes (float pixels rescaled), each once, from the dataset or the one it splits
    said = [getattr(getattr(d, "dataset", d), "note", "") for d in (train, test)]
    notes = (note, *dict.fromkeys(said), _skip_note(skipped))
    note = "\n".join(line for line in notes if line)
    if len(test_y) and int(test_y.max()) >= len(classes):
        raise UserError(
            f"{dataset}: the test split has labels up to {int(test_y.max())}, training {len(classes)} classes"
        )
    return ImageSplits(train_x, train_y, test_x, test_y, classes, name, note)


def splits(n_total: int, train_samples: int, head_samples: int, val_samples: int, seed: int = 0):
    """Disjoint index sets of the training images: base training, head training, validation."""
    at_least(1, train_samples=train_samples, head_samples=head_samples, val_samples=val_samples)
    if train_samples + head_samples + val_samples > n_total:
        raise UserError(
            f"{train_samples} + {head_samples} + {val_samples} samples exceed the {n_total} training images"
        )
    perm = np.random.default_rng(seed).permutation(n_total)
    a, b = train_samples, train_samples + head_samples
    return perm[:a], perm[a:b], perm[b : b + val_samples]


def check_classes(base_classes: int, splits_: ImageSplits) -> None:
    """One line if the dataset's class count is not the base network's."""
    if splits_.num_classes != base_classes:
        raise UserError(
            f"dataset {splits_.name} has {splits_.num_classes} classes but the base network "
            f"was trained for {base_classes}"
        )


def _pair_images(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from .basemodel import resize_images

    n = len(images)
    partner = np.random.default_rng(seed).permutation(n)
    halves = resize_images(images, (1, 32, 16))
    out = np.concatenate([halves, halves[partner]], axis=3)
    return out, labels * 10 + labels[partner]


def fashion_pairs(data_root: str | None = None, seed: int = 0) -> ImageSplits:
    """A 100-class, 32x32 stand-in built from Fashion-MNIST (no 100-class dataset ships with the package).

    Each image is two Fashion-MNIST images side by side (each resized to
    32x16); its label is ``10 * left class + right class``. The partner of
    every image is a fixed permutation of the same split (train with train,
    test with test), so the test split shares no image with training.
    """
    train, test, _ = _open([data_root] if data_root else [], 28, seed)
    tx, ty = _pair_images(*_arrays(train), seed)
    vx, vy = _pair_images(*_arrays(test), seed + 1)
    note = "fashion-pairs: a 100-class stand-in (two Fashion-MNIST images side by side, 32x32), not CIFAR-100"
    return ImageSplits(tx, ty, vx, vy, [str(i) for i in range(100)], PAIRS_DATASET, note)
