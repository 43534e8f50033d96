"""LRU: evict the least recently used id.

State: a doubly linked list threaded through two per-id arrays (``_prev``,
``_next``); the head is the most recent, the tail the next victim. 17 bytes of
state per distinct id.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .base import Policy

NIL = -1
# scalars: 0 capacity, 1 size, 2 head (MRU), 3 tail (LRU)


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
    h = s[2]
    prev[i] = NIL
    nxt[i] = h
    if h != NIL:
        prev[h] = i
    else:
        s[3] = i
    s[2] = i


@nb.njit(cache=True)
def _lru_access(ids, admit, use_admit, hits, evicted, record, where, prev, nxt, s):
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        if where[i] > 0:
            hits[k] = True
            if s[2] != i:
                _unlink(i, prev, nxt, s)
                _push_front(i, prev, nxt, s)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        if s[1] >= s[0]:
            victim = s[3]
            _unlink(victim, prev, nxt, s)
            where[victim] = 0
            s[1] -= 1
            if record:
                evicted[n_ev] = victim
            n_ev += 1
        _push_front(i, prev, nxt, s)
        where[i] = 1
        s[1] += 1
        n_adm += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _lru_remove(ids, where, prev, nxt, s):
    n = 0
    for k in range(ids.size):
        i = ids[k]
        if where[i] > 0:
            _unlink(i, prev, nxt, s)
            where[i] = 0
            s[1] -= 1
            n += 1
    return n


@nb.njit(cache=True)
def _lru_shrink(evicted, where, prev, nxt, s):
    n = 0
    while s[1] > s[0]:
        victim = s[3]
        _unlink(victim, prev, nxt, s)
        where[victim] = 0
        s[1] -= 1
        evicted[n] = victim
        n += 1
    return n


class LRU(Policy):
    name = "lru"
    _id_arrays = {"_prev": (np.int64, NIL), "_next": (np.int64, NIL)}
    _n_scalars = 4

    def _init_scalars(self) -> None:
        self._s[2] = NIL
        self._s[3] = NIL

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _lru_access(ids, admit, use_admit, hits, evicted, record,
                           self._where, self._prev, self._next, self._s)

    def _remove(self, ids):
        return _lru_remove(ids, self._where, self._prev, self._next, self._s)

    def _shrink(self, evicted):
        return _lru_shrink(evicted, self._where, self._prev, self._next, self._s)
