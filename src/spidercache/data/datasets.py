"""Map-style datasets read from local files, each with a fingerprint.

A dataset exposes ``data`` (uint8 numpy array, N x C x H x W) and ``targets``
(int64 numpy array, N), ``__getitem__`` returning ``(image, label)`` after the
optional transform, and ``fingerprint()``: a digest of the files' paths, sizes
and modification times and of the transform's description, so that anything
derived from a dataset (a cache, a trained head) can refuse other data.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError
from .transforms import describe

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def files_fingerprint(paths: Sequence[str | os.PathLike], extra: dict[str, Any] | None = None) -> str:
    """Digest of paths, sizes and mtimes (plus ``extra``); cheap, no file is read."""
    items = []
    for p in paths:
        st = os.stat(p)
        items.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"files": items, "extra": extra or {}}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}") from None
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read dataset file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise UserError(f"{path}: unknown IDX element type 0x{dtype_code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(dtypes[dtype_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(
            f"{path}: expected {expected} bytes of data for shape {shape}, found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


class ArrayImageDataset(Dataset):
    """Images held in memory as uint8 N x C x H x W, with integer labels."""

    def __init__(
        self,
        data: np.ndarray,
        targets: np.ndarray,
        transform: Callable | None = None,
        source_paths: Sequence[str] = (),
        name: str = "arrays",
        classes: Sequence[str] | None = None,
    ) -> None:
        if data.ndim != 4:
            raise UserError(f"{name}: images must be N x C x H x W, got shape {data.shape}")
        if len(data) != len(targets):
            raise UserError(f"{name}: {len(data)} images but {len(targets)} labels")
        self.data = np.ascontiguousarray(data)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform
        self.source_paths = list(source_paths)
        self.name = name
        self.classes = list(classes) if classes is not None else sorted({int(t) for t in self.targets})

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __getitems__(self, ids: list[int]) -> list:
        return [self[i] for i in ids]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        extra = {"name": self.name, "n": len(self), "transform": describe(self.transform)}
        if self.source_paths:
            return files_fingerprint(self.source_paths, extra)
        # In-memory data with no files behind it: hash the content itself.
        h = hashlib.sha256(self.data.tobytes())
        h.update(self.targets.tobytes())
        h.update(json.dumps(extra, sort_keys=True).encode())
        return h.hexdigest()[:32]


class FashionMNIST(ArrayImageDataset):
    """Fashion-MNIST from its four IDX .gz files (the Debian ``dataset-fashion-mnist`` layout)."""

    def __init__(
        self,
        root: str | os.PathLike = FASHION_MNIST_ROOT,
        train: bool = True,
        transform: Callable | None = None,
    ) -> None:
        prefix = "train" if train else "t10k"
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"Fashion-MNIST folder not found: {root}")
        images_path = root / f"{prefix}-images-idx3-ubyte.gz"
        labels_path = root / f"{prefix}-labels-idx1-ubyte.gz"
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.ndim != 3:
            raise UserError(f"{images_path}: expected N x H x W images, got shape {images.shape}")
        super().__init__(
            images[:, None, :, :],
            labels,
            transform,
            source_paths=[str(images_path), str(labels_path)],
            name=f"fashion-mnist-{prefix}",
            classes=FASHION_MNIST_CLASSES,
        )


# --------------------------------------------------------------------------
# CIFAR-10/100 pickle folders, ImageFolder trees, .npz files (added with the
# training-data cache). Each is given by path, as a positional train_path.
# --------------------------------------------------------------------------
def _unpickle(path: Path, need: str = "data") -> dict:
    import pickle

    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}") from None
    except Exception as exc:  # truncated or not a pickle: the user's file is bad
        raise UserError(f"cannot read CIFAR batch {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(obj, dict):  # Python 2 pickles (the real download) have bytes keys
        obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if not isinstance(obj, dict) or need not in obj:
        raise UserError(f"{path} is not a CIFAR file (no {need!r} entry)")
    return obj


class CIFAR(ArrayImageDataset):
    """CIFAR-10 (``data_batch_1..5`` / ``test_batch``) or CIFAR-100 (``train`` / ``test``) python folders."""

    def __init__(
        self, root: str | os.PathLike, train: bool = True, transform: Callable | None = None
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"CIFAR folder not found: {root}")
        if (root / "data_batch_1").exists() or (root / "test_batch").exists():
            files = [root / f"data_batch_{i}" for i in range(1, 6)] if train else [root / "test_batch"]
            label_key, name = "labels", "cifar10"
        elif (root / "train").exists() or (root / "test").exists():
            files = [root / ("train" if train else "test")]
            label_key, name = "fine_labels", "cifar100"
        else:
            raise UserError(f"{root} holds neither CIFAR-10 (data_batch_*) nor CIFAR-100 (train/test) files")
        xs, ys = [], []
        for f in files:
            batch = _unpickle(f)
            data = np.asarray(batch["data"], np.uint8)
            labels = batch.get(label_key, batch.get("labels"))
            if labels is None or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                raise UserError(
                    f"{f}: malformed CIFAR batch (data {data.shape}, labels missing or mismatched)"
                )
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(np.asarray(labels, np.int64))
        n_classes = 10 if name == "cifar10" else 100
        super().__init__(
            np.concatenate(xs),
            np.concatenate(ys),
            transform,
            source_paths=[str(f) for f in files],
            name=f"{name}-{'train' if train else 'test'}",
            classes=_label_names(root, name, n_classes),
        )


def _label_names(root: Path, name: str, n_classes: int) -> list[str]:
    """CIFAR's class names from its ``batches.meta`` / ``meta`` file, or the label numbers without one."""
    meta, key = ("batches.meta", "label_names") if name == "cifar10" else ("meta", "fine_label_names")
    obj: dict = {}
    if (root / meta).is_file():
        try:
            obj = _unpickle(root / meta, need=key)
        except UserError:  # a damaged meta file costs the names, not the data
            pass
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in obj.get(key, [])]
    return names if len(names) == n_classes else [str(i) for i in range(n_classes)]


class NpzDataset(ArrayImageDataset):
    """A ``.npz`` with ``x`` (N x H x W, N x C x H x W or N x H x W x C, uint8) and ``y`` (N)."""

    def __init__(self, path: str | os.PathLike, transform: Callable | None = None) -> None:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                if "x" not in f or "y" not in f:
                    raise UserError(
                        f"{path} must hold arrays 'x' and 'y' (found {', '.join(f.files) or 'none'})"
                    )
                x, y = f["x"], f["y"]
        except FileNotFoundError:
            raise UserError(f"dataset file not found: {path}") from None
        except UserError:
            raise
        except Exception as exc:  # zip or npy damage
            raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
        self.note = ""  # a line for the user when the pixels were rescaled
        x = self._pixels(path, x)
        y = self._labels(path, y)
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        if x.ndim != 4:
            raise UserError(f"{path}: x must be N x H x W or N x C x H x W, got shape {x.shape}")
        super().__init__(
            x,
            np.asarray(y, np.int64).reshape(-1),
            transform,
            source_paths=[str(path)],
            name=f"npz-{path.stem}",
            classes=[str(c) for c in range(int(np.max(y)) + 1)] if len(y) else [],
        )

    def _pixels(self, path: Path, x: np.ndarray) -> np.ndarray:
        """``x`` as uint8: float pixels in 0..1 are scaled to 0..255 (``note`` says so), 0..255 rounded."""
        if x.dtype == np.uint8:
            return x
        if x.dtype.kind not in "iuf":
            raise UserError(f"{path}: x must hold numbers (uint8 or float images), got {x.dtype}")
        if x.size and not np.isfinite(x).all():
            raise UserError(f"{path}: x holds NaN or infinite pixels")
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise UserError(f"{path}: pixels must lie in 0..255 (or 0..1 for float), got {low:g}..{high:g}")
        if x.dtype.kind == "f" and high <= 1.0:
            # float images in 0..1 (the usual float convention): cast as they are, all would be black
            self.note = f"{path}: float pixels in 0..1, scaled to 0..255"
            x = x * 255.0
        return np.rint(x).astype(np.uint8)

    @staticmethod
    def _labels(path: Path, y: np.ndarray) -> np.ndarray:
        """``y`` as int64 class indices 0..C-1, or one line saying what is wrong with it."""
        y = np.asarray(y)
        if y.dtype.kind not in "iuf" or (y.size and not np.isfinite(y).all()):
            raise UserError(f"{path}: y must hold class indices 0..C-1, got {y.dtype}")
        if y.size and y.dtype.kind == "f" and not np.array_equal(y, np.rint(y)):
            bad = y[y != np.rint(y)][0]
            raise UserError(f"{path}: y must hold whole class indices 0..C-1, got fractions such as {bad:g}")
        if y.size and y.min() < 0:
            raise UserError(f"{path}: y must hold class indices 0..C-1, got {int(y.min())}")
        return y.astype(np.int64)


class Subset(Dataset):
    """Some items of a dataset, with their ``targets`` and a fingerprint that names the choice."""

    def __init__(self, dataset, ids: np.ndarray, why: str) -> None:
        self.dataset, self.ids, self.why = dataset, np.asarray(ids, np.int64), why
        self.targets = np.asarray(dataset.targets, np.int64)[self.ids]
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return int(self.ids.size)

    def __getitem__(self, i: int):
        return self.dataset[int(self.ids[int(i)])]

    def __getitems__(self, ids: list[int]) -> list:
        inner = [int(self.ids[int(i)]) for i in ids]
        get = getattr(self.dataset, "__getitems__", None)
        return get(inner) if callable(get) else [self.dataset[i] for i in inner]

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.dataset.fingerprint()}:{self.why}".encode())
        h.update(self.ids.tobytes())
        return h.hexdigest()[:32]

    # raw caching over a lazily read dataset: only where the wrapped one reads raw bytes
    # (CachedDataset checks for raw/decode; a Subset that always had them passed that check
    # and then failed with an AttributeError on the first read of an in-memory .npz)
    def __getattr__(self, name: str):
        if name in ("raw", "decode") and callable(getattr(self.__dict__.get("dataset"), name, None)):
            return getattr(self, "_" + name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _raw(self, i: int):
        return self.dataset.raw(int(self.ids[int(i)]))

    def _decode(self, raw, i: int):
        return self.dataset.decode(raw, int(self.ids[int(i)]))
