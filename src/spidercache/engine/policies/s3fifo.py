"""S3-FIFO (Yang et al., SOSP '23), following libCacheSim's ``S3FIFO``.

Three FIFO queues: a small queue S (10% of the capacity), a main queue M (the
rest) and a ghost queue G of ids only (no values), 90% of the capacity -- the
size of M, as libCacheSim does. Each resident id has a 2-bit hit counter.

* hit: counter += 1 (saturating at 3); nothing moves.
* miss: an id found in G leaves G and is inserted into M; any other id goes to
  S (until the first eviction, an id that finds S full goes to M instead, as in
  libCacheSim, so the cache fills up). Counters start at 0.
* eviction (one per admitted miss once full): from M if M is over its size or S
  is empty, else from S.
  - S: the oldest id moves to M (counter reset to 0) if it was hit at least
    twice; otherwise it is evicted and its id pushed into G (G drops its oldest
    id when full). Repeat until one id has been evicted.
  - M: the oldest id with counter > 0 is re-inserted at the head with counter
    ``min(counter, 3) - 1`` (a 2-bit CLOCK); the first with counter 0 is evicted.

Differences from libCacheSim, only for tiny caches: S holds at least one id
(libCacheSim admits nothing to S when 10% of the capacity is under 2 objects).
A request whose admission is refused changes nothing (its ghost entry stays).

State. The queues are ring buffers of ids (FIFOs never unlink in the middle):
``where[id]`` (``int8``) says where an id is and carries its counter -- 1..4 =
in S with counter 0..3, 5..8 = in M with counter 0..3, -1 = in G, 0 = absent --
so a hit is one load and one store of one byte. ``pos[id]`` (``int32``) is the
ring index of the id's live entry. An id leaving a queue out of order (a ghost
hit, ``remove``) leaves a stale entry behind: it is recognised when it reaches
the ring's tail (``where`` names another queue, or ``pos`` another index -- the
id's "generation") and skipped. A ring that fills up with stale entries is
compacted in place (amortised O(1): rings have room for 1.5x / 2x their live
maximum). 5 bytes per distinct id plus about 20 bytes per cache entry for the
rings (S and M: 1.5 c + 2 ids each, G: 2 |G| + 2).

The access kernel keeps sizes and ring tails/fill levels in local variables for
the whole batch; the same kernel, in ``shrink`` mode, evicts down to a smaller
capacity, so the eviction code exists once.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _s3fifo_sized as sz
from ._s3fifo_sized import GHOST, M0, S0
from .base import Policy

# scalars
N_S, N_M, N_G = 2, 3, 4  # live entries
CAP_S, CAP_M, CAP_G = 5, 6, 7
HAS_EVICTED = 8
S_TAIL, S_USED, M_TAIL, M_USED, G_TAIL, G_USED = 9, 10, 11, 12, 13, 14
SMALL_RATIO = 0.10
GHOST_RATIO = 0.90
# ``where`` codes S0, M0, GHOST: shared with the byte-sized kernels (``_s3fifo_sized``)


@nb.njit(cache=True)
def _compact(ring, tail, used, where, pos, lo, hi):
    """Drop stale entries (``where`` not in ``lo..hi`` or ``pos`` elsewhere); return the new fill."""
    r = ring.size
    kept = 0
    j = tail
    for _ in range(used):
        y = ring[j]
        w = where[y]
        if lo <= w <= hi and pos[y] == j:
            d = tail + kept
            if d >= r:
                d -= r
            ring[d] = y
            pos[y] = d
            kept += 1
        j += 1
        if j == r:
            j = 0
    return kept


@nb.njit(cache=True)
def _s3fifo_run(ids, admit, use_admit, hits, evicted, record, shrink, where, pos, rs, rm, rg, s):
    cap, size = s[0], s[1]
    n_s, n_m, n_g = s[N_S], s[N_M], s[N_G]
    cap_s, cap_m, cap_g = s[CAP_S], s[CAP_M], s[CAP_G]
    has_evicted = s[HAS_EVICTED]
    s_tail, s_used, m_tail, m_used = s[S_TAIL], s[S_USED], s[M_TAIL], s[M_USED]
    g_tail, g_used = s[G_TAIL], s[G_USED]
    rs_n, rm_n, rg_n = rs.size, rm.size, rg.size
    n_ev = 0
    n_adm = 0
    n_rej = 0
    n_steps = ids.size
    if shrink:
        n_steps = max(size - cap, 0)
    x = 0
    v = 0
    d = 0
    ghost_hit = False
    for k in range(n_steps):
        if not shrink:
            x = ids[k]
            w = where[x]
            if w > 0:
                hits[k] = True
                if w & 3:  # counter below 3 (codes 4 and 8 are saturated)
                    where[x] = w + 1
                continue
            hits[k] = False
            if use_admit and not admit[k]:
                n_rej += 1
                continue
            n_adm += 1
            ghost_hit = w == GHOST
            if ghost_hit:  # leaves G; its ring entry turns stale
                where[x] = 0
                n_g -= 1
        if shrink or size >= cap:
            if not shrink:
                has_evicted = 1
            while True:
                if n_m > cap_m or n_s == 0:
                    # oldest live entry of M
                    while True:
                        j = m_tail
                        y = rm[j]
                        m_tail += 1
                        if m_tail == rm_n:
                            m_tail = 0
                        m_used -= 1
                        w = where[y]
                        if w >= M0 and pos[y] == j:
                            break
                    if w > M0:  # counter > 0: back to the head, one lower
                        if m_used == rm_n:
                            m_used = _compact(rm, m_tail, m_used, where, pos, M0, M0 + 3)
                        d = m_tail + m_used
                        if d >= rm_n:
                            d -= rm_n
                        rm[d] = y
                        pos[y] = d
                        m_used += 1
                        where[y] = w - 1
                        continue
                    n_m -= 1
                    where[y] = 0
                    size -= 1
                    v = y
                    break
                # oldest live entry of S
                while True:
                    j = s_tail
                    y = rs[j]
                    s_tail += 1
                    if s_tail == rs_n:
                        s_tail = 0
                    s_used -= 1
                    w = where[y]
                    if S0 <= w < M0 and pos[y] == j:
                        break
                n_s -= 1
                if w >= S0 + 2:  # hit at least twice: promoted to M with counter 0
                    if m_used == rm_n:
                        m_used = _compact(rm, m_tail, m_used, where, pos, M0, M0 + 3)
                    d = m_tail + m_used
                    if d >= rm_n:
                        d -= rm_n
                    rm[d] = y
                    pos[y] = d
                    m_used += 1
                    n_m += 1
                    where[y] = M0
                    continue
                size -= 1
                v = y
                if cap_g > 0:
                    if n_g >= cap_g:  # forget the oldest live ghost
                        while True:
                            j = g_tail
                            g = rg[j]
                            g_tail += 1
                            if g_tail == rg_n:
                                g_tail = 0
                            g_used -= 1
                            if where[g] == GHOST and pos[g] == j:
                                break
                        where[g] = 0
                        n_g -= 1
                    if g_used == rg_n:
                        g_used = _compact(rg, g_tail, g_used, where, pos, GHOST, GHOST)
                    d = g_tail + g_used
                    if d >= rg_n:
                        d -= rg_n
                    rg[d] = y
                    pos[y] = d
                    g_used += 1
                    n_g += 1
                    where[y] = GHOST
                else:
                    where[y] = 0
                break
            if record:
                evicted[n_ev] = v
            n_ev += 1
            if shrink:
                continue
        if ghost_hit or (has_evicted == 0 and n_s >= cap_s):
            if m_used == rm_n:
                m_used = _compact(rm, m_tail, m_used, where, pos, M0, M0 + 3)
            d = m_tail + m_used
            if d >= rm_n:
                d -= rm_n
            rm[d] = x
            m_used += 1
            n_m += 1
            where[x] = M0
        else:
            if s_used == rs_n:
                s_used = _compact(rs, s_tail, s_used, where, pos, S0, S0 + 3)
            d = s_tail + s_used
            if d >= rs_n:
                d -= rs_n
            rs[d] = x
            s_used += 1
            n_s += 1
            where[x] = S0
        pos[x] = d
        size += 1
    if shrink:  # the ghost queue may be over its (new) size
        while n_g > cap_g:
            j = g_tail
            g = rg[j]
            g_tail += 1
            if g_tail == rg_n:
                g_tail = 0
            g_used -= 1
            if where[g] == GHOST and pos[g] == j:
                where[g] = 0
                n_g -= 1
    s[1] = size
    s[N_S], s[N_M], s[N_G] = n_s, n_m, n_g
    s[HAS_EVICTED] = has_evicted
    s[S_TAIL], s[S_USED], s[M_TAIL], s[M_USED] = s_tail, s_used, m_tail, m_used
    s[G_TAIL], s[G_USED] = g_tail, g_used
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _s3fifo_remove(ids, where, s):
    # the ring entries turn stale (``where`` no longer names their queue)
    n = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w <= 0:
            continue
        if w < M0:
            s[N_S] -= 1
        else:
            s[N_M] -= 1
        where[x] = 0
        s[1] -= 1
        n += 1
    return n


@nb.njit(cache=True)
def _rebuild(old, tail, used, new, where, pos, lo, hi):
    """Copy the live entries of ring ``old`` (oldest first) to the start of ``new``."""
    r = old.size
    kept = 0
    j = tail
    for _ in range(used):
        y = old[j]
        w = where[y]
        if lo <= w <= hi and pos[y] == j:
            new[kept] = y
            kept += 1
        j += 1
        if j == r:
            j = 0
    for q in range(kept):
        pos[new[q]] = q
    return kept


def _ring_sizes(capacity: int, ghost_cap: int) -> tuple[int, int]:
    # S and M each hold at most ``capacity`` live ids; G at most ``ghost_cap``. The slack
    # (half / all of that, plus 2) bounds the compaction work per push; the small constant
    # makes the tiny caches of the property tests compact often, so that path is tested.
    return capacity + capacity // 2 + 2, 2 * ghost_cap + 2


class S3FIFO(Policy):
    name = "s3fifo"
    _id_arrays = {"_pos": (np.int32, 0)}
    _pos: np.ndarray
    _n_scalars = 15
    supports_sizes = True  # byte-sized kernels in ``_s3fifo_sized``

    def _init_scalars(self) -> None:
        # byte-sized form: per-id list links (grown with the ids) and the queues' heads, tails, bytes
        self._lprev = np.zeros(0, np.int32)
        self._lnext = np.zeros(0, np.int32)
        self._q = np.zeros(sz.N_Q, np.int64)
        self._q[: sz.BS] = -1
        self._set_queue_sizes()
        # the object-count rings (sized by the capacity, so none for a byte capacity)
        rq, rg = (0, 0) if self.by_bytes else _ring_sizes(self.capacity, int(self._s[CAP_G]))
        self._rs = np.zeros(rq, np.int32)
        self._rm = np.zeros(rq, np.int32)
        self._rg = np.zeros(rg, np.int32)

    def _set_queue_sizes(self) -> None:
        c = int(self._s[0])
        small = max(1, int(c * SMALL_RATIO))
        self._s[CAP_S] = small
        self._s[CAP_M] = c - small
        self._s[CAP_G] = int(c * GHOST_RATIO)

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._rs, self._rm, self._rg, self._lprev, self._lnext, self._q]

    def reserve(self, n_ids: int) -> None:
        super().reserve(n_ids)
        if self.by_bytes and self._lprev.size < self._n_ids:
            for attr in ("_lprev", "_lnext"):
                old = getattr(self, attr)
                new = np.full(self._n_ids, -1, np.int32)
                new[: old.size] = old
                setattr(self, attr, new)

    def _sized(self):
        return self._where, self._lprev, self._lnext, self._q, self._s, self._osize, self._used

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return sz.s3fifo_access_sized(ids, sizes, admit, use_admit, hits, evicted, record, *self._sized())

    def _on_resize(self) -> None:
        self._set_queue_sizes()
        if self.by_bytes:  # the byte-sized kernels derive the queue sizes from the capacity
            if self.used_bytes <= self.capacity:
                sz.s3fifo_shrink_sized(np.zeros(0, np.int64), *self._sized())
            return
        rq, rg = _ring_sizes(self.capacity, int(self._s[CAP_G]))
        if rq > self._rs.size or rg > self._rg.size:  # grow the rings (live entries only, in order)
            s = self._s
            for attr, tail, used, lo, hi, size in (
                ("_rs", S_TAIL, S_USED, S0, S0 + 3, rq),
                ("_rm", M_TAIL, M_USED, M0, M0 + 3, rq),
                ("_rg", G_TAIL, G_USED, GHOST, GHOST, rg),
            ):
                old = getattr(self, attr)
                new = np.zeros(max(size, old.size), np.int32)
                s[used] = _rebuild(old, s[tail], s[used], new, self._where, self._pos, lo, hi)
                s[tail] = 0
                setattr(self, attr, new)
        if self.size <= self.capacity:  # else _shrink trims the ghosts after evicting
            self._evict_down(np.zeros(0, np.int64))

    def _rings(self):
        return self._where, self._pos, self._rs, self._rm, self._rg, self._s

    def _evict_down(self, evicted: np.ndarray) -> int:
        """Evict until size <= capacity, then trim G to its size (the kernel's shrink mode)."""
        none = np.zeros(0, np.int64)
        ok, no_hits = np.ones(1, np.bool_), np.zeros(0, np.bool_)
        n_ev, _, _ = _s3fifo_run(none, ok, False, no_hits, evicted, True, True, *self._rings())
        return int(n_ev)

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _s3fifo_run(ids, admit, use_admit, hits, evicted, record, False, *self._rings())

    def _remove(self, ids):
        if self.by_bytes:
            return sz.s3fifo_remove_sized(ids, *self._sized())
        return _s3fifo_remove(ids, self._where, self._s)

    def _shrink(self, evicted):
        if self.by_bytes:
            return sz.s3fifo_shrink_sized(evicted, *self._sized())
        return self._evict_down(evicted)
