"""LRFU (decayed-frequency) eviction, the ordering under ``learned+offline`` and an expert of ``learned``.

Each row's score is log(decayed access count) + (time of last access) / tau (+ an optional
per-access offset from a model); the lowest score is evicted. Because a count decays as
exp(-idle / tau), comparing scores fixed at access time is the same as comparing the decayed
counts now, so one max-heap keyed at access time (holding -score) orders the rows exactly.
Rows are also kept in LRU order (``learned+offline``'s next-use ordering uses it).

tau is in units of the capacity: small tau is LRU-like, large tau LFU-like.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..engine.heap import heap_pop, heap_push
from ..engine.policies.base import Policy

NIL = -1
# scalars: 0 capacity, 1 size, 2 LRU head (most recent), 3 LRU tail, 4 heap size, 5 bypass,
# 6 ordering (0: predicted next-use time, 1: decayed-frequency score, see _decay_access)


@nb.njit(cache=True, inline="always")
def _unlink(i, prev, nxt, s):
    p, n = prev[i], nxt[i]
    if p != NIL:
        nxt[p] = n
    else:
        s[2] = n
    if n != NIL:
        prev[n] = p
    else:
        s[3] = p
    prev[i] = NIL
    nxt[i] = NIL


@nb.njit(cache=True, inline="always")
def _push_front(i, prev, nxt, s):
    head = s[2]
    prev[i] = NIL
    nxt[i] = head
    if head != NIL:
        prev[head] = i
    else:
        s[3] = i
    s[2] = i


@nb.njit(cache=True)
def _compact(hk, hv, s, where, due):
    m = 0
    for j in range(s[4]):
        i = hv[j]
        if where[i] > 0 and due[i] == hk[j]:
            hk[m] = hk[j]
            hv[m] = hv[j]
            m += 1
    s[4] = 0
    keys = hk[:m].copy()
    vals = hv[:m].copy()
    for j in range(m):
        s[4] = heap_push(hk, hv, s[4], keys[j], vals[j])


@nb.njit(cache=True, inline="always")
def _farthest(hk, hv, s, where, due):
    # top live entry (drops stale ones); -1 if none
    while s[4] > 0:
        i = hv[0]
        if where[i] > 0 and due[i] == hk[0]:
            return i
        s[4] = heap_pop(hk, hv, s[4])
    return -1


@nb.njit(cache=True, inline="always")
def _evict_one(now, where, prev, nxt, s, pf, due, hk, hv):
    tail = s[3]
    if s[6] == 0 and due[tail] < now:  # overdue: the prediction failed, the row is likely far
        victim = tail
    else:
        victim = _farthest(hk, hv, s, where, due)
        if victim < 0:
            victim = tail
    _unlink(victim, prev, nxt, s)
    where[victim] = 0
    pf[victim] = 0
    s[1] -= 1
    return victim


@nb.njit(cache=True, inline="always")
def _place(i, key, where, prev, nxt, s, due, hk, hv):
    due[i] = key
    if s[4] == hk.size:
        _compact(hk, hv, s, where, due)
    s[4] = heap_push(hk, hv, s[4], key, i)
    _push_front(i, prev, nxt, s)
    where[i] = 1


@nb.njit(cache=True)
def _decay_access(
    ids,
    off,
    now0,
    inv_tau,
    admit,
    use_admit,
    hits,
    evicted,
    record,
    where,
    prev,
    nxt,
    s,
    pf,
    due,
    hk,
    hv,
    dec,
    seen,
    counters,
):
    """Ordering 1: each row's score is log(decayed access count) + (time of last access) / tau
    + the model's offset for that access; the lowest score goes first. Because a
    count decays as exp(-idle / tau), comparing scores fixed at access time is the
    same as comparing the decayed counts now (LRFU), so one heap keyed at access
    time orders the rows exactly. The heap is a max-heap, so it holds -score."""
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        now = now0 + k
        if seen[i] >= 0:
            dec[i] = dec[i] * np.exp((seen[i] - now) * inv_tau) + 1.0
        else:
            dec[i] = 1.0
        seen[i] = now
        key = -(np.log(dec[i]) + now * inv_tau + off[k])
        if where[i] > 0:
            hits[k] = True
            if pf[i]:
                counters[0] += 1
                pf[i] = 0
            _unlink(i, prev, nxt, s)
            _place(i, key, where, prev, nxt, s, due, hk, hv)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        if s[1] >= s[0]:
            v = _evict_one(now, where, prev, nxt, s, pf, due, hk, hv)
            if record:
                evicted[n_ev] = v
            n_ev += 1
        _place(i, key, where, prev, nxt, s, due, hk, hv)
        s[1] += 1
        n_adm += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _remove(ids, where, prev, nxt, s, pf):
    n = 0
    for k in range(ids.size):
        i = ids[k]
        if where[i] > 0:
            _unlink(i, prev, nxt, s)
            where[i] = 0
            pf[i] = 0
            s[1] -= 1
            n += 1
    return n


@nb.njit(cache=True)
def _shrink(now, evicted, where, prev, nxt, s, pf, due, hk, hv):
    n = 0
    while s[1] > s[0]:
        evicted[n] = _evict_one(now, where, prev, nxt, s, pf, due, hk, hv)
        n += 1
    return n


class DecayHeapPolicy(Policy):
    """The state the heap-ordered policies share (``LRFU`` here, ``OfflineLearned`` in policy.py):
    a linked list of residents, a lazy min-heap of eviction keys, and per-row decay state; the
    kernels above run on it. A subclass gives ``_access`` and the clock (``_now``)."""

    _id_arrays = {
        "_prev": (np.int64, NIL),
        "_next": (np.int64, NIL),
        "_pf": (np.int8, 0),
        "_due": (np.float64, 0.0),
        "_dec": (np.float64, 0.0),
        "_seen": (np.int64, -1),
    }
    _n_scalars = 7

    def _now(self) -> float:
        raise NotImplementedError

    def _alloc_heap(self) -> None:
        n = 2 * self.capacity + 1024
        self._hk = np.zeros(n, np.float64)
        self._hv = np.zeros(n, np.int64)
        self._s[4] = 0

    def _init_scalars(self) -> None:
        self._s[2] = NIL
        self._s[3] = NIL
        self._s[6] = 1

    def _on_resize(self) -> None:
        if self._hk.size < 2 * self.capacity + 1024:
            hk, hv, live = self._hk, self._hv, int(self._s[4])
            self._alloc_heap()
            self._hk[:live], self._hv[:live] = hk[:live], hv[:live]
            self._s[4] = live

    def _remove(self, ids):
        return _remove(ids, self._where, self._prev, self._next, self._s, self._pf)

    def _heap_arrays(self):
        """The list, heap and scalar arrays every kernel above takes, in their order."""
        return self._where, self._prev, self._next, self._s, self._pf, self._due, self._hk, self._hv

    def _decay(self, ids, off, now, inv_tau, admit, use_admit, hits, evicted, record):
        """``_decay_access`` on this policy's state (``off``: per-request offsets added to the score)."""
        return _decay_access(
            ids,
            off,
            now,
            inv_tau,
            admit,
            use_admit,
            hits,
            evicted,
            record,
            *self._heap_arrays(),
            self._dec,
            self._seen,
            self._counters,
        )

    def _shrink(self, evicted):
        return _shrink(self._now(), evicted, *self._heap_arrays())

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._hk, self._hv]


class LRFU(DecayHeapPolicy):
    """Evict the row with the lowest decayed access count (time constant ``tau`` x capacity)."""

    name = "lrfu"

    def __init__(self, capacity: int, n_ids: int = 0, *, tau: float = 8.0, **kw) -> None:
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.time = 0
        self._counters = np.zeros(1, np.int64)
        super().__init__(capacity, n_ids, **kw)
        self._alloc_heap()

    def _now(self) -> float:
        return float(self.time)

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        now = self.time
        self.time += ids.size
        inv_tau = 1.0 / (self.tau * self.capacity)
        return self._decay(
            ids, np.zeros(ids.size), float(now), inv_tau, admit, use_admit, hits, evicted, record
        )
