"""LeCaR (Vietri et al., HotStorage '18), following libCacheSim's ``LeCaR``.

One cache, two experts: LRU (the least recently used) and LFU (the least
frequently used since insertion, the first to reach the lowest count going
first). When the two pick different objects, a draw decides, LRU with
probability ``w_lru``, and the victim goes to that expert's history (each as
big as half the cache), which remembers when; when they pick the same object
it just leaves (no draw, no history). A miss on a ghost is the evicting
expert's regret: its weight is multiplied by ``exp(-0.45 * 0.005^(t / c))``
(``t`` requests since the eviction, ``c`` the capacity) and the two weights are
renormalised (with libCacheSim's 1e-10 floors). Every miss is inserted (an
object larger than the cache is not); hits move to LRU's head and up one count.

Randomness: the draw is ``(next % 100) / 100 < w_lru`` with a splitmix64
sequence (``seed``); libCacheSim draws from a process-wide generator whose
state depends on everything drawn before, so the two agree in distribution,
not draw for draw: hit ratios agree within 0.01 on the tests' traces.

Sizes: with ``by_bytes`` the cache and the ghost history are measured in bytes.
State per id: a code (``int8``: 1 resident, -1 / -2 ghost evicted by LRU /
LFU), ``int32`` list links shared by the LRU list and the ghost list, ``int32``
links in a count bucket, the count and the eviction time; bucket heads and
tails per count. About 33 bytes per distinct id.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import _idlist as il
from .base import Policy, _grown

LRU_L, G_LRU, G_LFU = 0, 2, 4  # list heads in q (tails at L + 1): resident LRU order, the two histories
W_LRU, W_LFU = 0, 1  # in ``fst``
MIN_F, MAX_F, USED, GU_LRU, GU_LFU, VT, RNG = 0, 1, 2, 3, 4, 5, 6  # scalars in ``st``
RESIDENT, BY_LRU, BY_LFU = 1, -1, -2
LR = 0.45


@nb.njit(cache=True, inline="always")
def _rand(st):
    z = np.uint64(st[RNG]) + np.uint64(0x9E3779B97F4A7C15)
    st[RNG] = np.int64(z)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, inline="always")
def _bucket_out(x, freq, fprev, fnext, bhead, btail):
    f = freq[x]
    p, n = fprev[x], fnext[x]
    if p != -1:
        fnext[p] = n
    else:
        bhead[f] = n
    if n != -1:
        fprev[n] = p
    else:
        btail[f] = p


@nb.njit(cache=True, inline="always")
def _bucket_in(x, f, freq, fprev, fnext, bhead, btail):
    freq[x] = f
    t = btail[f]
    fprev[x] = t
    fnext[x] = -1
    if t != -1:
        fnext[t] = x
    else:
        bhead[f] = x
    btail[f] = x


@nb.njit(cache=True, inline="always")
def _regret(w, other, t, dr):
    """libCacheSim's update_weight: the expert at ``w`` evicted what was asked for again."""
    r = dr**t
    a = w * math.exp(-LR * r) + 1e-10
    s = a + other + 2e-10
    return a / s, (other + 1e-10) / s


@nb.njit(cache=True)
def _lecar_access(
    ids,
    sizes,
    sized,
    admit,
    use_admit,
    hits,
    evicted,
    record,
    where,
    prev,
    nxt,
    fprev,
    fnext,
    freq,
    evt,
    bhead,
    btail,
    q,
    st,
    fst,
    s,
    osize,
    dr,
):
    c = s[0]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        st[VT] += 1
        w = where[x]
        if w == RESIDENT:
            hits[k] = True
            if q[LRU_L] != x:
                il.unlink(x, LRU_L, prev, nxt, q)
                il.push_head(x, LRU_L, prev, nxt, q)
            f = freq[x]
            _bucket_out(x, freq, fprev, fnext, bhead, btail)
            _bucket_in(x, f + 1, freq, fprev, fnext, bhead, btail)
            if f + 1 > st[MAX_F]:
                st[MAX_F] = f + 1
            if f == st[MIN_F] and bhead[f] == -1:
                st[MIN_F] = f + 1
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        z = sizes[k] if sized else 1
        if w < 0:  # the expert that evicted it regrets it
            t = st[VT] - evt[x]
            if w == BY_LRU:
                fst[W_LRU], fst[W_LFU] = _regret(fst[W_LRU], fst[W_LFU], t, dr)
            else:
                fst[W_LFU], fst[W_LRU] = _regret(fst[W_LFU], fst[W_LRU], t, dr)
            zg = osize[x] if sized else 1
            if w == BY_LRU:
                il.unlink(x, G_LRU, prev, nxt, q)
                st[GU_LRU] -= zg
            else:
                il.unlink(x, G_LFU, prev, nxt, q)
                st[GU_LFU] -= zg
            where[x] = 0
        if z > c:
            n_rej += 1
            continue
        n_adm += 1
        while st[USED] + z > c:
            v = q[LRU_L + 1]
            u = bhead[st[MIN_F]]
            if v == u:  # both experts pick it: no draw, no history
                code = 0
            elif (_rand(st) % np.uint64(100)) / 100.0 < fst[W_LRU]:
                code = BY_LRU
            else:
                v = u
                code = BY_LFU
            evt[v] = st[VT]
            il.unlink(v, LRU_L, prev, nxt, q)
            _bucket_out(v, freq, fprev, fnext, bhead, btail)
            if bhead[freq[v]] == -1 and freq[v] == st[MIN_F]:
                for f in range(st[MIN_F] + 1, st[MAX_F] + 1):
                    if bhead[f] != -1:
                        st[MIN_F] = f
                        break
            zv = osize[v] if sized else 1
            st[USED] -= zv
            s[1] -= 1
            where[v] = code
            if code != 0:  # into that expert's history, half the cache each
                L, U = (G_LRU, GU_LRU) if code == BY_LRU else (G_LFU, GU_LFU)
                il.push_head(v, L, prev, nxt, q)
                st[U] += zv
                while st[U] > c // 2:
                    g = il.pop_tail(L, prev, nxt, q)
                    st[U] -= osize[g] if sized else 1
                    where[g] = 0
            if record:
                evicted[n_ev] = v
            n_ev += 1
        il.push_head(x, LRU_L, prev, nxt, q)
        _bucket_in(x, 1, freq, fprev, fnext, bhead, btail)
        st[MIN_F] = 1
        where[x] = RESIDENT
        if sized:
            osize[x] = z
        st[USED] += z
        s[1] += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _lecar_remove(ids, where, prev, nxt, fprev, fnext, freq, bhead, btail, q, st, s, osize, sized):
    n = 0
    for k in range(ids.size):
        x = ids[k]
        if where[x] != RESIDENT:
            continue
        il.unlink(x, LRU_L, prev, nxt, q)
        _bucket_out(x, freq, fprev, fnext, bhead, btail)
        if bhead[freq[x]] == -1 and freq[x] == st[MIN_F]:
            for f in range(st[MIN_F] + 1, st[MAX_F] + 1):
                if bhead[f] != -1:
                    st[MIN_F] = f
                    break
        where[x] = 0
        st[USED] -= osize[x] if sized else 1
        s[1] -= 1
        n += 1
    return n


def grow_buckets(policy, need: int) -> None:
    """Grow ``policy``'s per-count bucket heads and tails (``_bhead``, ``_btail``; -1 = empty) to at
    least ``need`` counts (LeCaR's and Cacheus's LFU sides)."""
    if policy._bhead.size < need:
        for attr in ("_bhead", "_btail"):
            old = getattr(policy, attr)
            setattr(policy, attr, _grown(old, max(need, old.size + old.size // 2), -1))


class LeCaR(Policy):
    name = "lecar"
    supports_sizes = True
    _id_arrays = {
        "_prev": (np.int32, il.NIL),
        "_next": (np.int32, il.NIL),
        "_fprev": (np.int32, -1),
        "_fnext": (np.int32, -1),
        "_freq": (np.int32, 0),
        "_evt": (np.int64, 0),
    }

    def __init__(self, capacity: int, n_ids: int = 0, *, seed: int = 0, **kwargs) -> None:
        self._seed = int(seed)
        super().__init__(capacity, n_ids, **kwargs)

    def _init_scalars(self) -> None:
        self._q = np.full(6, il.NIL, np.int64)
        self._st = np.zeros(7, np.int64)
        self._st[MIN_F] = self._st[MAX_F] = 1
        self._st[RNG] = self._seed
        self._fst = np.array([0.5, 0.5])  # w_lru, w_lfu
        self._bhead = np.full(2, -1, np.int32)
        self._btail = np.full(2, -1, np.int32)

    @property
    def weights(self) -> tuple[float, float]:
        """(w_lru, w_lfu)."""
        return float(self._fst[0]), float(self._fst[1])

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._q, self._st, self._fst, self._bhead, self._btail]

    def _run(self, ids, sizes, sized, admit, use_admit, hits, evicted, record):
        # a count grows by one per request of its id: at most by the batch's most requested id
        grow_buckets(self, int(self._st[MAX_F]) + int(np.bincount(ids).max()) + 2)
        dr = 0.005 ** (1.0 / self.capacity)
        return _lecar_access(
            ids,
            sizes,
            sized,
            admit,
            use_admit,
            hits,
            evicted,
            record,
            self._where,
            self._prev,
            self._next,
            self._fprev,
            self._fnext,
            self._freq,
            self._evt,
            self._bhead,
            self._btail,
            self._q,
            self._st,
            self._fst,
            self._s,
            self._osize,
            dr,
        )

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return self._run(ids, ids, False, admit, use_admit, hits, evicted, record)

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return self._run(ids, sizes, True, admit, use_admit, hits, evicted, record)

    def _remove(self, ids):
        return _lecar_remove(
            ids,
            self._where,
            self._prev,
            self._next,
            self._fprev,
            self._fnext,
            self._freq,
            self._bhead,
            self._btail,
            self._q,
            self._st,
            self._s,
            self._osize,
            self.by_bytes,
        )

    def _shrink(self, evicted):
        # evict through the kernel's own loop: an empty batch after lowering the capacity
        n_ev = 0
        while (self.used_bytes if self.by_bytes else self.size) > self.capacity and self.size > 0:
            victim = int(self._q[LRU_L + 1])  # LRU's victim (no draw: a resize is not a decision)
            self._remove(np.array([victim], np.int64))
            evicted[n_ev] = victim
            n_ev += 1
        return n_ev

    @property
    def used_bytes(self) -> int:
        return int(self._st[USED])
