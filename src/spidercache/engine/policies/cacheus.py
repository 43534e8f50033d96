"""Cacheus (Rodriguez et al., FAST '21), as libCacheSim (PyPI 0.3.5) runs it, miss for miss.

LeCaR's scheme with two better experts and a learning rate of its own. One set
of residents is kept by both experts at once:

* SR-LRU: an LRU list R of objects requested again, a list SR of the rest
  (``capacity // 2`` each at the start) and a history H (kept strictly under
  the capacity) of objects that left. A new object enters SR flagged *new*;
  one found in H enters R; a hit in SR moves it, at its size, to R. R's
  overflow is demoted into SR (``C_dem`` += 1); SR's overflow leaves for H (no
  draw, no ghost). An SR entry leaving for H keeps *new* (``C_new`` += 1) and
  drops *demoted* (``C_dem`` -= 1). An object found in H with *new* grows SR by
  ``max(1, C_dem // C_new + 0.5)``, at most to the bytes held minus one (R =
  capacity - SR). SR never shrinks: that rule reads a flag of R's fresh entry,
  never set. The victim is SR's least recent object (R's when SR is empty).
* CR-LFU: counts since insertion (an object back from H resumes its count plus
  one); the victim is the *most recently* counted of the least counted.

A miss evicts until the newcomer fits: a draw ``(next % 100) / 100 < w_lru``
picks SR-LRU's victim, else CR-LFU's (one object named by both just goes to H);
the victim goes to H and to that expert's ghost (an LRU of half the cache). A
miss found in a ghost multiplies that expert's weight by ``exp(-lr)``; weights
are renormalised on every miss. ``lr`` is drawn in [0.001, 1) and revisited
every ``capacity`` requests (the hit rate is an integer division; step
``|lr * d_lr|``). Randomness: libCacheSim's Lehmer generator (``lhd._rand``)
from 0xdeadbeef, as in libCacheSim's first run in a fresh process.

The growth of SR, the halves and the size an SR hit keeps are what libCacheSim's
runs show request by request (``tests/sim/test_lhd_cacheus.py``), not all of
what one source version reads. Sizes: with ``by_bytes`` every list is in bytes;
an object larger than SR (R when from H) is not inserted, after the evictions
made for it; a hit keeps the inserted size. State per id: codes and flags
(``int8`` x 3), two pairs of ``int32`` links, the count and three sizes: 47 B.
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
U_R, U_SR, U_H, U_G1, U_G2, RCAP, SRCAP, HCAP, GCAP, MIN_F, MAX_F, NUM_HIT, N_REQ, UNLEARN, C_NEW, C_DEM = (
    range(16)
)
NEW, DEMOTED = 1, 2  # flag bits of an SR entry (NEW also of an H entry)
UNBOUNDED = 1 << 62  # SR's size after libCacheSim's unsigned ``occupied - 1`` wraps (nothing held)
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
        il.push_head(y, SR_L, aprev, anext, q)
        st[U_R], st[U_SR], st[C_DEM] = st[U_R] - asz[y], st[U_SR] + asz[y], st[C_DEM] + 1
        where[y], A[10][y] = IN_SR, DEMOTED


@nb.njit(cache=True, inline="always")
def _leave_sr(y, A, st):  # an SR entry goes to H: H's entry keeps NEW; both counts follow
    fl = A[10][y]
    st[C_NEW], st[C_DEM], A[10][y] = st[C_NEW] + (fl & NEW), st[C_DEM] - (fl & DEMOTED) // DEMOTED, fl & NEW


@nb.njit(cache=True, inline="always")
def _grow_sr(st):  # an object that entered SR new is back from H (see the module's text)
    d = st[C_DEM] // st[C_NEW]
    delta = 1.0 if d + 0.5 < 1.0 else d + 0.5
    occ = st[U_R] + st[U_SR]
    if st[SRCAP] + delta > occ - 1:
        st[SRCAP] = occ - 1 if occ >= 1 else UNBOUNDED
    else:
        st[SRCAP] = int(st[SRCAP] + delta)
    st[RCAP] = st[HCAP] - st[SRCAP] if st[SRCAP] < UNBOUNDED else st[HCAP] + 1


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
        _leave_sr(x, A, st)
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
    g = 0 if lru_v == lfu_v else (1 if r < fw[W_LRU] else 2)  # same victim: to H, no ghost
    v = lfu_v if g == 2 else lru_v
    z = A[8][v] if g == 2 else A[7][v]
    _to_history(v, A, q, st, s)
    _lfu_drop(v, g != 1, A, bhead, btail, st)
    if g:
        _ghost_admit(v, z, g, A, q, st)
    return v


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
    new = A[10][x] & NEW if in_h else NEW
    if in_h:
        il.unlink(x, H_L, aprev, anext, q)
        st[U_H] -= asz[x]
        _demote_r(z, A, q, st, s)
        il.push_head(x, R_L, aprev, anext, q)
        where[x], st[U_R], A[10][x] = IN_R, st[U_R] + z, 0
    else:
        il.push_head(x, SR_L, aprev, anext, q)
        where[x], st[U_SR], A[10][x] = IN_SR, st[U_SR] + z, NEW
    asz[x] = z
    s[1] += 1
    if in_h and new:
        _grow_sr(st)
    while st[U_SR] > st[SRCAP]:  # SR's overflow leaves the cache for H
        y = q[SR_L + 1]
        il.unlink(y, SR_L, aprev, anext, q)
        st[U_SR] -= asz[y]
        _leave_sr(y, A, st)
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
        elif w == IN_SR:  # to R at its size, then R's overflow (possibly x itself) to SR
            il.unlink(x, SR_L, aprev, anext, q)
            il.push_head(x, R_L, aprev, anext, q)
            where[x], st[U_SR], st[U_R], A[10][x] = IN_R, st[U_SR] - asz[x], st[U_R] + asz[x], 0
            _demote_r(0, A, q, st, s)
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
        "_flag": (np.int8, 0),
    }

    def __init__(self, capacity: int, n_ids: int = 0, *, seed: int = DEFAULT_SEED, **kwargs) -> None:
        self._seed = int(seed) & ((1 << 128) - 1)
        super().__init__(capacity, n_ids, **kwargs)

    def _init_scalars(self) -> None:
        self._q = np.full(10, il.NIL, np.int64)
        self._st = np.zeros(16, np.int64)
        self._st[MIN_F] = self._st[MAX_F] = 1
        self._rng = np.array([self._seed >> 64, self._seed & ((1 << 64) - 1)], np.uint64)
        lr = 0.001 + float(_rand(self._rng) % np.uint64(1000)) / 1000.0
        self._fw = np.array([0.5, 0.5, lr, 0.0, 0.0])
        self._bhead = np.full(2, -1, np.int32)
        self._btail = np.full(2, -1, np.int32)
        self._on_resize()

    def _on_resize(self) -> None:
        c = self.capacity
        self._st[SRCAP] = self._st[GCAP] = self._st[RCAP] = c // 2
        if not self.by_bytes:  # bytes: libCacheSim's halves, pinned by tests/sim (zero-byte objects fit)
            # a cache of 1 object would have SR and R of 0 and never insert: they get 1 (same from 2 up)
            self._st[SRCAP] = self._st[RCAP] = max(c // 2, 1)
        self._st[HCAP] = c

    @property
    def weights(self) -> tuple[float, float]:
        """(w_lru, w_lfu)."""
        return float(self._fw[W_LRU]), float(self._fw[W_LFU])

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._q, self._st, self._fw, self._rng, self._bhead, self._btail]

    def _arrays(self):
        ids = (self._where, self._gh, self._aprev, self._anext, self._lprev, self._lnext, self._freq)
        return ids + (self._asz, self._lsz, self._gsz, self._flag)

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
