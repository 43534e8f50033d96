"""Putting a session's cache into a pipeline: MindSpore's two modes.

* ``CachedMappable`` (random-access datasets): a lookup op reads each index
  from the cache, the misses are loaded from the source and merged back in
  (written to the cache), so the next epoch hits.
* ``CachedStream`` (iterable datasets): the first epoch reads the source and
  builds the cache (items numbered in stream order); once a whole epoch is in,
  it is sealed on the server and later epochs read the cache only. An epoch
  that could not store every item (memory full, no spill) is not sealed, and
  later epochs read the source again rather than serve half the data.

The pipeline fingerprint (``fingerprint(...)``) names the cache within the
session: identical pipelines share it, a different one is refused. If the
server goes away (``StoreUnavailable``), both fall back to the source and
count what they missed.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import xxhash

from ..engine import codec
from ..errors import StoreUnavailable
from .client import DatasetCache


def fingerprint(*parts: Any) -> str:
    """A stable hash of the pipeline's description (dataset, ops, their arguments)."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return xxhash.xxh3_64_hexdigest(text.encode())


class CachedMappable:
    """``dataset[i]`` through the cache: lookup, load the misses, merge them in."""

    def __init__(
        self,
        dataset: Sequence,
        cache: DatasetCache,
        encode: Callable[[Any], bytes] = codec.encode,
        decode: Callable = codec.decode,
    ) -> None:
        self.dataset = dataset
        self.cache = cache
        self.encode, self.decode = encode, decode
        self.hits = self.misses = self.unavailable = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.get_batch([index])[0]

    def get_batch(self, indices: Iterable[int]) -> list:
        ids = np.fromiter((int(i) for i in indices), np.int64)
        try:
            found = self.cache.get_many(ids)
        except StoreUnavailable:
            self.unavailable += ids.size
            return [self.dataset[int(i)] for i in ids]
        out: list = [None] * ids.size
        miss = []
        for k, raw in enumerate(found):
            if raw is None:
                miss.append(k)
                continue
            try:
                out[k] = self.decode(raw)
            except Exception:  # a damaged value is a miss, never wrong data
                miss.append(k)
        self.hits += ids.size - len(miss)
        self.misses += len(miss)
        if miss:
            loaded = [self.dataset[int(ids[k])] for k in miss]
            for k, v in zip(miss, loaded):
                out[k] = v
            try:
                self.cache.put_many(ids[miss], [self.encode(v) for v in loaded])
            except StoreUnavailable:
                self.unavailable += len(miss)
        return out


class CachedStream:
    """An iterable through the cache: epoch 1 builds it, later epochs read it."""

    def __init__(
        self,
        source: Callable[[], Iterable],
        cache: DatasetCache,
        batch_size: int = 256,
        encode: Callable[[Any], bytes] = codec.encode,
        decode: Callable = codec.decode,
    ) -> None:
        self.source = source  # called once per epoch that reads the source
        self.cache = cache
        self.batch_size = batch_size
        self.encode, self.decode = encode, decode
        self.epochs_from_cache = self.epochs_from_source = 0

    def __iter__(self) -> Iterator:
        try:
            self.cache.refresh()
            sealed = self.cache.sealed_items
        except StoreUnavailable:
            sealed = -1
        if sealed >= 0:
            try:
                items = self._read_cache(sealed)
            except (StoreUnavailable, LookupError):
                items = None
            if items is not None:
                self.epochs_from_cache += 1
                yield from items
                return
        yield from self._build()

    def _read_cache(self, n: int) -> list | None:
        out: list = []
        batches = [np.arange(s, min(n, s + self.batch_size)) for s in range(0, n, self.batch_size)]
        for values in self.cache.iter_batches(batches):
            if any(v is None for v in values):
                return None  # something vanished (destroyed and recreated?): rebuild
            out.extend(self.decode(v) for v in values)
        return out

    def _build(self) -> Iterator:
        self.epochs_from_source += 1
        complete, n = True, 0
        ids: list[int] = []
        encoded: list[bytes] = []

        def flush() -> bool:
            try:
                ok = self.cache.put_many(np.array(ids, np.int64), encoded).all()
            except StoreUnavailable:
                ok = False
            ids.clear()
            encoded.clear()
            return bool(ok)

        for item in self.source():
            ids.append(n)
            encoded.append(self.encode(item))
            n += 1
            if len(ids) >= self.batch_size:
                complete &= flush()
            yield item
        if ids:
            complete &= flush()
        if complete:
            try:
                self.cache.seal(n)
            except StoreUnavailable:
                pass
