"""Cacheus (Rodriguez et al., FAST '21), following libCacheSim's ``Cacheus``.

LeCaR's scheme with two better experts and a learning rate of its own. One set
of residents is kept by both experts at once:

* SR-LRU: an LRU list R of objects requested again and a list SR of the rest,
  half the cache each (R takes the odd object: with it libCacheSim's odd
  capacities match, 0.7177 / 0.7188 miss ratio at 181 objects on a Zipf trace,
  against 0.7542 without), and a history H (as big as the cache, kept strictly
  under it) of objects that left. A new object enters SR; one found in H
  enters R; a hit in SR moves to R. R's overflow is demoted into SR, and SR's
  overflow leaves the cache for H (an eviction decided inside SR-LRU: no draw,
  no ghost). Its victim is SR's least recent object (R's when SR is empty).
* CR-LFU: counts since insertion, an object coming back from H resuming its
  old count plus one; its victim is the *most recently* counted object among
  the least counted.

A miss evicts until the newcomer fits: a draw ``(next % 100) / 100 < w_lru``
picks SR-LRU's victim, else CR-LFU's (when both name the same object it just
goes, to H, without a ghost); the victim goes to H and to that expert's ghost
list (an LRU of half the cache). A miss found in a ghost multiplies that
expert's weight by ``exp(-lr)``; the weights are renormalised on every miss and
the object leaves both ghosts. ``lr`` is drawn in [0.001, 1) at the start and
revisited every ``capacity`` requests as in libCacheSim's latest source read
(the hit rate of the interval is an integer division, so it is 0 unless every
request hit; the step is ``|lr * d_lr|``; an older source took C's integer
``abs`` of it, which froze ``lr``). libCacheSim's adaptive resizing of SR reads
flags of a freshly created list entry, which are never set, so SR and R keep
their halves; the same here.

Randomness: libCacheSim's Lehmer generator (``lhd._rand``) from 0xdeadbeef by
default. Our hit ratios agree with libCacheSim's first run in a fresh process
within 0.01 on the tests' traces (``tests/sim/test_lhd_cacheus.py``; up to
0.0098 with object counts, 0.002 with sizes), not miss for miss: some
libCacheSim particular remains unidentified; a plain-Python reference of this
definition agrees hit for hit.

Sizes: with ``by_bytes`` every list is measured in bytes; an object larger than
half the cache is not inserted (SR-LRU refuses it, after the evictions
libCacheSim makes for it). State per id: list codes (``int8`` x 2), two pairs
of ``int32`` links (R/SR/H; a ghost list or a count bucket), the count and
three sizes: 46 bytes.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import _idlist as il
from .base import Policy
from .lecar import _bucket_in, _bucket_out, grow_buckets  # per-count lists: append, unlink, grow
from .lhd import DEFAULT_SEED, _rand

IN_R, IN_SR, IN_H = 1, 2, -1  # ``where`` codes (H is history, not resident)
R_L, SR_L, H_L, G1_L, G2_L = 0, 2, 4, 6, 8  # list heads in ``q`` (tails at L + 1)
# int64 scalars in ``st``
U_R, U_SR, U_H, U_G1, U_G2, RCAP, SRCAP, HCAP, GCAP, MIN_F, MAX_F, NUM_HIT, N_REQ, UNLEARN = range(14)
W_LRU, W_LFU, LR, LR_PREV, HR_PREV = range(5)  # float64 scalars in ``fw``


@nb.njit(cache=True, inline="always")
def _raise_min(st, bhead):
    for f in range(st[MIN_F] + 1, st[MAX_F] + 1):
        if bhead[f] != -1:
            st[MIN_F] = f
            return True
    return False


@nb.njit(cache=True, inline="always")
def _lfu_drop(x, evicting, A, bhead, btail, st):
    f = A[6][x]
    _bucket_out(x, A[6], A[4], A[5], bhead, btail)
    if evicting:  # CR-LFU's evict: the victim came from the lowest count
        if bhead[f] == -1 and not _raise_min(st, bhead):
            st[MIN_F] = -1
    elif st[MIN_F] > 0 and bhead[st[MIN_F]] == -1:
        _raise_min(st, bhead)


@nb.njit(cache=True, inline="always")
def _trim_h(A, q, st):
    where, aprev, anext, asz = A[0], A[2], A[3], A[7]
    while st[U_H] >= st[HCAP] and q[H_L] != il.NIL:
        y = il.pop_tail(H_L, aprev, anext, q)
        st[U_H] -= asz[y]
        where[y] = 0


@nb.njit(cache=True, inline="always")
def _demote_r(z, A, q, st, s):
    where, aprev, anext, asz = A[0], A[2], A[3], A[7]
    while st[U_R] + z > st[RCAP] and q[R_L] != il.NIL:
        y = il.pop_tail(R_L, aprev, anext, q)
        st[U_R] -= asz[y]
        il.push_head(y, SR_L, aprev, anext, q)
        st[U_SR] += asz[y]
        where[y] = IN_SR


@nb.njit(cache=True, inline="always")
def _to_history(x, A, q, st, s):
    """SR-LRU's evict / remove: ``x`` leaves R or SR for the head of H."""
    where, aprev, anext, asz = A[0], A[2], A[3], A[7]
    if where[x] == IN_R:
        il.unlink(x, R_L, aprev, anext, q)
        st[U_R] -= asz[x]
    else:
        il.unlink(x, SR_L, aprev, anext, q)
        st[U_SR] -= asz[x]
    il.push_head(x, H_L, aprev, anext, q)
    st[U_H] += asz[x]
    where[x] = IN_H
    s[1] -= 1
    _trim_h(A, q, st)


@nb.njit(cache=True, inline="always")
def _ghost_admit(x, z, which, A, q, st):
    gh, gprev, gnext, gsz = A[1], A[4], A[5], A[9]
    L, U = (G1_L, U_G1) if which == 1 else (G2_L, U_G2)
    if z > st[GCAP]:
        return
    while st[U] + z > st[GCAP]:
        y = il.pop_tail(L, gprev, gnext, q)
        st[U] -= gsz[y]
        gh[y] = 0
    il.push_head(x, L, gprev, gnext, q)
    st[U] += z
    gh[x], gsz[x] = which, z


@nb.njit(cache=True, inline="always")
def _evict(A, bhead, btail, q, st, fw, rng, s):
    """One Cacheus eviction; returns the victim."""
    lru_v = q[SR_L + 1] if st[U_SR] > 0 or q[R_L] == il.NIL else q[R_L + 1]
    if st[MIN_F] < 1 or btail[st[MIN_F]] == -1:
        st[MIN_F] = 0
        _raise_min(st, bhead)
    lfu_v = btail[st[MIN_F]]
    r = (_rand(rng) % np.uint64(100)) / 100.0
    if lru_v == lfu_v:
        _to_history(lru_v, A, q, st, s)
        _lfu_drop(lru_v, True, A, bhead, btail, st)
        return lru_v
    if r < fw[W_LRU]:
        z = A[7][lru_v]
        _to_history(lru_v, A, q, st, s)
        _lfu_drop(lru_v, False, A, bhead, btail, st)
        _ghost_admit(lru_v, z, 1, A, q, st)
        return lru_v
    z = A[8][lfu_v]
    _to_history(lfu_v, A, q, st, s)
    _lfu_drop(lfu_v, True, A, bhead, btail, st)
    _ghost_admit(lfu_v, z, 2, A, q, st)
    return lfu_v


@nb.njit(cache=True, inline="always")
def _insert(x, z, A, bhead, btail, q, st, s, evicted, n_ev, record):
    """Insert ``x`` (CR-LFU, then SR-LRU); returns (inserted, evictions written so far)."""
    where, aprev, anext, freq, asz = A[0], A[2], A[3], A[6], A[7]
    in_h = where[x] == IN_H
    if z > (st[RCAP] if in_h else st[SRCAP]):
        return False, n_ev
    f = freq[x] + 1 if in_h else 1  # an entry of H keeps the count its object left with
    A[8][x] = z
    if f == 1:
        st[MIN_F] = 1
    _bucket_in(x, f, freq, A[4], A[5], bhead, btail)
    st[MAX_F] = max(st[MAX_F], f)
    if st[MIN_F] > f or st[MIN_F] == -1:
        st[MIN_F] = f
    if in_h:
        il.unlink(x, H_L, aprev, anext, q)
        st[U_H] -= asz[x]
        _demote_r(z, A, q, st, s)
        il.push_head(x, R_L, aprev, anext, q)
        where[x], st[U_R] = IN_R, st[U_R] + z
    else:
        il.push_head(x, SR_L, aprev, anext, q)
        where[x], st[U_SR] = IN_SR, st[U_SR] + z
    asz[x] = z
    s[1] += 1
    while st[U_SR] > st[SRCAP]:  # SR's overflow leaves the cache for H
        y = q[SR_L + 1]
        il.unlink(y, SR_L, aprev, anext, q)
        st[U_SR] -= asz[y]
        il.push_head(y, H_L, aprev, anext, q)
        st[U_H] += asz[y]
        where[y] = IN_H
        s[1] -= 1
        _lfu_drop(y, False, A, bhead, btail, st)
        if record:
            evicted[n_ev] = y
        n_ev += 1
    _trim_h(A, q, st)
    return True, n_ev


@nb.njit(cache=True)
def _update_lr(cap, st, fw, rng):
    hit_rate = np.float64(st[NUM_HIT] // cap)  # libCacheSim divides integers here
    d_hit = hit_rate - fw[HR_PREV]
    d_lr = fw[LR] - fw[LR_PREV]
    fw[LR_PREV], fw[HR_PREV] = fw[LR], hit_rate
    if d_lr != 0:
        sign = 1 if d_hit / d_lr > 0 else -1
        step = abs(fw[LR] * d_lr)
        fw[LR] = fw[LR] + sign * step if fw[LR] + sign * step > 0.001 else 0.0001
        st[UNLEARN] = 0
    elif hit_rate == 0 or d_hit <= 0:
        st[UNLEARN] += 1
    elif st[UNLEARN] >= 10:
        st[UNLEARN] = 0
        fw[LR] = 0.001 + (_rand(rng) % np.uint64(1000)) / 1000.0
    st[NUM_HIT] = 0


@nb.njit(cache=True, inline="always")
def _miss_weights(x, A, q, st, fw):
    gh, gprev, gnext, gsz = A[1], A[4], A[5], A[9]
    g = gh[x]
    if g == 1:
        fw[W_LRU] *= math.exp(-fw[LR])
    elif g == 2:
        fw[W_LFU] *= math.exp(-fw[LR])
    fw[W_LRU] = fw[W_LRU] / (fw[W_LRU] + fw[W_LFU])
    fw[W_LFU] = 1 - fw[W_LRU]
    if g != 0:
        L, U = (G1_L, U_G1) if g == 1 else (G2_L, U_G2)
        il.unlink(x, L, gprev, gnext, q)
        st[U] -= gsz[x]
        gh[x] = 0


@nb.njit(cache=True)
def _cacheus_access(
    ids, sizes, sized, admit, use_admit, hits, evicted, record, A, bhead, btail, q, st, fw, rng, s
):  # fmt: skip
    where, aprev, anext, freq, asz = A[0], A[2], A[3], A[6], A[7]
    n_ev = n_adm = n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        z = sizes[k] if sized else 1
        st[N_REQ] += 1
        w = where[x]
        hits[k] = w > 0
        if w == IN_R:
            il.unlink(x, R_L, aprev, anext, q)
            il.push_head(x, R_L, aprev, anext, q)
        elif w == IN_SR:  # to R, with the request's size (libCacheSim re-inserts it)
            il.unlink(x, SR_L, aprev, anext, q)
            st[U_SR] -= asz[x]
            _demote_r(z, A, q, st, s)
            il.push_head(x, R_L, aprev, anext, q)
            where[x], asz[x], st[U_R] = IN_R, z, st[U_R] + z
        if w > 0:
            f = freq[x]
            _bucket_out(x, freq, A[4], A[5], bhead, btail)
            _bucket_in(x, f + 1, freq, A[4], A[5], bhead, btail)
            st[MAX_F] = max(st[MAX_F], f + 1)
            if st[MIN_F] == f and bhead[f] == -1:
                _raise_min(st, bhead)
            st[NUM_HIT] += 1
        else:
            _miss_weights(x, A, q, st, fw)
            if (use_admit and not admit[k]) or z > s[0]:
                n_rej += 1
            else:
                while st[U_R] + st[U_SR] + z > s[0]:
                    v = _evict(A, bhead, btail, q, st, fw, rng, s)
                    if record:
                        evicted[n_ev] = v
                    n_ev += 1
                ok, n_ev = _insert(x, z, A, bhead, btail, q, st, s, evicted, n_ev, record)
                n_adm += 1 if ok else 0
                n_rej += 0 if ok else 1
        if st[N_REQ] % s[0] == 0:
            _update_lr(s[0], st, fw, rng)
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _cacheus_remove(ids, A, bhead, btail, q, st, s):
    n = 0
    for k in range(ids.size):
        x = ids[k]
        if A[0][x] > 0:  # libCacheSim's remove: into SR-LRU's history, out of CR-LFU
            _to_history(x, A, q, st, s)
            _lfu_drop(x, False, A, bhead, btail, st)
            n += 1
    return n


@nb.njit(cache=True)
def _cacheus_shrink(evicted, A, bhead, btail, q, st, fw, rng, s):
    n = 0
    while s[1] > 0 and st[U_R] + st[U_SR] > s[0]:
        evicted[n] = _evict(A, bhead, btail, q, st, fw, rng, s)
        n += 1
    return n


class Cacheus(Policy):
    name = "cacheus"
    supports_sizes = True
    evicts_many = True
    _id_arrays = {
        "_gh": (np.int8, 0),
        "_aprev": (np.int32, il.NIL),
        "_anext": (np.int32, il.NIL),
        # a ghost entry is never resident and a count bucket holds only residents: one pair of links
        "_lprev": (np.int32, il.NIL),
        "_lnext": (np.int32, il.NIL),
        "_freq": (np.int32, 0),
        "_asz": (np.int64, 0),
        "_lsz": (np.int64, 0),
        "_gsz": (np.int64, 0),
    }

    def __init__(self, capacity: int, n_ids: int = 0, *, seed: int = DEFAULT_SEED, **kwargs) -> None:
        self._seed = int(seed) & ((1 << 128) - 1)
        super().__init__(capacity, n_ids, **kwargs)

    def _init_scalars(self) -> None:
        self._q = np.full(10, il.NIL, np.int64)
        self._st = np.zeros(14, np.int64)
        self._st[MIN_F] = self._st[MAX_F] = 1
        self._rng = np.array([self._seed >> 64, self._seed & ((1 << 64) - 1)], np.uint64)
        lr = 0.001 + float(_rand(self._rng) % np.uint64(1000)) / 1000.0
        self._fw = np.array([0.5, 0.5, lr, 0.0, 0.0])
        self._bhead = np.full(2, -1, np.int32)
        self._btail = np.full(2, -1, np.int32)
        self._on_resize()

    def _on_resize(self) -> None:
        c = self.capacity
        self._st[SRCAP] = self._st[GCAP] = c // 2
        self._st[RCAP] = c - c // 2
        self._st[HCAP] = c

    @property
    def weights(self) -> tuple[float, float]:
        """(w_lru, w_lfu)."""
        return float(self._fw[W_LRU]), float(self._fw[W_LFU])

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._q, self._st, self._fw, self._rng, self._bhead, self._btail]

    def _arrays(self):
        ids = (self._where, self._gh, self._aprev, self._anext, self._lprev, self._lnext, self._freq)
        return ids + (self._asz, self._lsz, self._gsz)

    def _run(self, ids, sizes, sized, admit, use_admit, hits, evicted, record):
        # a count grows by one per request, or comes back from H at most one above the highest
        grow_buckets(self, int(self._st[MAX_F]) + int(np.bincount(ids).max()) + 3)
        return _cacheus_access(
            ids, sizes, sized, admit, use_admit, hits, evicted, record, self._arrays(),
            self._bhead, self._btail, self._q, self._st, self._fw, self._rng, self._s,
        )  # fmt: skip

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return self._run(ids, ids, False, admit, use_admit, hits, evicted, record)

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return self._run(ids, sizes, True, admit, use_admit, hits, evicted, record)

    def _remove(self, ids):
        return _cacheus_remove(ids, self._arrays(), self._bhead, self._btail, self._q, self._st, self._s)

    def _shrink(self, evicted):
        return _cacheus_shrink(
            evicted, self._arrays(), self._bhead, self._btail, self._q, self._st, self._fw, self._rng, self._s
        )

    @property
    def used_bytes(self) -> int:
        return int(self._st[U_R] + self._st[U_SR])
