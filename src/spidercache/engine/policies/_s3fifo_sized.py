"""Byte-sized S3-FIFO: libCacheSim's ``S3FIFO`` with object sizes (cold next to ``s3fifo``).

The queues are measured in bytes: S gets ``int(0.1 c)``, M the rest, the ghost
queue G ``int(0.9 c)``. A request is a hit in S or M (its counter goes up,
saturating at 3). A miss first leaves G if it was there; an object larger than
S (or than the cache) is not inserted. Otherwise, while S + M + size exceeds
the cache, one eviction runs: from M when M is over its share or S is empty
(a 2-bit CLOCK: an object with counter f > 0 goes back to M's head with
``min(f, 3) - 1``, the first with 0 leaves), else from S (an object hit at
least twice moves to M with counter 0, the first other one leaves for G, which
drops its oldest entries until the newcomer fits). The newcomer then goes to M
after a ghost hit; an object as large as S is not inserted otherwise; it goes
to M while nothing was ever evicted and S is full, else to S.

The queues are doubly linked lists threaded through two per-id ``int32``
arrays (``_idlist``), their heads, tails and byte counts in ``q``; ``where``
keeps S0..S0+3 / M0..M0+3 (queue and counter) and GHOST, as in ``s3fifo``.
"""

from __future__ import annotations

import numba as nb

from . import _idlist as il

S0, M0, GHOST = 1, 5, -1
# q: list heads/tails (S at 0, M at 2, G at 4), bytes per queue, whether anything was evicted
QS, QM, QG = 0, 2, 4
BS, BM, BG, EVICTED = 6, 7, 8, 9
N_Q = 10
MOVE_TO_MAIN = 2  # hits in S that earn a move to M


@nb.njit(cache=True, inline="always")
def _ghost_put(y, z, cg, where, prev, nxt, q, osize):
    if z > cg:
        where[y] = 0
        return
    while q[BG] + z > cg:
        g = il.pop_tail(QG, prev, nxt, q)
        q[BG] -= osize[g]
        where[g] = 0
    il.push_head(y, QG, prev, nxt, q)
    q[BG] += z
    where[y] = GHOST


@nb.njit(cache=True, inline="always")
def _evict(cs, cm, cg, where, prev, nxt, q, osize, s):
    """One eviction (S3FIFO_evict); returns the id that left the cache, or -1 when S
    emptied into M without evicting anything (the caller's loop then evicts from M)."""
    q[EVICTED] = 1
    if q[BM] > cm or q[BS] == 0:
        while True:
            y = il.pop_tail(QM, prev, nxt, q)
            f = where[y] - M0
            if f >= 1:
                il.push_head(y, QM, prev, nxt, q)
                where[y] = M0 + min(f, 3) - 1
                continue
            q[BM] -= osize[y]
            where[y] = 0
            s[1] -= 1
            return y
    while q[BS] > 0:
        y = il.pop_tail(QS, prev, nxt, q)
        z = osize[y]
        q[BS] -= z
        if where[y] - S0 >= MOVE_TO_MAIN:
            il.push_head(y, QM, prev, nxt, q)
            q[BM] += z
            where[y] = M0
            continue
        _ghost_put(y, z, cg, where, prev, nxt, q, osize)
        s[1] -= 1
        return y
    return -1


@nb.njit(cache=True)
def s3fifo_access_sized(
    ids,
    sizes,
    admit,
    use_admit,
    hits,
    evicted,
    record,
    where,
    prev,
    nxt,
    q,
    s,
    osize,
    used,
):
    c = s[0]
    cs = c // 10 if c < (1 << 53) else int(c * 0.1)
    cm = c - cs
    cg = int(c * 0.9)
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        z = sizes[k]
        w = where[x]
        if w > 0:
            hits[k] = True
            if w != S0 + 3 and w != M0 + 3:
                where[x] = w + 1
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        ghost_hit = w == GHOST
        if ghost_hit:
            il.unlink(x, QG, prev, nxt, q)
            q[BG] -= osize[x]
            where[x] = 0
        if z > cs or z > c:
            n_rej += 1
            continue
        while q[BS] + q[BM] + z > c:
            v = _evict(cs, cm, cg, where, prev, nxt, q, osize, s)
            if v >= 0:
                if record:
                    evicted[n_ev] = v
                n_ev += 1
        if ghost_hit:
            il.push_head(x, QM, prev, nxt, q)
            q[BM] += z
            where[x] = M0
        elif z >= cs:
            n_rej += 1  # as large as S: libCacheSim does not insert it
            continue
        elif q[EVICTED] == 0 and q[BS] >= cs:
            il.push_head(x, QM, prev, nxt, q)
            q[BM] += z
            where[x] = M0
        else:
            il.push_head(x, QS, prev, nxt, q)
            q[BS] += z
            where[x] = S0
        osize[x] = z
        s[1] += 1
        n_adm += 1
    used[0] = q[BS] + q[BM]
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def s3fifo_remove_sized(ids, where, prev, nxt, q, s, osize, used):
    n = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w <= 0:
            continue
        if w < M0:
            il.unlink(x, QS, prev, nxt, q)
            q[BS] -= osize[x]
        else:
            il.unlink(x, QM, prev, nxt, q)
            q[BM] -= osize[x]
        where[x] = 0
        s[1] -= 1
        n += 1
    used[0] = q[BS] + q[BM]
    return n


@nb.njit(cache=True)
def s3fifo_shrink_sized(evicted, where, prev, nxt, q, s, osize, used):
    c = s[0]
    cs = c // 10 if c < (1 << 53) else int(c * 0.1)
    cg = int(c * 0.9)
    n = 0
    while q[BS] + q[BM] > c and s[1] > 0:
        v = _evict(cs, c - cs, cg, where, prev, nxt, q, osize, s)
        if v >= 0:
            evicted[n] = v
            n += 1
    while q[BG] > cg:
        g = il.pop_tail(QG, prev, nxt, q)
        q[BG] -= osize[g]
        where[g] = 0
    used[0] = q[BS] + q[BM]
    return n
