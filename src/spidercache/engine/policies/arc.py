"""ARC (Megiddo & Modha, FAST '03): adaptive balance of recency and frequency.

T1 (seen once recently) and T2 (seen at least twice) hold the resident ids; the
ghost lists B1 and B2 remember ids recently evicted from T1 and T2. A hit in B1
grows the target size ``p`` of T1 by ``max(|B2| / |B1|, 1)`` (capped at c), a
hit in B2 shrinks it by ``max(|B1| / |B2|, 1)`` (floored at 0): real numbers,
as libCacheSim's current ARC (an older one divided integers). REPLACE evicts
the LRU of T1 into B1 when ``|T1| > p`` (or ``|T1| == p`` after a B2 hit, or T2
is empty), else the LRU of T2 into B2. ``|T1| + |B1| <= c`` and the whole
directory ``<= 2c``, as in the paper. Byte-sized form: ``_arc_sized``.

For a live cache, REPLACE runs only when the cache is full (after ``remove`` it
may not be); a request whose admission is refused changes nothing.

State: every directory entry (resident or ghost) owns a *slot* from a pool
with a free list, so the list nodes stay in a small dense block (see
``_slotlist``). ``where[id]`` (``int32``) is slot + 1 for a resident id,
-(slot + 1) for a ghost, 0 otherwise; per slot: its id, ``int32`` links and a
list tag (0 = T1, 1 = T2, 2 = B1, 3 = B2). 17 bytes per distinct id. The
access kernel keeps the lists' heads, tails and lengths, ``p``, the size and
the free list in local variables for the whole batch (numba reloads the scalar
array after every link store otherwise); ``remove``/``resize`` are cold and
work on the scalar array with ``_idlist``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _idlist as il
from ._arc_sized import arc_access_sized, arc_remove_sized, arc_shrink_sized
from .base import Policy

NIL = il.NIL
T1, T2, B1, B2 = 2, 4, 6, 8  # list heads in the scalar array (tails at L + 1)
N_T1, N_T2, N_B1, N_B2 = 10, 11, 12, 13  # list lengths
P, FREE, HIGH = 14, 15, 16  # int(p), free-slot list, slot high-water mark
SINK = 17  # where the look-ahead loads go, so the compiler keeps them
# Touch ``where`` of the id this many requests ahead so its cache line is on the way (a cheap
# software prefetch; 1.0-1.4x in A/B runs on a shared 2-core box, never slower).
LOOKAHEAD = 8
TAG_T1, TAG_T2, TAG_B1, TAG_B2 = 0, 1, 2, 3  # list tag per slot


@nb.njit(cache=True)
def _arc_access(ids, admit, use_admit, hits, evicted, record, where, sid, sprev, snext, stag, s, pf):
    c = s[0]
    size = s[1]
    h1, t1, h2, t2, hb1, tb1, hb2, tb2 = s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9]
    n1, n2, nb1, nb2 = s[N_T1], s[N_T2], s[N_B1], s[N_B2]
    p = pf[0]
    cf = float(c)
    free = s[FREE]
    high = s[HIGH]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    n = ids.size
    sink = 0
    for k in range(n):
        if k + LOOKAHEAD < n:
            sink += where[ids[k + LOOKAHEAD]]
        x = ids[k]
        w = where[x]
        if w > 0:
            hits[k] = True
            sl = w - 1
            if stag[sl] == TAG_T1:  # T1 -> head of T2
                pv = sprev[sl]
                nx = snext[sl]
                if pv != NIL:
                    snext[pv] = nx
                else:
                    h1 = nx
                if nx != NIL:
                    sprev[nx] = pv
                else:
                    t1 = pv
                n1 -= 1
                sprev[sl] = NIL
                snext[sl] = h2
                if h2 != NIL:
                    sprev[h2] = sl
                else:
                    t2 = sl
                h2 = sl
                n2 += 1
                stag[sl] = TAG_T2
            elif sl != h2:  # to the head of T2
                pv = sprev[sl]
                nx = snext[sl]
                snext[pv] = nx  # pv exists: sl is not the head
                if nx != NIL:
                    sprev[nx] = pv
                else:
                    t2 = pv
                sprev[sl] = NIL
                snext[sl] = h2
                sprev[h2] = sl
                h2 = sl
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        in_b2 = False
        do_replace = False
        drop_t1 = False
        sl = NIL
        if w < 0:  # ghost hit
            sl = -w - 1
            if stag[sl] == TAG_B1:  # favour recency
                p = min(p + max(nb2 / nb1, 1.0), cf)
            else:  # in B2: favour frequency
                in_b2 = True
                p = max(p - max(nb1 / nb2, 1.0), 0.0)
            do_replace = size >= c
        elif n1 + nb1 >= c:  # a complete miss, L1 full
            if n1 < c:
                if nb1 > 0:  # forget the LRU ghost of B1
                    g = tb1
                    pv = sprev[g]
                    tb1 = pv
                    if pv != NIL:
                        snext[pv] = NIL
                    else:
                        hb1 = NIL
                    nb1 -= 1
                    where[sid[g]] = 0
                    snext[g] = free
                    free = g
                do_replace = size >= c
            else:  # T1 alone fills the cache: drop its LRU outright
                drop_t1 = True
        else:
            total = n1 + n2 + nb1 + nb2
            if total >= c:
                if total >= 2 * c and nb2 > 0:  # forget the LRU ghost of B2
                    g = tb2
                    pv = sprev[g]
                    tb2 = pv
                    if pv != NIL:
                        snext[pv] = NIL
                    else:
                        hb2 = NIL
                    nb2 -= 1
                    where[sid[g]] = 0
                    snext[g] = free
                    free = g
                do_replace = size >= c
        victim = NIL
        if drop_t1:
            v = t1
            pv = sprev[v]
            t1 = pv
            if pv != NIL:
                snext[pv] = NIL
            else:
                h1 = NIL
            n1 -= 1
            victim = sid[v]
            where[victim] = 0
            snext[v] = free
            free = v
            size -= 1
        elif do_replace:  # REPLACE: the LRU of T1 or T2 becomes a ghost (keeps its slot)
            if n1 >= 1 and (n1 > p or (in_b2 and n1 == p) or n2 == 0):
                v = t1
                pv = sprev[v]
                t1 = pv
                if pv != NIL:
                    snext[pv] = NIL
                else:
                    h1 = NIL
                n1 -= 1
                sprev[v] = NIL
                snext[v] = hb1
                if hb1 != NIL:
                    sprev[hb1] = v
                else:
                    tb1 = v
                hb1 = v
                nb1 += 1
                stag[v] = TAG_B1
            else:
                v = t2
                pv = sprev[v]
                t2 = pv
                if pv != NIL:
                    snext[pv] = NIL
                else:
                    h2 = NIL
                n2 -= 1
                sprev[v] = NIL
                snext[v] = hb2
                if hb2 != NIL:
                    sprev[hb2] = v
                else:
                    tb2 = v
                hb2 = v
                nb2 += 1
                stag[v] = TAG_B2
            victim = sid[v]
            where[victim] = -(v + 1)
            size -= 1
        if sl != NIL:  # the ghost leaves B1 / B2 for the head of T2
            pv = sprev[sl]
            nx = snext[sl]
            if stag[sl] == TAG_B1:
                if pv != NIL:
                    snext[pv] = nx
                else:
                    hb1 = nx
                if nx != NIL:
                    sprev[nx] = pv
                else:
                    tb1 = pv
                nb1 -= 1
            else:
                if pv != NIL:
                    snext[pv] = nx
                else:
                    hb2 = nx
                if nx != NIL:
                    sprev[nx] = pv
                else:
                    tb2 = pv
                nb2 -= 1
            sprev[sl] = NIL
            snext[sl] = h2
            if h2 != NIL:
                sprev[h2] = sl
            else:
                t2 = sl
            h2 = sl
            n2 += 1
            stag[sl] = TAG_T2
        else:  # a new slot at the head of T1
            if free != NIL:
                sl = free
                free = snext[sl]
            else:
                sl = high
                high += 1
            sid[sl] = x
            sprev[sl] = NIL
            snext[sl] = h1
            if h1 != NIL:
                sprev[h1] = sl
            else:
                t1 = sl
            h1 = sl
            n1 += 1
            stag[sl] = TAG_T1
        where[x] = sl + 1
        size += 1
        if victim != NIL:
            if record:
                evicted[n_ev] = victim
            n_ev += 1
    s[1] = size
    s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9] = h1, t1, h2, t2, hb1, tb1, hb2, tb2
    s[N_T1], s[N_T2], s[N_B1], s[N_B2] = n1, n2, nb1, nb2
    pf[0] = p
    s[P] = int(p)
    s[FREE] = free
    s[HIGH] = high
    s[SINK] = sink
    return n_ev, n_adm, n_rej


# ------------------------------------------------- cold paths (remove, resize)
@nb.njit(cache=True, inline="always")
def _free_slot(sl, snext, s):
    snext[sl] = s[FREE]
    s[FREE] = sl


@nb.njit(cache=True, inline="always")
def _replace(where, sid, sprev, snext, stag, s, pf):
    """Move the LRU of T1 or T2 to its ghost list; return the id that left the cache."""
    n1 = s[N_T1]
    if n1 >= 1 and (n1 > pf[0] or s[N_T2] == 0):
        v = il.pop_tail(T1, sprev, snext, s)
        s[N_T1] -= 1
        il.push_head(v, B1, sprev, snext, s)
        s[N_B1] += 1
        stag[v] = TAG_B1
    else:
        v = il.pop_tail(T2, sprev, snext, s)
        s[N_T2] -= 1
        il.push_head(v, B2, sprev, snext, s)
        s[N_B2] += 1
        stag[v] = TAG_B2
    x = sid[v]
    where[x] = -(v + 1)
    s[1] -= 1
    return x


@nb.njit(cache=True, inline="always")
def _forget(L, N, where, sid, sprev, snext, s):
    g = il.pop_tail(L, sprev, snext, s)
    s[N] -= 1
    where[sid[g]] = 0
    _free_slot(g, snext, s)


@nb.njit(cache=True)
def _arc_remove(ids, where, sid, sprev, snext, stag, s, pf):
    n = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w <= 0:
            continue
        sl = w - 1
        if stag[sl] == TAG_T1:
            il.unlink(sl, T1, sprev, snext, s)
            s[N_T1] -= 1
        else:
            il.unlink(sl, T2, sprev, snext, s)
            s[N_T2] -= 1
        _free_slot(sl, snext, s)
        where[x] = 0
        s[1] -= 1
        n += 1
    return n


@nb.njit(cache=True)
def _arc_trim_ghosts(where, sid, sprev, snext, stag, s, pf):
    c = s[0]
    pf[0] = min(pf[0], float(c))
    s[P] = int(pf[0])
    while s[N_T1] + s[N_B1] > c and s[N_B1] > 0:
        _forget(B1, N_B1, where, sid, sprev, snext, s)
    while s[N_T1] + s[N_T2] + s[N_B1] + s[N_B2] > 2 * c:
        if s[N_B2] > 0:
            _forget(B2, N_B2, where, sid, sprev, snext, s)
        elif s[N_B1] > 0:
            _forget(B1, N_B1, where, sid, sprev, snext, s)
        else:
            break


@nb.njit(cache=True)
def _arc_shrink(evicted, where, sid, sprev, snext, stag, s, pf):
    n = 0
    while s[1] > s[0]:
        evicted[n] = _replace(where, sid, sprev, snext, stag, s, pf)
        n += 1
    _arc_trim_ghosts(where, sid, sprev, snext, stag, s, pf)
    return n


class ARC(Policy):
    name = "arc"
    _where_dtype = np.int32
    _id_arrays = {
        "_sid": (np.int32, NIL),
        "_sprev": (np.int32, NIL),
        "_snext": (np.int32, NIL),
        "_stag": (np.int8, 0),
    }
    # 0 c, 1 size, 2-9 list heads/tails, 10-13 lengths, 14 int(p), 15 free slots, 16 high-water, 17 sink
    _n_scalars = 18
    supports_sizes = True  # byte-sized kernels in ``_arc_sized``

    def _init_scalars(self) -> None:
        self._pf = np.zeros(1, np.float64)  # the target size p of T1 (a real number)
        self._b = np.zeros(4, np.int64)  # bytes in T1, T2, B1, B2 (by_bytes only)
        self._s[2:10] = self._s[FREE] = NIL  # empty lists, no free slot (HIGH starts at 0)

    @property
    def p(self) -> float:  # the current target size of T1 (a real number)
        return float(self._pf[0])

    def _arrays(self):
        return self._where, self._sid, self._sprev, self._snext, self._stag, self._s, self._pf

    def _on_resize(self) -> None:  # (the byte-sized shrink trims its ghosts itself)
        if not self.by_bytes:
            _arc_trim_ghosts(*self._arrays())

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _arc_access(ids, admit, use_admit, hits, evicted, record, *self._arrays())

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return arc_access_sized(
            ids,
            sizes,
            admit,
            use_admit,
            hits,
            evicted,
            record,
            *self._arrays(),
            self._b,
            self._osize,
            self._used,
        )

    def _remove(self, ids):
        if self.by_bytes:
            return arc_remove_sized(ids, *self._arrays(), self._b, self._osize, self._used)
        return _arc_remove(ids, *self._arrays())

    def _shrink(self, evicted):
        if self.by_bytes:
            return arc_shrink_sized(evicted, *self._arrays(), self._b, self._osize, self._used)
        return _arc_shrink(evicted, *self._arrays())
