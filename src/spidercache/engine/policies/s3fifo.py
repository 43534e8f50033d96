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
``where`` codes: 1 = S, 2 = M, -1 = G.

State: ``where`` and ``freq`` (int8) and ``int32`` prev/next per id: 10 bytes per
distinct id.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _idlist as il
from .base import Policy

NIL = il.NIL
SMALL, MAIN, GHOST = 2, 4, 6  # list offsets (head at L, tail at L + 1)
N_S, N_M, N_G = 8, 9, 10  # lengths
CAP_S, CAP_M, CAP_G = 11, 12, 13
HAS_EVICTED = 14
SMALL_RATIO = 0.10
GHOST_RATIO = 0.90


@nb.njit(cache=True, inline="always")
def _evict_one(where, freq, prev, nxt, s):
    """Evict exactly one resident id (moving others between queues) and return it."""
    while True:
        if s[N_M] > s[CAP_M] or s[N_S] == 0:
            y = il.pop_tail(MAIN, prev, nxt, s)
            f = freq[y]
            if f >= 1:
                il.push_head(y, MAIN, prev, nxt, s)
                freq[y] = min(f, 3) - 1
                continue
            s[N_M] -= 1
            where[y] = 0
            s[1] -= 1
            return y
        y = il.pop_tail(SMALL, prev, nxt, s)
        s[N_S] -= 1
        if freq[y] >= 2:
            il.push_head(y, MAIN, prev, nxt, s)
            s[N_M] += 1
            freq[y] = 0
            where[y] = 2
            continue
        s[1] -= 1
        if s[CAP_G] > 0:
            if s[N_G] >= s[CAP_G]:
                g = il.pop_tail(GHOST, prev, nxt, s)
                s[N_G] -= 1
                where[g] = 0
            il.push_head(y, GHOST, prev, nxt, s)
            s[N_G] += 1
            where[y] = -1
        else:
            where[y] = 0
        return y


@nb.njit(cache=True)
def _s3fifo_access(ids, admit, use_admit, hits, evicted, record, where, freq, prev, nxt, s):
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w > 0:
            hits[k] = True
            if freq[x] < 3:
                freq[x] += 1
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        ghost_hit = w == -1
        if ghost_hit:
            il.unlink(x, GHOST, prev, nxt, s)
            s[N_G] -= 1
            where[x] = 0
        if s[1] >= s[0]:
            s[HAS_EVICTED] = 1
            v = _evict_one(where, freq, prev, nxt, s)
            if record:
                evicted[n_ev] = v
            n_ev += 1
        freq[x] = 0
        if ghost_hit or (s[HAS_EVICTED] == 0 and s[N_S] >= s[CAP_S]):
            il.push_head(x, MAIN, prev, nxt, s)
            s[N_M] += 1
            where[x] = 2
        else:
            il.push_head(x, SMALL, prev, nxt, s)
            s[N_S] += 1
            where[x] = 1
        s[1] += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _s3fifo_remove(ids, where, freq, prev, nxt, s):
    n = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w == 1:
            il.unlink(x, SMALL, prev, nxt, s)
            s[N_S] -= 1
        elif w == 2:
            il.unlink(x, MAIN, prev, nxt, s)
            s[N_M] -= 1
        else:
            continue
        where[x] = 0
        s[1] -= 1
        n += 1
    return n


@nb.njit(cache=True)
def _s3fifo_trim_ghost(where, prev, nxt, s):
    while s[N_G] > s[CAP_G]:
        g = il.pop_tail(GHOST, prev, nxt, s)
        s[N_G] -= 1
        where[g] = 0


@nb.njit(cache=True)
def _s3fifo_shrink(evicted, where, freq, prev, nxt, s):
    n = 0
    while s[1] > s[0]:
        evicted[n] = _evict_one(where, freq, prev, nxt, s)
        n += 1
    _s3fifo_trim_ghost(where, prev, nxt, s)
    return n


class S3FIFO(Policy):
    name = "s3fifo"
    _id_arrays = {"_freq": (np.int8, 0), "_prev": (np.int32, NIL), "_next": (np.int32, NIL)}
    _n_scalars = 15

    def _init_scalars(self) -> None:
        self._s[2:8] = NIL
        self._set_queue_sizes()

    def _set_queue_sizes(self) -> None:
        c = int(self._s[0])
        small = max(1, int(c * SMALL_RATIO))
        self._s[CAP_S] = small
        self._s[CAP_M] = c - small
        self._s[CAP_G] = int(c * GHOST_RATIO)

    def _on_resize(self) -> None:
        self._set_queue_sizes()
        _s3fifo_trim_ghost(self._where, self._prev, self._next, self._s)

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _s3fifo_access(ids, admit, use_admit, hits, evicted, record,
                              self._where, self._freq, self._prev, self._next, self._s)

    def _remove(self, ids):
        return _s3fifo_remove(ids, self._where, self._freq, self._prev, self._next, self._s)

    def _shrink(self, evicted):
        return _s3fifo_shrink(evicted, self._where, self._freq, self._prev, self._next, self._s)
