"""Remap arbitrary integer keys to dense ids 0..n-1, once.

Policies keep their state in flat arrays indexed by id, so every key must
become a small dense integer first. ``remap_trace`` does it for a whole trace
(the simulator); ``KeyRemapper`` does it incrementally for live caches whose
keys arrive batch by batch. Ids are given in order of first appearance.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_EMPTY = np.int64(-(2**63))  # sentinel key for an empty hash slot


@nb.njit(cache=True)
def _remap_direct(keys, lo, span):
    # Keys fit a small range: a direct table beats hashing. int32 entries
    # halve the table's cache footprint (ids stay below 2**31 here because
    # the span is bounded by the caller).
    table = np.full(span, -1, np.int32)
    out = np.empty(keys.size, np.int64)
    n = 0
    for i in range(keys.size):
        k = keys[i] - lo
        v = table[k]
        if v < 0:
            v = n
            table[k] = n
            n += 1
        out[i] = v
    return out, n


@nb.njit(cache=True)
def _hash_slot(key, mask):
    # splitmix64 finaliser: spreads clustered keys over the table.
    z = np.uint64(key) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z & np.uint64(mask))


@nb.njit(cache=True)
def _remap_hashed(keys, slot_keys, slot_ids, n_start):
    # Open addressing with linear probing; table size is a power of two kept
    # at most half full by the caller, so probing always terminates.
    mask = slot_keys.size - 1
    out = np.empty(keys.size, np.int64)
    n = n_start
    for i in range(keys.size):
        k = keys[i]
        s = _hash_slot(k, mask)
        while True:
            sk = slot_keys[s]
            if sk == k and slot_ids[s] >= 0:
                out[i] = slot_ids[s]
                break
            if slot_ids[s] < 0:
                slot_keys[s] = k
                slot_ids[s] = n
                out[i] = n
                n += 1
                break
            s = (s + 1) & mask
    return out, n


def _table_size(n_keys: int) -> int:
    size = 16
    while size < 2 * n_keys + 16:
        size *= 2
    return size


def remap_trace(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (dense ids, number of distinct keys) for a whole trace."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if keys.size == 0:
        return np.empty(0, np.int64), 0
    lo, hi = int(keys.min()), int(keys.max())
    span = hi - lo + 1
    if span <= max(4 * keys.size, 1 << 20) and span < 2**31:
        return _remap_direct(keys, lo, span)
    size = _table_size(keys.size)
    slot_keys = np.zeros(size, np.int64)
    slot_ids = np.full(size, -1, np.int64)
    ids, n = _remap_hashed(keys, slot_keys, slot_ids, 0)
    return ids, int(n)


class KeyRemapper:
    """Incremental key -> dense id map for live caches.

    >>> r = KeyRemapper()
    >>> r.ids(np.array([10, 99, 10]))
    array([0, 1, 0])
    """

    def __init__(self, expected_keys: int = 1024) -> None:
        size = _table_size(expected_keys)
        self._slot_keys = np.zeros(size, np.int64)
        self._slot_ids = np.full(size, -1, np.int64)
        self._keys = np.empty(max(expected_keys, 16), np.int64)
        self.n = 0

    def ids(self, keys: np.ndarray) -> np.ndarray:
        """Dense ids for ``keys``; unseen keys get the next free ids."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if 2 * (self.n + keys.size) + 16 > self._slot_keys.size:
            self._grow(self.n + keys.size)
        out, n = _remap_hashed(keys, self._slot_keys, self._slot_ids, self.n)
        if n > self.n:
            if n > self._keys.size:
                bigger = np.empty(max(n, 2 * self._keys.size), np.int64)
                bigger[: self.n] = self._keys[: self.n]
                self._keys = bigger
            new = out >= self.n
            self._keys[out[new]] = keys[new]
            self.n = int(n)
        return out

    def keys(self, ids: np.ndarray) -> np.ndarray:
        """The original keys of dense ``ids``."""
        return self._keys[: self.n][np.asarray(ids, np.int64)]

    def _grow(self, n_keys: int) -> None:
        size = _table_size(n_keys)
        slot_keys = np.zeros(size, np.int64)
        slot_ids = np.full(size, -1, np.int64)
        _remap_hashed(self._keys[: self.n].copy(), slot_keys, slot_ids, 0)
        self._slot_keys, self._slot_ids = slot_keys, slot_ids
