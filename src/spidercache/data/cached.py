"""``CachedDataset``: a user's map-style dataset whose batches are served through a cache.

The loader's ``engine.Cache`` (policy + stores) plans each batch in the
deciding process (the ``CachedLoader``); a DataLoader worker (or the main
process with ``num_workers=0``) calls ``__getitems__`` with the plan, which the
same cache runs (``Cache.run``, i.e. ``engine.execute``): hits are read from
the stores, misses through the wrapped dataset's own ``__getitem__`` (or
``__getitems__``), admissions written back. What is cached per id is

* ``cache="decoded"`` (default): the item ``(sample, label)`` as the wrapped
  dataset returns it, before ``transform`` (so random augmentation given as
  ``transform`` stays random);
* ``cache="raw"``: the encoded file bytes, for datasets whose decoded form is
  much larger; the dataset must offer ``raw(i) -> bytes`` and
  ``decode(raw, i) -> (sample, label)`` (``ImageFolder`` does).

Given anything other than a plan (a plain ``DataLoader`` hands a list of
indices), ``__getitems__`` raises a ``UserError``: a batch never bypasses the
cache silently. ``__getitem__(i)`` reads through the cache without changing
it (the store's value if it has one, else the wrapped dataset's).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..engine import codec
from ..engine.cache import Cache
from ..engine.execute import DOWN
from ..engine.plan import BatchPlan
from ..errors import CorruptValue, UserError
from .storage import StorageModel

CACHE_MODES = ("decoded", "raw")


class BadSample(Exception):
    """Raised by a dataset for a sample that cannot be read (skipped and counted unless strict)."""


@dataclass
class BatchMeta:
    """What the cache did for one yielded batch (travels back from the worker)."""

    requested: np.ndarray
    served: np.ndarray  # ids actually trained on, one per item of the batch
    hit: np.ndarray
    substituted: np.ndarray
    lost: int = 0
    store_errors: int = 0
    source_reads: int = 0
    source_seconds: float = 0.0
    skipped: int = 0
    written: dict = field(default_factory=dict)


class KeyOf:
    """Store key of an id: ``prefix:id`` (shared stores), or the id itself (private stores)."""

    def __init__(self, prefix: str | None) -> None:
        self.prefix = prefix

    def __call__(self, i: int):
        return int(i) if self.prefix is None else f"{self.prefix}:{int(i)}"

    def many(self, ids: np.ndarray) -> list:
        """``[self(i) for i in ids]`` (the ids themselves for a private store)."""
        if self.prefix is None:
            return ids.tolist()
        return [f"{self.prefix}:{i}" for i in ids.tolist()]


def check_item(item: Any, index: int) -> tuple[Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise UserError(
            f"dataset item {index} is not (sample, label) but {type(item).__name__}"
            + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        )
    return item[0], item[1]


def _plain(v: Any) -> Any:
    """A codec-encodable form of a label or sample (numpy scalars and 0-d tensors become numbers)."""
    if isinstance(v, torch.Tensor) and v.ndim == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


class CachedDataset(torch.utils.data.Dataset):
    """A map-style dataset over ``dataset`` whose batches run cache plans (see the module docstring)."""

    def __init__(
        self,
        dataset,
        through: Cache | None = None,
        cache: str = "decoded",
        transform: Callable | None = None,
        strict: bool = False,
        storage_model: StorageModel | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        if cache not in CACHE_MODES:
            raise UserError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
        if cache == "raw" and not (
            callable(getattr(dataset, "raw", None)) and callable(getattr(dataset, "decode", None))
        ):
            raise UserError(
                f"cache='raw' needs a dataset with raw(i) and decode(raw, i); "
                f"{type(dataset).__name__} has not: use cache='decoded'"
            )
        self.dataset = dataset
        self.through = through  # the engine cache whose plans this dataset runs (None: no cache)
        self.cache = cache
        self.transform = transform
        self.strict = bool(strict)
        self.storage_model = storage_model or StorageModel()
        # With the labels known, a decoded value is the sample alone (one codec unpack per
        # hit) and the label comes from here; else the value is [sample, label].
        self.labels = None if labels is None else np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def stores(self) -> list:
        return [] if self.through is None else self.through.stores

    @property
    def key(self):
        return KeyOf(None) if self.through is None else self.through.key

    @property
    def targets(self):
        return getattr(self.dataset, "targets", None)

    # -------------------------------------------------------- source reads
    def _read_one(self, i: int):
        try:
            if self.cache == "raw":
                return self.dataset.raw(i)
            s, y = check_item(self.dataset[i], i)
            return self._value(s, y)
        except BadSample as exc:
            return self._skip(exc)

    def _skip(self, exc: BadSample) -> None:
        """None for a sample that cannot be read, with a warning naming it (``strict``: UserError)."""
        if self.strict:
            raise UserError(str(exc)) from None
        warnings.warn(f"skipped: {exc}", stacklevel=3)
        return None

    def load(self, ids: np.ndarray) -> list:
        """Values for ``ids`` from the wrapped dataset (None for a skipped sample)."""
        id_list = [int(i) for i in ids.tolist()]
        getitems = getattr(self.dataset, "__getitems__", None)
        if self.cache == "decoded" and callable(getitems):
            try:
                items = getitems(id_list)
                out = [self._value(*check_item(it, i)) for it, i in zip(items, id_list)]
            except BadSample:
                out = [self._read_one(i) for i in id_list]  # find and skip the bad one
        else:
            out = [self._read_one(i) for i in id_list]
        if not self.storage_model.free:
            nbytes = sum(_nbytes(v) for v in out)
            time.sleep(self.storage_model.seconds(len(out), nbytes))
        return out

    # ----------------------------------------------------------- values
    def _value(self, s: Any, y: Any):
        return _plain(s) if self.labels is not None else [_plain(s), _plain(y)]

    def item(self, value: Any, i: int):
        """The ``(sample, label)`` a cached or loaded value stands for, after ``transform``."""
        if self.cache == "raw":
            s, y = check_item(self.dataset.decode(value, i), i)
        elif self.labels is not None:
            s, y = value, int(self.labels[i])
        else:
            s, y = value
        if isinstance(s, np.ndarray) and not s.flags.writeable:
            s = s.copy()  # the codec's zero-copy view of a store buffer
        if self.transform is not None:
            s = self.transform(s)
        return s, y

    def item_or_skip(self, value: Any, i: int):
        """``item(value, i)``, or None where ``value`` is raw bytes that do not decode (see ``_skip``).

        A raw value is decoded only here, after it was read or fetched from a store, so a file
        that does not decode is found here and skipped as in ``cache="decoded"``.
        """
        try:
            return self.item(value, i)
        except BadSample as exc:
            return self._skip(exc)

    def __getitem__(self, index: int):
        """Read through the cache without changing it."""
        i = int(index)
        v = None
        for st in self.stores:
            raw = st.call("get_many", [self.key(i)])
            if raw is not DOWN and raw[0] is not None:
                try:
                    v = codec.decode(raw[0])
                    break
                except CorruptValue:
                    pass
        if v is None:
            v = self.load(np.asarray([i]))[0]
        got = None if v is None else self.item_or_skip(v, i)
        if got is None:
            raise UserError(f"sample {i} cannot be read")
        return got

    def __getitems__(self, plan):
        if not isinstance(plan, BatchPlan):
            raise UserError(
                "this dataset is served through a cache: iterate it with spidercache.CachedLoader "
                "(a plain DataLoader would read around the cache)"
            )
        if self.through is None:
            raise UserError("this CachedDataset has no cache: it only serves __getitem__")
        ex = self.through.run(plan, self.load)
        stacked = self._stacked(ex)
        if stacked is not None:  # item(v, i) of these values: (v, label), nothing to copy or transform
            keep = np.ones(len(ex.values), np.bool_)  # every value a verified hit
            items = list(zip(ex.values, self.labels[ex.served].tolist()))
        else:
            got = [
                None if v is None else self.item_or_skip(v, int(i))
                for v, i in zip(ex.values, ex.served.tolist())
            ]
            keep = np.asarray([g is not None for g in got], np.bool_)
            items = [g for g in got if g is not None]
        meta = BatchMeta(
            plan.requested[keep],
            ex.served[keep],
            ex.hit[keep],
            ex.substituted[keep],
            ex.lost,
            ex.store_errors,
            ex.source_reads,
            ex.source_seconds,
            int((~keep).sum()),
            ex.written,
        )
        return _Executed(items, meta, stacked)

    def _stacked(self, ex):
        """The batch's samples as one tensor when they are, in order, the rows of one decoded run.

        That is a warm batch: every value a verified hit, decoded together by
        ``codec_rows`` as views of one contiguous tensor; with no ``transform``
        the samples are those views, so stacking them would copy that tensor.
        """
        if len(ex.runs) != 1 or self.transform is not None or self.cache != "decoded" or self.labels is None:
            return None
        run = ex.runs[0]
        n = len(ex.values)
        if ex.lost or run.positions.size != n or not isinstance(run.batch, torch.Tensor):
            return None
        return run.batch if bool((run.positions == np.arange(n)).all()) else None


def _nbytes(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, (bytes, bytearray, memoryview)):
        return len(v)
    s = v[0] if isinstance(v, list) else v
    if isinstance(s, torch.Tensor):
        return s.numel() * s.element_size()
    return int(getattr(s, "nbytes", 0))


class _Executed(list):
    """The items of one batch plus their ``BatchMeta`` (what ``__getitems__`` hands the collate)."""

    def __init__(self, items: list, meta: BatchMeta, stacked: torch.Tensor | None = None) -> None:
        super().__init__(items)
        self.meta = meta
        self.stacked = stacked  # the samples stacked, when they already are (see CachedDataset._stacked)


class LabelsOf:
    """Stands, on its way from a worker, for the label tensor of a stacked batch (see ``Collate``).

    ``CachedLoader`` replaces it by ``default_collate`` of the labels of
    ``ids`` (the loader's ``labels``, the ones the worker's items carry).
    """

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids


class Collate:
    """collate_fn of the loader: the user's collate over the items, plus the batch's meta."""

    def __init__(self, collate_fn: Callable | None, labels_in_main: bool = False) -> None:
        self.collate_fn = collate_fn or torch.utils.data.default_collate
        # a worker's stacked batch may leave its labels to the main process (not when the
        # DataLoader pins batches: it would not pin a tensor made after its pin thread)
        self.labels_in_main = bool(labels_in_main)

    def __call__(self, batch: _Executed):
        if batch.stacked is not None and self.collate_fn is torch.utils.data.default_collate:
            # what default_collate gives for (tensor, label) items: [stacked samples, collated labels]
            if self.labels_in_main and torch.utils.data.get_worker_info() is not None:
                # the labels are known to the loader's main process: it builds their tensor there,
                # so a batch crosses from the worker as one shared tensor, not two
                return [batch.stacked, LabelsOf(batch.meta.served)], batch.meta
            return [batch.stacked, self.collate_fn([y for _, y in batch])], batch.meta
        return self.collate_fn(list(batch)), batch.meta
