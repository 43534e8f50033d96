"""ARC (Megiddo & Modha, FAST '03): adaptive balance of recency and frequency.

Four LRU lists: T1 (seen once recently) and T2 (seen at least twice) hold the
resident ids; the ghost lists B1 and B2 remember ids recently evicted from T1
and T2 (no value). A request that hits B1 grows the target size ``p`` of T1 by
``max(|B2| // |B1|, 1)`` (capped at the capacity c); a hit in B2 shrinks it by
``max(|B1| // |B2|, 1)``. REPLACE evicts the LRU of T1 into B1 when
``|T1| > p`` (or ``|T1| == p`` and the request was in B2), else the LRU of T2
into B2. Directory sizes are kept at ``|T1| + |B1| <= c`` and
``|T1| + |T2| + |B1| + |B2| <= 2c``, as in the paper's pseudo-code (integer p,
like libCacheSim's ARC).

Extensions for a live cache: REPLACE runs only when the cache is full (after
``remove`` it may not be); a request whose admission is refused changes nothing
(ghost entries and ``p`` stay). ``where`` codes: 1 = T1, 2 = T2, -1 = B1, -2 = B2.

State: ``where`` (int8) and ``int32`` prev/next per id: 9 bytes per distinct id.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _idlist as il
from .base import Policy

NIL = il.NIL
# list offsets into the scalar array (head at L, tail at L + 1)
T1, T2, B1, B2 = 2, 4, 6, 8
# lengths
N_T1, N_T2, N_B1, N_B2 = 10, 11, 12, 13
P = 14


@nb.njit(cache=True, inline="always")
def _replace(in_b2, where, prev, nxt, s):
    """Move the LRU of T1 or T2 to its ghost list; return the id that left the cache."""
    n1 = s[N_T1]
    if n1 >= 1 and (n1 > s[P] or (in_b2 and n1 == s[P]) or s[N_T2] == 0):
        v = il.pop_tail(T1, prev, nxt, s)
        s[N_T1] -= 1
        il.push_head(v, B1, prev, nxt, s)
        s[N_B1] += 1
        where[v] = -1
    else:
        v = il.pop_tail(T2, prev, nxt, s)
        s[N_T2] -= 1
        il.push_head(v, B2, prev, nxt, s)
        s[N_B2] += 1
        where[v] = -2
    s[1] -= 1
    return v


@nb.njit(cache=True, inline="always")
def _forget_b1(where, prev, nxt, s):
    g = il.pop_tail(B1, prev, nxt, s)
    s[N_B1] -= 1
    where[g] = 0


@nb.njit(cache=True, inline="always")
def _forget_b2(where, prev, nxt, s):
    g = il.pop_tail(B2, prev, nxt, s)
    s[N_B2] -= 1
    where[g] = 0


@nb.njit(cache=True)
def _arc_access(ids, admit, use_admit, hits, evicted, record, where, prev, nxt, s):
    c = s[0]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w > 0:
            hits[k] = True
            if w == 1:
                il.unlink(x, T1, prev, nxt, s)
                s[N_T1] -= 1
                il.push_head(x, T2, prev, nxt, s)
                s[N_T2] += 1
                where[x] = 2
            elif s[T2] != x:
                il.unlink(x, T2, prev, nxt, s)
                il.push_head(x, T2, prev, nxt, s)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        victim = NIL
        if w == -1:  # ghost hit in B1: favour recency
            d = s[N_B2] // s[N_B1]
            s[P] = min(s[P] + max(d, 1), c)
            if s[1] >= c:
                victim = _replace(False, where, prev, nxt, s)
            il.unlink(x, B1, prev, nxt, s)
            s[N_B1] -= 1
            il.push_head(x, T2, prev, nxt, s)
            s[N_T2] += 1
            where[x] = 2
        elif w == -2:  # ghost hit in B2: favour frequency
            d = s[N_B1] // s[N_B2]
            s[P] = max(s[P] - max(d, 1), 0)
            if s[1] >= c:
                victim = _replace(True, where, prev, nxt, s)
            il.unlink(x, B2, prev, nxt, s)
            s[N_B2] -= 1
            il.push_head(x, T2, prev, nxt, s)
            s[N_T2] += 1
            where[x] = 2
        else:  # a complete miss
            if s[N_T1] + s[N_B1] >= c:
                if s[N_T1] < c:
                    if s[N_B1] > 0:
                        _forget_b1(where, prev, nxt, s)
                    if s[1] >= c:
                        victim = _replace(False, where, prev, nxt, s)
                else:  # T1 alone fills the cache: drop its LRU outright
                    victim = il.pop_tail(T1, prev, nxt, s)
                    s[N_T1] -= 1
                    where[victim] = 0
                    s[1] -= 1
            else:
                total = s[N_T1] + s[N_T2] + s[N_B1] + s[N_B2]
                if total >= c:
                    if total >= 2 * c and s[N_B2] > 0:
                        _forget_b2(where, prev, nxt, s)
                    if s[1] >= c:
                        victim = _replace(False, where, prev, nxt, s)
            il.push_head(x, T1, prev, nxt, s)
            s[N_T1] += 1
            where[x] = 1
        s[1] += 1
        if victim != NIL:
            if record:
                evicted[n_ev] = victim
            n_ev += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _arc_remove(ids, where, prev, nxt, s):
    n = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w == 1:
            il.unlink(x, T1, prev, nxt, s)
            s[N_T1] -= 1
        elif w == 2:
            il.unlink(x, T2, prev, nxt, s)
            s[N_T2] -= 1
        else:
            continue
        where[x] = 0
        s[1] -= 1
        n += 1
    return n


@nb.njit(cache=True)
def _arc_trim_ghosts(where, prev, nxt, s):
    c = s[0]
    s[P] = min(s[P], c)
    while s[N_T1] + s[N_B1] > c and s[N_B1] > 0:
        _forget_b1(where, prev, nxt, s)
    while s[N_T1] + s[N_T2] + s[N_B1] + s[N_B2] > 2 * c:
        if s[N_B2] > 0:
            _forget_b2(where, prev, nxt, s)
        elif s[N_B1] > 0:
            _forget_b1(where, prev, nxt, s)
        else:
            break


@nb.njit(cache=True)
def _arc_shrink(evicted, where, prev, nxt, s):
    n = 0
    while s[1] > s[0]:
        evicted[n] = _replace(False, where, prev, nxt, s)
        n += 1
    _arc_trim_ghosts(where, prev, nxt, s)
    return n


class ARC(Policy):
    name = "arc"
    _id_arrays = {"_prev": (np.int32, NIL), "_next": (np.int32, NIL)}
    _n_scalars = 15  # 0 c, 1 size, 2-9 list heads/tails, 10-13 lengths, 14 p

    def _init_scalars(self) -> None:
        self._s[2:10] = NIL

    @property
    def p(self) -> int:
        """Current target size of T1."""
        return int(self._s[P])

    def _on_resize(self) -> None:
        _arc_trim_ghosts(self._where, self._prev, self._next, self._s)

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _arc_access(ids, admit, use_admit, hits, evicted, record,
                           self._where, self._prev, self._next, self._s)

    def _remove(self, ids):
        return _arc_remove(ids, self._where, self._prev, self._next, self._s)

    def _shrink(self, evicted):
        return _arc_shrink(evicted, self._where, self._prev, self._next, self._s)
