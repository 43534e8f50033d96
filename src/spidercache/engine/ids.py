"""Remap arbitrary integer keys to dense ids 0..n-1, once.

Policies keep their state in flat arrays indexed by id, so every key must
become a small dense integer first. ``remap_trace`` does it for a whole trace
(the simulator); ``KeyRemapper`` does it incrementally for live caches whose
keys arrive batch by batch. Ids are given in order of first appearance.

Keys are 64-bit patterns: signed ``int64`` or unsigned ``uint64`` (libCacheSim's
object ids) are both accepted; an unsigned key is used through its ``int64``
view, which is one-to-one, so no two keys meet.

The hash table of a wide key range is sized from the number of *distinct* keys,
estimated first with a HyperLogLog sketch (one cheap pass): a block trace
expanded into 512-byte sectors has a span far wider than its request count, and
a table sized from the requests (2^24 slots for 8 M requests over 2 M keys) spent
most of its time in cache misses. Should the estimate fall short, the table
grows and the pass resumes where it stopped.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# HyperLogLog: 2^14 one-byte registers, about 0.8 % standard error.
_HLL_BITS = 14


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


@nb.njit(cache=True, inline="always")
def _mix(key):
    # splitmix64 finaliser: spreads clustered keys over all 64 bits.
    z = np.uint64(key) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, inline="always")
def _hash_slot(key, mask):
    return np.int64(_mix(key) & np.uint64(mask))


@nb.njit(cache=True)
def _hll_estimate(keys, bits):
    m = 1 << bits
    reg = np.zeros(m, np.uint8)
    for i in range(keys.size):
        h = _mix(keys[i])
        j = np.int64(h >> np.uint64(64 - bits))
        rest = (h << np.uint64(bits)) | np.uint64(1 << (bits - 1))
        rank = 1
        while (rest & np.uint64(1 << 63)) == 0:
            rest = rest << np.uint64(1)
            rank += 1
        if rank > reg[j]:
            reg[j] = rank
    total = 0.0
    zeros = 0
    for j in range(m):
        total += 2.0 ** (-np.float64(reg[j]))
        if reg[j] == 0:
            zeros += 1
    est = 0.7213 / (1.0 + 1.079 / m) * m * m / total
    if est <= 2.5 * m and zeros > 0:  # small range: linear counting
        est = m * np.log(m / zeros)
    return est


def estimate_distinct(keys: np.ndarray) -> int:
    """HyperLogLog estimate of the number of distinct keys (about 1 % off)."""
    keys = np.ascontiguousarray(keys).view(np.int64) if keys.dtype == np.uint64 else keys
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if keys.size == 0:
        return 0
    return int(round(_hll_estimate(keys, _HLL_BITS)))


@nb.njit(cache=True)
def _remap_hashed(keys, slot_keys, slot_ids, n_start, out, start, limit):
    # Open addressing with linear probing; table size is a power of two. Stops
    # (returning the position) when ``limit`` ids are in use, so the caller can
    # grow the table and resume: probing then always finds a free slot.
    mask = slot_keys.size - 1
    n = n_start
    for i in range(start, keys.size):
        if n >= limit:
            return i, n
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
    return keys.size, n


def _table_size(n_keys: int) -> int:
    size = 16
    while size < 2 * n_keys + 16:
        size *= 2
    return size


def _as_int64(keys: np.ndarray) -> np.ndarray:
    """Signed or unsigned 64-bit keys as contiguous ``int64`` (unsigned: the bit pattern)."""
    keys = np.asarray(keys)
    if keys.dtype == np.uint64:
        return np.ascontiguousarray(keys).view(np.int64)
    return np.ascontiguousarray(keys, dtype=np.int64)


def remap_trace(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (dense ids, number of distinct keys) for a whole trace."""
    keys = _as_int64(keys)
    if keys.size == 0:
        return np.empty(0, np.int64), 0
    lo, hi = int(keys.min()), int(keys.max())
    span = hi - lo + 1
    if span <= max(4 * keys.size, 1 << 20) and span < 2**31:
        return _remap_direct(keys, lo, span)
    expected = min(keys.size, int(1.05 * estimate_distinct(keys)) + 64)
    table = _Table(expected)
    out = np.empty(keys.size, np.int64)
    start, n = 0, 0
    while start < keys.size:
        start, n = _remap_hashed(keys, table.keys, table.ids, n, out, start, table.limit)
        if start < keys.size:  # the estimate fell short: grow and resume
            table = table.grown(out[:start], keys[:start], 2 * n)
    return out, int(n)


class _Table:
    """Open-addressing table: ``limit`` ids fit while it stays at most half full."""

    def __init__(self, n_keys: int) -> None:
        size = _table_size(n_keys)
        self.keys = np.zeros(size, np.int64)
        self.ids = np.full(size, -1, np.int32 if size <= 2**31 else np.int64)
        self.limit = (size - 16) // 2

    def grown(self, ids_so_far: np.ndarray, keys_so_far: np.ndarray, n_keys: int) -> _Table:
        bigger = _Table(n_keys)
        n = int(ids_so_far.max()) + 1 if ids_so_far.size else 0
        first = np.empty(n, np.int64)
        first[ids_so_far] = keys_so_far  # each id's key (any of its positions)
        _remap_hashed(first, bigger.keys, bigger.ids, 0, np.empty(n, np.int64), 0, bigger.limit)
        return bigger


class KeyRemapper:
    """Incremental key -> dense id map for live caches.

    >>> r = KeyRemapper()
    >>> r.ids(np.array([10, 99, 10]))
    array([0, 1, 0])
    """

    def __init__(self, expected_keys: int = 1024) -> None:
        size = _table_size(expected_keys)
        self._slot_keys = np.zeros(size, np.int64)
        self._slot_ids = np.full(size, -1, np.int32)
        self._keys = np.empty(max(expected_keys, 16), np.int64)
        self.n = 0

    def ids(self, keys: np.ndarray) -> np.ndarray:
        """Dense ids for ``keys``; unseen keys get the next free ids."""
        keys = _as_int64(keys)
        if 2 * (self.n + keys.size) + 16 > self._slot_keys.size:
            self._grow(self.n + keys.size)
        out = np.empty(keys.size, np.int64)
        _, n = _remap_hashed(keys, self._slot_keys, self._slot_ids, self.n, out, 0, 2**62)
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

    many = keys  # as a key function of ``engine.execute``: the store keys of a batch of dense ids

    def _grow(self, n_keys: int) -> None:
        size = _table_size(n_keys)
        slot_keys = np.zeros(size, np.int64)
        slot_ids = np.full(size, -1, np.int32)
        out = np.empty(self.n, np.int64)
        _remap_hashed(self._keys[: self.n].copy(), slot_keys, slot_ids, 0, out, 0, 2**62)
        self._slot_keys, self._slot_ids = slot_keys, slot_ids
