"""A doubly linked list over dense *slots*, shared by LRU and FIFO.

Why slots: a resident id's list node does not live at index ``id`` (scattered
over every id the trace ever named) but in slot ``where[id] - 1``, and slots
``0 .. size-1`` are always the resident ones. The nodes of a cache of C entries
therefore sit in C consecutive places (a few hundred KiB for C = 100k) and stay
in the CPU cache, so a hit costs one scattered load (``where[id]``) instead of
four or five. An eviction hands its slot straight to the newcomer; ``remove``
moves the last slot into the hole to keep the slots dense.

Arrays: ``where`` (per id: slot + 1, 0 = absent), ``sid`` (slot -> id),
``sprev`` / ``snext`` (slot links, head = most recently inserted/used).
Scalars ``s``: 0 capacity, 1 size, 2 head slot, 3 tail slot.

The access kernels (in lru.py, fifo.py) copy head / tail / size into local
variables and write them back at the end: numba cannot prove that ``s`` does
not alias the link arrays, so working on ``s`` directly forces a reload after
every link store, and helper functions returning tuples did not inline as
well -- the hand-inlined loop ran two to five times faster. Only the cold paths
(remove, shrink) live here.
"""

from __future__ import annotations

import numba as nb

NIL = -1


@nb.njit(cache=True, inline="always")
def unlink(slot, sprev, snext, s):
    p = sprev[slot]
    n = snext[slot]
    if p != NIL:
        snext[p] = n
    else:
        s[2] = n
    if n != NIL:
        sprev[n] = p
    else:
        s[3] = p


@nb.njit(cache=True, inline="always")
def drop_slot(slot, where, sid, sprev, snext, s):
    """Remove the id in ``slot``; move the last slot into the hole."""
    unlink(slot, sprev, snext, s)
    where[sid[slot]] = 0
    last = s[1] - 1
    s[1] = last
    if slot != last:
        j = sid[last]
        sid[slot] = j
        where[j] = slot + 1
        p = sprev[last]
        n = snext[last]
        sprev[slot] = p
        snext[slot] = n
        if p != NIL:
            snext[p] = slot
        else:
            s[2] = slot
        if n != NIL:
            sprev[n] = slot
        else:
            s[3] = slot


@nb.njit(cache=True)
def remove_ids(ids, where, sid, sprev, snext, s):
    n = 0
    for k in range(ids.size):
        w = where[ids[k]]
        if w > 0:
            drop_slot(w - 1, where, sid, sprev, snext, s)
            n += 1
    return n


@nb.njit(cache=True)
def shrink_to_capacity(evicted, where, sid, sprev, snext, s):
    n = 0
    while s[1] > s[0]:
        slot = s[3]
        evicted[n] = sid[slot]
        n += 1
        drop_slot(slot, where, sid, sprev, snext, s)
    return n
