"""LFU: evict the resident id with the fewest hits since it was admitted.

Ties: among ids of equal count, the one that reached that count *earliest* is
evicted first (each count keeps a FIFO of ids in the order they arrived at it).
A newcomer starts at count 1 and is never the victim of its own admission.
Counts are forgotten on eviction. This is libCacheSim's ``LFU`` (LFU.c), so the
two agree hit for hit.

State, O(1) per request (Shah, Mitra & Matani's LFU): per id ``where`` (int8),
``int32`` prev/next links inside its count bucket and the bucket ``node`` it is
in; per bucket node (a pool indexed like ids -- there are never more non-empty
buckets than resident ids) the count (int64), the first/last id and the
previous/next bucket in increasing count. 37 bytes per distinct id.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .base import Policy

NIL = -1
# scalars: 0 capacity, 1 size, 2 first bucket (lowest count), 3 free-node list, 4 node high-water mark
FIRST, FREE, HIGH = 2, 3, 4


@nb.njit(cache=True, inline="always")
def _new_node(f, after, nfreq, nhead, ntail, nprev, nnext, s):
    """A bucket for count ``f`` placed after bucket ``after`` (NIL: first)."""
    n = s[FREE]
    if n != NIL:
        s[FREE] = nnext[n]
    else:
        n = s[HIGH]
        s[HIGH] = n + 1
    nfreq[n] = f
    nhead[n] = NIL
    ntail[n] = NIL
    if after == NIL:
        b = s[FIRST]
        s[FIRST] = n
    else:
        b = nnext[after]
        nnext[after] = n
    nprev[n] = after
    nnext[n] = b
    if b != NIL:
        nprev[b] = n
    return n


@nb.njit(cache=True, inline="always")
def _free_node(n, nprev, nnext, s):
    p = nprev[n]
    b = nnext[n]
    if p != NIL:
        nnext[p] = b
    else:
        s[FIRST] = b
    if b != NIL:
        nprev[b] = p
    nnext[n] = s[FREE]
    s[FREE] = n


@nb.njit(cache=True, inline="always")
def _append(i, n, node, prev, nxt, nhead, ntail):
    t = ntail[n]
    prev[i] = t
    nxt[i] = NIL
    if t != NIL:
        nxt[t] = i
    else:
        nhead[n] = i
    ntail[n] = i
    node[i] = n


@nb.njit(cache=True, inline="always")
def _detach(i, n, prev, nxt, nhead, ntail):
    """Take id ``i`` out of bucket ``n``; return True if the bucket is now empty."""
    p = prev[i]
    q = nxt[i]
    if p != NIL:
        nxt[p] = q
    else:
        nhead[n] = q
    if q != NIL:
        prev[q] = p
    else:
        ntail[n] = p
    return nhead[n] == NIL


@nb.njit(cache=True, inline="always")
def _evict_min(where, node, prev, nxt, nfreq, nhead, ntail, nprev, nnext, s):
    n = s[FIRST]
    v = nhead[n]
    if _detach(v, n, prev, nxt, nhead, ntail):
        _free_node(n, nprev, nnext, s)
    where[v] = 0
    s[1] -= 1
    return v


@nb.njit(cache=True)
def _lfu_access(ids, admit, use_admit, hits, evicted, record,
                where, node, prev, nxt, nfreq, nhead, ntail, nprev, nnext, s):
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        if where[i] > 0:
            hits[k] = True
            a = node[i]
            f = nfreq[a] + 1
            b = nnext[a]
            empty = _detach(i, a, prev, nxt, nhead, ntail)
            if b != NIL and nfreq[b] == f:
                target = b
                if empty:
                    _free_node(a, nprev, nnext, s)
            elif empty:
                nfreq[a] = f  # the bucket held only i: it simply moves up a count
                target = a
            else:
                target = _new_node(f, a, nfreq, nhead, ntail, nprev, nnext, s)
            _append(i, target, node, prev, nxt, nhead, ntail)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        if s[1] >= s[0]:
            v = _evict_min(where, node, prev, nxt, nfreq, nhead, ntail, nprev, nnext, s)
            if record:
                evicted[n_ev] = v
            n_ev += 1
        first = s[FIRST]
        if first != NIL and nfreq[first] == 1:
            target = first
        else:
            target = _new_node(1, NIL, nfreq, nhead, ntail, nprev, nnext, s)
        _append(i, target, node, prev, nxt, nhead, ntail)
        where[i] = 1
        s[1] += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _lfu_remove(ids, where, node, prev, nxt, nfreq, nhead, ntail, nprev, nnext, s):
    n = 0
    for k in range(ids.size):
        i = ids[k]
        if where[i] > 0:
            a = node[i]
            if _detach(i, a, prev, nxt, nhead, ntail):
                _free_node(a, nprev, nnext, s)
            where[i] = 0
            s[1] -= 1
            n += 1
    return n


@nb.njit(cache=True)
def _lfu_shrink(evicted, where, node, prev, nxt, nfreq, nhead, ntail, nprev, nnext, s):
    n = 0
    while s[1] > s[0]:
        evicted[n] = _evict_min(where, node, prev, nxt, nfreq, nhead, ntail, nprev, nnext, s)
        n += 1
    return n


class LFU(Policy):
    name = "lfu"
    _id_arrays = {
        "_node": (np.int32, NIL), "_prev": (np.int32, NIL), "_next": (np.int32, NIL),
        "_nfreq": (np.int64, 0), "_nhead": (np.int32, NIL), "_ntail": (np.int32, NIL),
        "_nprev": (np.int32, NIL), "_nnext": (np.int32, NIL),
    }
    _n_scalars = 5

    def _init_scalars(self) -> None:
        self._s[FIRST] = NIL
        self._s[FREE] = NIL
        self._s[HIGH] = 0

    def _arrays(self):
        return (self._where, self._node, self._prev, self._next, self._nfreq,
                self._nhead, self._ntail, self._nprev, self._nnext, self._s)

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _lfu_access(ids, admit, use_admit, hits, evicted, record, *self._arrays())

    def _remove(self, ids):
        return _lfu_remove(ids, *self._arrays())

    def _shrink(self, evicted):
        return _lfu_shrink(evicted, *self._arrays())
