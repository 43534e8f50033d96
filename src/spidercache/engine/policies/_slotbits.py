"""A slot list with one "visited" bit per slot, shared by SIEVE and CLOCK.

The list is ``_slotlist``'s (resident ids in dense slots, head = newest,
tail = oldest) plus ``sbit``: a hit sets the bit; eviction differs:

* SIEVE (Zhang et al., NSDI '24; libCacheSim's ``Sieve``): a hand starts at the
  tail and walks towards the head (wrapping to the tail), clearing set bits, and
  evicts the first object whose bit is clear; the hand stays just before it.
* CLOCK (libCacheSim's ``Clock``, a 1-bit counter): look at the tail; if its bit
  is set, clear it and move the object to the head; evict the first tail whose
  bit is clear.

Both run with object counts or with object sizes (``by_bytes``: evict until the
newcomer fits; an object larger than the cache is not inserted). Scalars ``s``:
0 capacity, 1 size, 2 head, 3 tail, 4 SIEVE's hand (NIL: start at the tail).
The access kernels keep those in local variables through the batch (see
``_slotlist``); ``remove`` and ``resize`` are cold and work on ``s``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._slotlist import NIL, drop_slot, unlink
from .base import Policy

SIEVE, CLOCK = 0, 1
HAND = 4


@nb.njit(cache=True, inline="always")
def _push_head(slot, sprev, snext, s):
    sprev[slot] = NIL
    snext[slot] = s[2]
    if s[2] != NIL:
        sprev[s[2]] = slot
    else:
        s[3] = slot
    s[2] = slot


@nb.njit(cache=True, inline="always")
def _drop(slot, where, sid, sprev, snext, sbit, s):
    """Free ``slot`` (its bit moves with the last slot, which fills the hole); return that last slot."""
    last = s[1] - 1
    sbit[slot] = sbit[last]
    drop_slot(slot, where, sid, sprev, snext, s)
    return last


@nb.njit(cache=True)
def _evict_one(kind, where, sid, sprev, snext, sbit, s, osize, used, sized):
    if kind == SIEVE:
        hand = s[HAND] if s[HAND] != NIL else s[3]
        while sbit[hand] != 0:
            sbit[hand] = 0
            hand = sprev[hand] if sprev[hand] != NIL else s[3]
        nxt = sprev[hand]
    else:
        hand = s[3]
        while sbit[hand] != 0:
            sbit[hand] = 0
            unlink(hand, sprev, snext, s)
            _push_head(hand, sprev, snext, s)
            hand = s[3]
        nxt = NIL
    victim = sid[hand]
    if sized:
        used[0] -= osize[victim]
    last = _drop(hand, where, sid, sprev, snext, sbit, s)
    if kind == SIEVE:
        s[HAND] = hand if nxt == last else nxt
    return victim


@nb.njit(cache=True)
def access_bits_count(kind, ids, admit, use_admit, hits, evicted, record, where, sid, sprev, snext, sbit, s):
    # Object counts: head, tail, size and SIEVE's hand live in locals (see ``_slotlist``), and
    # the newcomer takes the victim's slot, so an eviction moves no other slot.
    cap, size, head, tail, hand = s[0], s[1], s[2], s[3], s[HAND]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        w = where[i]
        if w > 0:
            hits[k] = True
            sbit[w - 1] = 1
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        if size < cap:
            slot = size
            size += 1
        else:
            if kind == SIEVE:
                slot = hand if hand != NIL else tail
                while sbit[slot] != 0:
                    sbit[slot] = 0
                    slot = sprev[slot] if sprev[slot] != NIL else tail
                hand = sprev[slot]  # the next object towards the head (NIL: start at the tail)
            else:  # CLOCK: a set bit buys another lap from the head
                slot = tail
                while sbit[slot] != 0:
                    sbit[slot] = 0
                    if slot != head:
                        p = sprev[slot]
                        snext[p] = NIL
                        tail = p
                        sprev[slot] = NIL
                        snext[slot] = head
                        sprev[head] = slot
                        head = slot
                    slot = tail
            p = sprev[slot]  # unlink the victim's slot
            n = snext[slot]
            if p != NIL:
                snext[p] = n
            else:
                head = n
            if n != NIL:
                sprev[n] = p
            else:
                tail = p
            victim = sid[slot]
            where[victim] = 0
            if record:
                evicted[n_ev] = victim
            n_ev += 1
        sprev[slot] = NIL
        snext[slot] = head
        if head != NIL:
            sprev[head] = slot
        else:
            tail = slot
        head = slot
        sid[slot] = i
        sbit[slot] = 0
        where[i] = slot + 1
    s[1], s[2], s[3], s[HAND] = size, head, tail, hand
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def access_bits_sized(
    kind, ids, sizes, admit, use_admit, hits, evicted, record, where, sid, sprev, snext, sbit, s, osize, used
):
    # Object sizes: as ``access_bits_count`` (locals for the batch) but a miss may evict several
    # objects, so each eviction frees its slot by moving the last slot into the hole.
    cap, size, head, tail, hand, inuse = s[0], s[1], s[2], s[3], s[HAND], used[0]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        w = where[i]
        if w > 0:
            hits[k] = True
            sbit[w - 1] = 1
            continue
        hits[k] = False
        z = sizes[k]
        if (use_admit and not admit[k]) or z > cap:
            n_rej += 1
            continue
        n_adm += 1
        free = NIL  # the last victim's slot goes straight to the newcomer (as in _slotlist.access_sized)
        while inuse + z > cap:
            if kind == SIEVE:
                slot = hand if hand != NIL else tail
                while sbit[slot] != 0:
                    sbit[slot] = 0
                    slot = sprev[slot] if sprev[slot] != NIL else tail
                nxt = sprev[slot]
            else:
                slot = tail
                while sbit[slot] != 0:
                    sbit[slot] = 0
                    if slot != head:
                        p = sprev[slot]
                        snext[p] = NIL
                        tail = p
                        sprev[slot] = NIL
                        snext[slot] = head
                        sprev[head] = slot
                        head = slot
                    slot = tail
                nxt = NIL
            victim = sid[slot]
            inuse -= osize[victim]
            where[victim] = 0
            if record:
                evicted[n_ev] = victim
            n_ev += 1
            p = sprev[slot]
            n = snext[slot]
            if p != NIL:
                snext[p] = n
            else:
                head = n
            if n != NIL:
                sprev[n] = p
            else:
                tail = p
            if inuse + z <= cap:
                free = slot
                if kind == SIEVE:
                    hand = nxt
                break
            size -= 1
            if slot != size:  # the last slot fills the hole
                j = sid[size]
                sid[slot] = j
                where[j] = slot + 1
                sbit[slot] = sbit[size]
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
            if kind == SIEVE:
                hand = slot if nxt == size else nxt
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
        sbit[slot] = 0
        where[i] = slot + 1
        osize[i] = z
        inuse += z
    s[1], s[2], s[3], s[HAND] = size, head, tail, hand
    used[0] = inuse
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def remove_bits(ids, where, sid, sprev, snext, sbit, s, osize, used, sized):
    n = 0
    for k in range(ids.size):
        w = where[ids[k]]
        if w <= 0:
            continue
        slot = w - 1
        nxt = sprev[slot] if s[HAND] == slot else s[HAND]
        if sized:
            used[0] -= osize[ids[k]]
        last = _drop(slot, where, sid, sprev, snext, sbit, s)
        s[HAND] = slot if (nxt == last and nxt != NIL) else nxt
        n += 1
    return n


@nb.njit(cache=True)
def shrink_bits(kind, evicted, where, sid, sprev, snext, sbit, s, osize, used, sized):
    n = 0
    while s[1] > 0 and (used[0] if sized else s[1]) > s[0]:
        evicted[n] = _evict_one(kind, where, sid, sprev, snext, sbit, s, osize, used, sized)
        n += 1
    return n


class SlotBitsPolicy(Policy):
    """SIEVE and CLOCK: one slot list with a visited bit, differing in how they evict."""

    kind = SIEVE
    supports_sizes = True
    _where_dtype = np.int32
    _id_arrays = {
        "_sid": (np.int32, NIL),
        "_sprev": (np.int32, NIL),
        "_snext": (np.int32, NIL),
        "_sbit": (np.int8, 0),
    }
    _n_scalars = 5

    def _init_scalars(self) -> None:
        self._s[2:5] = NIL

    def _arrays(self):
        return self._where, self._sid, self._sprev, self._snext, self._sbit, self._s, self._osize, self._used

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return access_bits_count(self.kind, ids, admit, use_admit, hits, evicted, record, *self._arrays()[:6])

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return access_bits_sized(
            self.kind, ids, sizes, admit, use_admit, hits, evicted, record, *self._arrays()
        )

    def _remove(self, ids):
        return remove_bits(ids, *self._arrays(), self.by_bytes)

    def _shrink(self, evicted):
        return shrink_bits(self.kind, evicted, *self._arrays(), self.by_bytes)
