"""Byte-sized ARC: libCacheSim's current ARC with object sizes (cold next to ``arc``'s kernel).

The four lists are measured in bytes (``b[0..3]`` = T1, T2, B1, B2); a ghost
keeps the size its object had. A miss first settles a ghost hit (``p`` moves by
``max(|B2| / |B1|, 1)`` or ``max(|B1| / |B2|, 1)`` in bytes, the ghost is
forgotten), then, if the object fits the cache at all, evicts until it fits:

* after a ghost hit: REPLACE;
* otherwise, when ``|T1| + |B1| + size > c``: forget the LRU of B1 and REPLACE
  if B1 holds anything, else drop the LRU of T1 outright (no ghost);
  else forget the LRU of B2 when the directory holds ``2c`` bytes or more, and
  REPLACE.

REPLACE moves the LRU of T1 to B1 when ``|T1| > 0`` and (``|T1| > p`` or
``|T1| == p`` after a B2 hit), or when T2 is empty; else the LRU of T2 to B2.
The newcomer goes to the head of T2 after a ghost hit, of T1 otherwise. Same
slot pool and list layout as ``arc`` (``_idlist`` over the scalar array).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _idlist as il

NIL = il.NIL
T1, T2, B1, B2 = 2, 4, 6, 8
N_T1, N_T2, N_B1, N_B2 = 10, 11, 12, 13
P, FREE, HIGH = 14, 15, 16
TAG_T1, TAG_T2, TAG_B1, TAG_B2 = 0, 1, 2, 3
# list offset and length index per tag
_LIST = (T1, T2, B1, B2)
_LEN = (N_T1, N_T2, N_B1, N_B2)


@nb.njit(cache=True, inline="always")
def _delta(num, den):
    """max(num / den, 1) as libCacheSim computes it in C, 0-byte ghosts included (x / 0 = inf, 0 / 0 -> 1)."""
    if den > 0:
        return max(num / den, 1.0)
    return np.inf if num > 0 else 1.0


@nb.njit(cache=True, inline="always")
def _take(sl, tag, sprev, snext, s, b, osize, sid):
    il.unlink(sl, _LIST[tag], sprev, snext, s)
    s[_LEN[tag]] -= 1
    b[tag] -= osize[sid[sl]]


@nb.njit(cache=True, inline="always")
def _put(sl, tag, sprev, snext, stag, s, b, osize, sid):
    il.push_head(sl, _LIST[tag], sprev, snext, s)
    s[_LEN[tag]] += 1
    b[tag] += osize[sid[sl]]
    stag[sl] = tag


@nb.njit(cache=True, inline="always")
def _forget(tag, where, sid, sprev, snext, s, b, osize):
    g = s[_LIST[tag] + 1]
    _take(g, tag, sprev, snext, s, b, osize, sid)
    where[sid[g]] = 0
    snext[g] = s[FREE]
    s[FREE] = g


@nb.njit(cache=True, inline="always")
def _replace(in_b2, where, sid, sprev, snext, stag, s, b, osize, used, pf):
    """The LRU of T1 or T2 becomes a ghost; returns its id."""
    t1 = b[TAG_T1]
    if (t1 > 0 and (t1 > pf[0] or (in_b2 and t1 == pf[0]))) or b[TAG_T2] == 0:
        v = s[T1 + 1]
        _take(v, TAG_T1, sprev, snext, s, b, osize, sid)
        _put(v, TAG_B1, sprev, snext, stag, s, b, osize, sid)
    else:
        v = s[T2 + 1]
        _take(v, TAG_T2, sprev, snext, s, b, osize, sid)
        _put(v, TAG_B2, sprev, snext, stag, s, b, osize, sid)
    x = sid[v]
    where[x] = -(v + 1)
    used[0] -= osize[x]
    s[1] -= 1
    return x


@nb.njit(cache=True, inline="always")
def _evict_one(z, ghost_hit, in_b2, where, sid, sprev, snext, stag, s, b, osize, used, pf):
    c = s[0]
    if ghost_hit:
        return _replace(in_b2, where, sid, sprev, snext, stag, s, b, osize, used, pf)
    if b[TAG_T1] + b[TAG_B1] + z > c:
        if b[TAG_B1] > 0:
            _forget(TAG_B1, where, sid, sprev, snext, s, b, osize)
            return _replace(False, where, sid, sprev, snext, stag, s, b, osize, used, pf)
        v = s[T1 + 1]  # T1 alone is too large: its LRU leaves without a ghost
        _take(v, TAG_T1, sprev, snext, s, b, osize, sid)
        x = sid[v]
        where[x] = 0
        used[0] -= osize[x]
        snext[v] = s[FREE]
        s[FREE] = v
        s[1] -= 1
        return x
    if b[TAG_T1] + b[TAG_B1] + b[TAG_T2] + b[TAG_B2] >= 2 * c and b[TAG_B2] > 0:
        _forget(TAG_B2, where, sid, sprev, snext, s, b, osize)
    return _replace(False, where, sid, sprev, snext, stag, s, b, osize, used, pf)


@nb.njit(cache=True)
def arc_access_sized(
    ids,
    sizes,
    admit,
    use_admit,
    hits,
    evicted,
    record,
    where,
    sid,
    sprev,
    snext,
    stag,
    s,
    pf,
    b,
    osize,
    used,
):
    c = s[0]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        z = sizes[k]
        w = where[x]
        if w > 0:
            hits[k] = True
            sl = w - 1
            tag = stag[sl]
            _take(sl, tag, sprev, snext, s, b, osize, sid)
            _put(sl, TAG_T2, sprev, snext, stag, s, b, osize, sid)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        ghost_hit = w < 0
        in_b2 = False
        if ghost_hit:
            sl = -w - 1
            if stag[sl] == TAG_B1:
                pf[0] = min(pf[0] + _delta(b[TAG_B2], b[TAG_B1]), float(c))
            else:
                in_b2 = True
                pf[0] = max(pf[0] - _delta(b[TAG_B1], b[TAG_B2]), 0.0)
            _take(sl, stag[sl], sprev, snext, s, b, osize, sid)
            where[x] = 0
            snext[sl] = s[FREE]
            s[FREE] = sl
        if z > c:
            n_rej += 1
            continue
        n_adm += 1
        while used[0] + z > c:
            v = _evict_one(
                z,
                ghost_hit,
                in_b2,
                where,
                sid,
                sprev,
                snext,
                stag,
                s,
                b,
                osize,
                used,
                pf,
            )
            if record:
                evicted[n_ev] = v
            n_ev += 1
        if s[FREE] != NIL:
            sl = s[FREE]
            s[FREE] = snext[sl]
        else:
            sl = s[HIGH]
            s[HIGH] = sl + 1
        sid[sl] = x
        osize[x] = z
        _put(sl, TAG_T2 if ghost_hit else TAG_T1, sprev, snext, stag, s, b, osize, sid)
        where[x] = sl + 1
        used[0] += z
        s[1] += 1
    s[P] = int(pf[0])
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def arc_remove_sized(ids, where, sid, sprev, snext, stag, s, pf, b, osize, used):
    n = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w <= 0:
            continue
        sl = w - 1
        _take(sl, stag[sl], sprev, snext, s, b, osize, sid)
        snext[sl] = s[FREE]
        s[FREE] = sl
        where[x] = 0
        used[0] -= osize[x]
        s[1] -= 1
        n += 1
    return n


@nb.njit(cache=True)
def arc_shrink_sized(evicted, where, sid, sprev, snext, stag, s, pf, b, osize, used):
    n = 0
    pf[0] = min(pf[0], float(s[0]))
    while used[0] > s[0] and s[1] > 0:
        evicted[n] = _replace(False, where, sid, sprev, snext, stag, s, b, osize, used, pf)
        n += 1
    while b[TAG_T1] + b[TAG_B1] > s[0] and b[TAG_B1] > 0:
        _forget(TAG_B1, where, sid, sprev, snext, s, b, osize)
    while b[TAG_T1] + b[TAG_T2] + b[TAG_B1] + b[TAG_B2] > 2 * s[0] and b[TAG_B2] > 0:
        _forget(TAG_B2, where, sid, sprev, snext, s, b, osize)
    s[P] = int(pf[0])
    return n
