"""Cheap per-access features for the cache and prefetch models, in one numba pass.

Every feature uses only the past, so the same kernel labels a training trace and
runs inside the live ``learned`` policy. Times are measured in units of the cache
capacity C (a gap of C requests is 1.0): a model trained at one cache size then
reads the same numbers at another, which is what lets one model serve 5 %, 10 %
and 20 % caches.

Features (all float32):

0. recency: log1p(gap / C), gap = requests since this key's last access
1. first access flag
2. frequency: log1p(accesses so far)
3. previous reuse gap: log1p(gap1 / C)
4. the one before: log1p(gap2 / C)
5. short-term popularity: log of an exponentially decayed count (time constant C)
6. long-term popularity: the same with time constant 16 C
7. position in batch: (position mod batch) / batch
8. table share: log of this table's share of accesses so far times the number of tables

A missing gap (first access, no earlier reuse) reads as 64 C.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

N_FEATURES = 9
FEATURE_NAMES = [
    "recency",
    "first_access",
    "frequency",
    "reuse_gap_1",
    "reuse_gap_2",
    "decayed_count_C",
    "decayed_count_16C",
    "batch_position",
    "table_share",
]
_MISSING_GAP = 64.0


@nb.njit(cache=True)
def _access_features(ids, tables, inv_c, batch_len, last, count, gap1, gap2, d1, d2, tcount, sc, out):
    # sc: 0 time, 1 number of tables seen
    t = sc[0]
    missing = math.log1p(_MISSING_GAP)
    for k in range(ids.size):
        x = ids[k]
        lt = last[x]
        if lt < 0:
            out[k, 0] = missing
            out[k, 1] = 1.0
            out[k, 3] = missing
            out[k, 4] = missing
            d1[x] = 1.0
            d2[x] = 1.0
        else:
            g = (t - lt) * inv_c
            out[k, 0] = math.log1p(g)
            out[k, 1] = 0.0
            g1 = gap1[x]
            g2 = gap2[x]
            out[k, 3] = math.log1p(g1) if g1 >= 0 else missing
            out[k, 4] = math.log1p(g2) if g2 >= 0 else missing
            gap2[x] = g1
            gap1[x] = g
            d1[x] = d1[x] * math.exp(-g) + 1.0
            d2[x] = d2[x] * math.exp(-g / 16.0) + 1.0
        out[k, 2] = math.log1p(count[x])
        count[x] += 1
        out[k, 5] = math.log(d1[x])
        out[k, 6] = math.log(d2[x])
        out[k, 7] = (t % batch_len) / batch_len
        tb = tables[k]
        if tcount[tb] == 0:
            sc[1] += 1
        tcount[tb] += 1
        out[k, 8] = math.log(tcount[tb] * sc[1] / (t + 1.0))
        last[x] = t
        t += 1
    sc[0] = t


@nb.njit(cache=True)
def _candidate_features(ids, tables, inv_c, last, count, gap1, gap2, d1, d2, tcount, sc, out):
    """Features of keys as they stand now, without counting an access (for prefetch)."""
    t = sc[0]
    missing = math.log1p(_MISSING_GAP)
    for k in range(ids.size):
        x = ids[k]
        lt = last[x]
        if lt < 0:
            out[k, 0] = missing
            out[k, 1] = 1.0
            out[k, 3] = missing
            out[k, 4] = missing
            out[k, 5] = 0.0
            out[k, 6] = 0.0
        else:
            g = (t - lt) * inv_c
            out[k, 0] = math.log1p(g)
            out[k, 1] = 0.0
            out[k, 3] = math.log1p(gap1[x]) if gap1[x] >= 0 else missing
            out[k, 4] = math.log1p(gap2[x]) if gap2[x] >= 0 else missing
            out[k, 5] = math.log(d1[x] * math.exp(-g) + 1e-6)
            out[k, 6] = math.log(d2[x] * math.exp(-g / 16.0) + 1e-6)
        out[k, 2] = math.log1p(count[x])
        out[k, 7] = 0.0
        tb = tables[k]
        out[k, 8] = math.log((tcount[tb] + 1e-6) * max(sc[1], 1) / (t + 1.0))


class FeatureState:
    """Per-key history (flat arrays indexed by dense id) and the kernels over it."""

    def __init__(self, capacity: int, n_ids: int = 0, n_tables: int = 1, batch_len: int = 4096) -> None:
        self.capacity = max(int(capacity), 1)
        self.batch_len = max(int(batch_len), 1)
        self._n = 0
        self.last = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.gap1 = np.zeros(0, np.float64)
        self.gap2 = np.zeros(0, np.float64)
        self.d1 = np.zeros(0, np.float64)
        self.d2 = np.zeros(0, np.float64)
        self.tcount = np.zeros(max(int(n_tables), 1), np.int64)
        self.sc = np.zeros(2, np.int64)
        self.reserve(max(int(n_ids), 16))

    @property
    def time(self) -> int:
        return int(self.sc[0])

    def reserve(self, n: int) -> None:
        if n <= self._n:
            return
        n = max(n, 2 * self._n)
        for name, fill in (
            ("last", -1),
            ("count", 0),
            ("gap1", -1.0),
            ("gap2", -1.0),
            ("d1", 0.0),
            ("d2", 0.0),
        ):
            old = getattr(self, name)
            new = np.full(n, fill, old.dtype)
            new[: old.size] = old
            setattr(self, name, new)
        self._n = n

    def _history(self):
        """The per-key and per-table arrays the feature kernels take (``access`` updates them), in order."""
        return self.last, self.count, self.gap1, self.gap2, self.d1, self.d2, self.tcount, self.sc

    def _tables(self, tables: np.ndarray | None, size: int) -> np.ndarray:
        if tables is None:
            return np.zeros(size, np.int64)
        tables = np.ascontiguousarray(tables, np.int64)
        hi = int(tables.max()) if tables.size else 0
        if hi >= self.tcount.size:
            grown = np.zeros(max(hi + 1, 2 * self.tcount.size), np.int64)
            grown[: self.tcount.size] = self.tcount
            self.tcount = grown
        return tables

    def access(self, ids: np.ndarray, tables: np.ndarray | None = None) -> np.ndarray:
        """Features of each access in order; updates the history."""
        ids = np.ascontiguousarray(ids, np.int64)
        if ids.size:
            self.reserve(int(ids.max()) + 1)
        out = np.empty((ids.size, N_FEATURES), np.float32)
        _access_features(
            ids,
            self._tables(tables, ids.size),
            1.0 / self.capacity,
            self.batch_len,
            *self._history(),
            out,
        )
        return out

    def candidates(self, ids: np.ndarray, tables: np.ndarray | None = None) -> np.ndarray:
        """Features of keys as of now (no access counted)."""
        ids = np.ascontiguousarray(ids, np.int64)
        if ids.size:
            self.reserve(int(ids.max()) + 1)
        out = np.empty((ids.size, N_FEATURES), np.float32)
        _candidate_features(
            ids,
            self._tables(tables, ids.size),
            1.0 / self.capacity,
            *self._history(),
            out,
        )
        return out

    def state_bytes(self) -> int:
        return sum(getattr(self, a).nbytes for a in ("last", "count", "gap1", "gap2", "d1", "d2", "tcount"))


def trace_features(
    ids: np.ndarray, tables: np.ndarray | None, capacity: int, batch_len: int = 4096
) -> np.ndarray:
    """Features of a whole trace of dense ids (fresh history)."""
    n_ids = int(ids.max()) + 1 if ids.size else 0
    n_tables = int(tables.max()) + 1 if tables is not None and tables.size else 1
    return FeatureState(capacity, n_ids, n_tables, batch_len).access(ids, tables)
