"""LFU: evict the resident id with the fewest hits since it was admitted.

Ties: among ids of equal count, the one that reached that count *earliest* is
evicted first (each count keeps a FIFO of ids in the order they arrived at it).
A newcomer starts at count 1 and is never the victim of its own admission.
Counts are forgotten on eviction. This is libCacheSim's ``LFU`` (LFU.c), so the
two agree hit for hit.

State, O(1) per request (Shah, Mitra & Matani's LFU) over dense slots (see
``_slotlist`` for why): ``where[id]`` holds slot + 1 (``int32``); slots
``0 .. size-1`` are the resident ids, each with ``int32`` prev/next links
inside its count bucket and the bucket ``node`` it is in. Bucket nodes come
from a pool with a free list (there are never more non-empty buckets than
resident ids, so the pool stays as dense as the slots): count (``int64``),
first/last slot and previous/next bucket in increasing count. 44 bytes per
distinct id (all arrays are grown with the ids).

The access kernel keeps size, the first (lowest-count) bucket, the free-node
list and the pool's high-water mark in local variables for the whole batch
(numba reloads the scalar array after every link store otherwise). A hit on
an id alone in its bucket, with no bucket for the next count, only bumps the
bucket's count -- no link moves at all.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._lfubuckets import (
    FIRST,
    FREE,
    HIGH,
    NIL,
    _lfu_access_sized,
    _lfu_remove,
    _lfu_shrink,
)
from .base import Policy

# scalars: 0 capacity, 1 size, 2 first bucket (lowest count), 3 free-node list, 4 node high-water mark,
# 5 look-ahead sink
SINK = 5  # where the look-ahead loads go, so the compiler keeps them
# Touch ``where`` of the id this many requests ahead: its cache line is on the
# way while the current request is served (a cheap software prefetch; 1.1-1.35x
# in A/B runs on a shared 2-core box. S3-FIFO, whose hit is one byte, gained nothing).
LOOKAHEAD = 8


@nb.njit(cache=True)
def _lfu_access(
    ids,
    admit,
    use_admit,
    hits,
    evicted,
    record,
    where,
    sid,
    sprev,
    snext,
    snode,
    nfreq,
    nhead,
    ntail,
    nprev,
    nnext,
    s,
):
    cap, size, first, free, high = s[0], s[1], s[FIRST], s[FREE], s[HIGH]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    n = ids.size
    sink = 0
    for k in range(n):
        if k + LOOKAHEAD < n:
            sink += where[ids[k + LOOKAHEAD]]
        i = ids[k]
        w = where[i]
        if w > 0:
            hits[k] = True
            x = w - 1
            a = snode[x]
            f = nfreq[a] + 1
            b = nnext[a]
            p = sprev[x]
            q = snext[x]
            next_fits = b != NIL and nfreq[b] == f
            alone = p == NIL and q == NIL
            if alone and not next_fits:
                nfreq[a] = f  # the bucket held only x: it simply moves up a count
                continue
            # take x out of bucket a
            if p != NIL:
                snext[p] = q
            else:
                nhead[a] = q
            if q != NIL:
                sprev[q] = p
            else:
                ntail[a] = p
            if next_fits:
                target = b
                if alone:  # bucket a is empty now: unlink it and free its node
                    pa = nprev[a]
                    if pa != NIL:
                        nnext[pa] = b
                    else:
                        first = b
                    nprev[b] = pa
                    nnext[a] = free
                    free = a
            else:  # a new bucket for count f right after a
                if free != NIL:
                    target = free
                    free = nnext[free]
                else:
                    target = high
                    high += 1
                nfreq[target] = f
                nhead[target] = NIL
                ntail[target] = NIL
                nprev[target] = a
                nnext[target] = b
                nnext[a] = target
                if b != NIL:
                    nprev[b] = target
            # append x to the target bucket (it reached count f last)
            t = ntail[target]
            sprev[x] = t
            snext[x] = NIL
            if t != NIL:
                snext[t] = x
            else:
                nhead[target] = x
            ntail[target] = x
            snode[x] = target
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        if size >= cap:
            # the victim is the head of the lowest bucket; its slot goes to the newcomer
            a = first
            x = nhead[a]
            v = sid[x]
            where[v] = 0
            if record:
                evicted[n_ev] = v
            n_ev += 1
            q = snext[x]
            nhead[a] = q
            if q != NIL:
                sprev[q] = NIL
            else:  # the bucket is empty: free it
                ntail[a] = NIL
                first = nnext[a]
                if first != NIL:
                    nprev[first] = NIL
                nnext[a] = free
                free = a
        else:
            x = size
            size += 1
        sid[x] = i
        where[i] = x + 1
        if first != NIL and nfreq[first] == 1:
            target = first
        else:  # a new bucket for count 1 in front
            if free != NIL:
                target = free
                free = nnext[free]
            else:
                target = high
                high += 1
            nfreq[target] = 1
            nhead[target] = NIL
            ntail[target] = NIL
            nprev[target] = NIL
            nnext[target] = first
            if first != NIL:
                nprev[first] = target
            first = target
        t = ntail[target]
        sprev[x] = t
        snext[x] = NIL
        if t != NIL:
            snext[t] = x
        else:
            nhead[target] = x
        ntail[target] = x
        snode[x] = target
    s[1] = size
    s[FIRST] = first
    s[FREE] = free
    s[HIGH] = high
    s[SINK] = sink
    return n_ev, n_adm, n_rej


class LFU(Policy):
    name = "lfu"
    _where_dtype = np.int32
    _id_arrays = {
        "_sid": (np.int32, NIL),
        "_sprev": (np.int32, NIL),
        "_snext": (np.int32, NIL),
        "_snode": (np.int32, NIL),
        "_nfreq": (np.int64, 0),
        "_nhead": (np.int32, NIL),
        "_ntail": (np.int32, NIL),
        "_nprev": (np.int32, NIL),
        "_nnext": (np.int32, NIL),
    }
    _n_scalars = 6
    supports_sizes = True

    def _init_scalars(self) -> None:
        self._s[FIRST] = NIL
        self._s[FREE] = NIL
        self._s[HIGH] = 0

    def _arrays(self):
        return (
            self._where,
            self._sid,
            self._sprev,
            self._snext,
            self._snode,
            self._nfreq,
            self._nhead,
            self._ntail,
            self._nprev,
            self._nnext,
            self._s,
        )

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _lfu_access(ids, admit, use_admit, hits, evicted, record, *self._arrays())

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return _lfu_access_sized(
            ids, sizes, admit, use_admit, hits, evicted, record, *self._arrays(), self._osize, self._used
        )

    def _remove(self, ids):
        return _lfu_remove(ids, *self._arrays(), self._osize, self._used, self.by_bytes)

    def _shrink(self, evicted):
        return _lfu_shrink(evicted, *self._arrays(), self._osize, self._used, self.by_bytes)
