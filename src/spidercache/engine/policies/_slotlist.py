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

The access kernel (``access_batch``, shared by LRU and FIFO) copies head /
tail / size into local variables and writes them back at the end: numba cannot prove that ``s`` does
not alias the link arrays, so working on ``s`` directly forces a reload after
every link store, and helper functions returning tuples did not inline as
well -- the hand-inlined loop ran two to five times faster. Checked again
(2 M Zipf requests, 100k slots, old and new interleaved): ``@njit(inline="always")``
helpers for move-to-front and push-at-head, returning (head, tail), made LRU
1.44x and FIFO 1.39x slower; one kernel for counts and bytes (a ``sized`` flag,
as 2Q has) made them 1.1-1.2x slower. So the count kernel stays on its own.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .base import Policy

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
def access_batch(ids, admit, use_admit, hits, evicted, record, where, sid, sprev, snext, s, move_on_hit):
    # head / tail / size live in locals (registers) for the whole batch (see the
    # module docstring). ``move_on_hit`` is the only difference between LRU
    # (True) and FIFO (False); the branch is perfectly predicted.
    cap, size, head, tail = s[0], s[1], s[2], s[3]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        w = where[i]
        if w > 0:
            hits[k] = True
            slot = w - 1
            if move_on_hit and slot != head:  # move to front
                p = sprev[slot]
                n = snext[slot]
                snext[p] = n  # p exists: slot is not the head
                if n != NIL:
                    sprev[n] = p
                else:
                    tail = p
                sprev[slot] = NIL
                snext[slot] = head
                sprev[head] = slot
                head = slot
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        if size >= cap:
            # evict the tail and hand its slot to the newcomer, at the head
            slot = tail
            victim = sid[slot]
            where[victim] = 0
            if record:
                evicted[n_ev] = victim
            n_ev += 1
            if slot != head:
                p = sprev[slot]
                snext[p] = NIL
                tail = p
                sprev[slot] = NIL
                snext[slot] = head
                sprev[head] = slot
                head = slot
        else:
            slot = size
            size += 1
            sprev[slot] = NIL
            snext[slot] = head
            if head != NIL:
                sprev[head] = slot
            else:
                tail = slot
            head = slot
        sid[slot] = i
        where[i] = slot + 1
    s[1] = size
    s[2] = head
    s[3] = tail
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def access_sized(
    ids, sizes, admit, use_admit, hits, evicted, record, where, sid, sprev, snext, s, osize, used, move_on_hit
):
    # Byte-sized LRU / FIFO (libCacheSim's definition, see ``base``): a miss
    # evicts tails until the newcomer fits; an object larger than the cache is
    # not inserted. Head, tail, size and the bytes in use live in locals, as in
    # ``access_batch``; an eviction moves the last slot into the victim's hole
    # (``drop_slot``, inlined on the locals) so the slots stay dense, but the
    # last victim of a miss hands its slot to the newcomer, so the usual miss
    # (one eviction) costs what an object-count miss costs.
    cap, size, head, tail, inuse = s[0], s[1], s[2], s[3], used[0]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        z = sizes[k]
        w = where[i]
        if w > 0:
            hits[k] = True
            slot = w - 1
            if move_on_hit and slot != head:
                p = sprev[slot]
                n = snext[slot]
                snext[p] = n
                if n != NIL:
                    sprev[n] = p
                else:
                    tail = p
                sprev[slot] = NIL
                snext[slot] = head
                sprev[head] = slot
                head = slot
            continue
        hits[k] = False
        if (use_admit and not admit[k]) or z > cap:
            n_rej += 1
            continue
        n_adm += 1
        free = NIL  # a victim's slot handed straight to the newcomer (no hole to fill)
        while inuse + z > cap:
            slot = tail
            victim = sid[slot]
            inuse -= osize[victim]
            where[victim] = 0
            if record:
                evicted[n_ev] = victim
            n_ev += 1
            p = sprev[slot]  # unlink the tail
            tail = p
            if p != NIL:
                snext[p] = NIL
            else:
                head = NIL
            if inuse + z <= cap:  # the last victim of this miss: its slot takes the newcomer
                free = slot
                break
            size -= 1
            if slot != size:  # the last slot fills the hole
                j = sid[size]
                sid[slot] = j
                where[j] = slot + 1
                p = sprev[size]
                n = snext[size]
                sprev[slot] = p
                snext[slot] = n
                if p != NIL:
                    snext[p] = slot
                else:
                    head = slot
                if n != NIL:
                    sprev[n] = slot
                else:
                    tail = slot
        if free != NIL:
            slot = free
        else:
            slot = size
            size += 1
        sprev[slot] = NIL
        snext[slot] = head
        if head != NIL:
            sprev[head] = slot
        else:
            tail = slot
        head = slot
        sid[slot] = i
        where[i] = slot + 1
        osize[i] = z
        inuse += z
    s[1] = size
    s[2] = head
    s[3] = tail
    used[0] = inuse
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def remove_ids(ids, where, sid, sprev, snext, s, osize, used, sized):
    n = 0
    for k in range(ids.size):
        w = where[ids[k]]
        if w > 0:
            if sized:
                used[0] -= osize[ids[k]]
            drop_slot(w - 1, where, sid, sprev, snext, s)
            n += 1
    return n


@nb.njit(cache=True)
def shrink_to_capacity(evicted, where, sid, sprev, snext, s, osize, used, sized):
    n = 0
    while s[1] > 0 and (used[0] if sized else s[1]) > s[0]:
        slot = s[3]
        victim = sid[slot]
        evicted[n] = victim
        n += 1
        if sized:
            used[0] -= osize[victim]
        drop_slot(slot, where, sid, sprev, snext, s)
    return n


class SlotListPolicy(Policy):
    """LRU and FIFO: one slot list, differing only in whether a hit moves to the front."""

    move_on_hit = True
    _where_dtype = np.int32
    _id_arrays = {"_sid": (np.int32, NIL), "_sprev": (np.int32, NIL), "_snext": (np.int32, NIL)}
    _n_scalars = 4
    supports_sizes = True

    def _init_scalars(self) -> None:
        self._s[2] = NIL
        self._s[3] = NIL

    def _arrays(self):
        return self._where, self._sid, self._sprev, self._snext, self._s, self._osize, self._used

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return access_batch(
            ids, admit, use_admit, hits, evicted, record, *self._arrays()[:5], self.move_on_hit
        )

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return access_sized(
            ids, sizes, admit, use_admit, hits, evicted, record, *self._arrays(), self.move_on_hit
        )

    def _remove(self, ids):
        return remove_ids(ids, *self._arrays(), self.by_bytes)

    def _shrink(self, evicted):
        return shrink_to_capacity(evicted, *self._arrays(), self.by_bytes)
