"""Belady labels for every access, fast (Hawkeye's "OPTgen" idea, done exactly).

For each access ``i`` of a trace we want:

* ``hit[i]``: whether Belady's OPT serves it from the cache;
* ``keep[i]``: whether OPT keeps the row from this access until its next use
  (the admission label a cache model learns): ``hit[next_use[i]]``;
* ``next_use_distance[i]``: requests until the same key comes again (``-1``: never).

Next-use positions come from ``engine/nextuse.py`` (``NEVER`` for a last access),
the heap from ``engine/heap.py`` and the capacity rule from ``engine/capacity.py``.

The simulation is one numba pass with a max-heap keyed by next-use position.
Next-use positions are unique for keys that come again (all last accesses share
``NEVER``, and which of those goes first changes no hit), so any correct Belady
makes the same hit/miss decisions and our hits equal the engine's OPT hit for
hit. Heap entries are never deleted on a hit: a stale entry's key is a position
already passed, so it can never be the maximum while a live entry exists; the
heap is compacted when it fills. That keeps each access at O(log capacity).

RecMG labels with a plain Python Belady (about 2,000 requests/s);
``python_belady`` here is that obvious version, kept for tests and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from ..engine.capacity import capacity_for
from ..engine.heap import heap_pop, heap_push, heapify
from ..engine.ids import remap_trace
from ..engine.nextuse import next_use_positions
from ..errors import UserError

LABEL_DTYPE = np.dtype([("hit", np.bool_), ("keep", np.bool_), ("next_use_distance", np.int64)])


@nb.njit(cache=True)
def _belady(ids, nxt, n_ids, capacity, bypass):
    n = ids.size
    hits = np.zeros(n, np.bool_)
    cur = np.full(n_ids, -1, np.int64)  # next use of a resident id, -1 when absent
    hcap = 2 * capacity + 64
    hk = np.empty(hcap, np.int64)
    hv = np.empty(hcap, np.int64)
    hsize = 0
    size = 0
    for i in range(n):
        x = ids[i]
        nu = nxt[i]
        if cur[x] >= 0:
            hits[i] = True
        else:
            if size >= capacity:
                # the top is always live: stale keys are positions <= i
                if bypass and nu > hk[0]:
                    continue
                victim = hv[0]
                cur[victim] = -1
                size -= 1
                hsize = heap_pop(hk, hv, hsize)
            size += 1
        cur[x] = nu
        if hsize == hcap:  # compact: keep live entries only, re-heapify
            m = 0
            for j in range(hsize):
                if hk[j] > i and cur[hv[j]] == hk[j]:
                    hk[m], hv[m] = hk[j], hv[j]
                    m += 1
            hsize = m
            heapify(hk, hv, hsize)
        hsize = heap_push(hk, hv, hsize, nu, x)
    return hits


def belady_hits(
    ids: np.ndarray,
    capacity: int,
    bypass: bool = False,
    nxt: np.ndarray | None = None,
    n_ids: int | None = None,
) -> np.ndarray:
    """Hit mask of Belady's OPT on dense ids (``bypass``: a miss may be refused)."""
    ids = np.ascontiguousarray(ids, np.int64)
    if int(capacity) < 1:
        raise UserError(f"cache size must be at least 1 row, got {capacity}")
    if n_ids is None:
        n_ids = int(ids.max()) + 1 if ids.size else 0
    if nxt is None:
        nxt = next_use_positions(ids, n_ids)
    # the heap is sized by capacity: no more than the n_ids distinct ids can be resident
    return _belady(ids, nxt, n_ids, min(int(capacity), max(n_ids, 1)), bool(bypass))


@dataclass
class Labels:
    hit: np.ndarray
    keep: np.ndarray
    next_use_distance: np.ndarray
    capacity: int
    distinct: int

    @property
    def hit_ratio(self) -> float:
        return float(self.hit.mean()) if self.hit.size else 0.0

    def to_records(self) -> np.ndarray:
        out = np.empty(self.hit.size, LABEL_DTYPE)
        out["hit"], out["keep"], out["next_use_distance"] = self.hit, self.keep, self.next_use_distance
        return out


def optgen(keys: np.ndarray, cache_size: float, bypass: bool = False, ids_n: tuple | None = None) -> Labels:
    """Belady labels of a key trace at ``cache_size`` (fraction of distinct keys or a count)."""
    keys = np.ascontiguousarray(keys, np.int64)
    if keys.size == 0:
        raise UserError("trace is empty")
    ids, n = ids_n if ids_n is not None else remap_trace(keys)
    cap = capacity_for(cache_size, n)
    nxt = next_use_positions(ids, n)
    hits = _belady(ids, nxt, n, min(cap, n), bool(bypass))  # at most n rows are ever resident
    total = ids.size
    has_next = nxt < total
    keep = np.zeros(total, np.bool_)
    keep[has_next] = hits[nxt[has_next]]
    dist = np.where(has_next, nxt - np.arange(total), -1)
    return Labels(hits, keep, dist, cap, int(n))


# ------------------------------------------------------ plain-Python reference
def python_belady(ids: list[int] | np.ndarray, capacity: int, bypass: bool = False) -> list[bool]:
    """The obvious Belady (RecMG style): scan the cache for the farthest next use on each eviction."""
    ids = [int(x) for x in ids]
    n = len(ids)
    nxt = [0] * n
    last: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        nxt[i] = last.get(ids[i], n + i)
        last[ids[i]] = i
    cache: dict[int, int] = {}
    hits = []
    for i, x in enumerate(ids):
        if x in cache:
            hits.append(True)
        else:
            hits.append(False)
            if len(cache) >= capacity:
                victim = max(cache, key=cache.__getitem__)
                if bypass and nxt[i] > cache[victim]:
                    continue
                del cache[victim]
        cache[x] = nxt[i]
    return hits
