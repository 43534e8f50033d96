"""LHD (Least Hit Density; Beckmann, Chen and Cidon, NSDI '18), as libCacheSim's ``LHD``.

Each resident object has a *hit density*: the expected hits per unit of space
and time it will still earn, read from a table ``density[class][age] / size``.
``age`` is the requests since its last access, coarsened (shifted right by
``shift``, first 10); its ``class`` is ``log2``-bucketed from the sum of its
last two hit ages (16 classes). A miss evicts, until the newcomer fits, the
lowest density among 8 resident objects drawn at random (32 after 50
reconfigurations) and the last 8 newcomers that looked evictable when they came
in (density below the running average of victims' densities). An object whose
age saturates (20,000 coarse steps) goes first. The table starts as ``(17 + c)
/ (age + 1)`` and every 2^20 accesses is re-estimated from decayed (x 0.9)
counts of hits and evictions at each age: density[a] = hits at ages >= a / the
sum over later ages of events beyond them. The 6th and 26th reconfigurations
set ``shift`` so that the average resident count spans 1 % of the age range
(stretching or compressing the counts). Explorers: an access is marked, with
probability 1/32 while 1 % of the capacity is left for them and before the
50th reconfiguration, to have its density raised by 1 (hardly ever evicted).

libCacheSim's particulars kept here: quantities are 32-bit floats; a hit takes
the request's size (the bytes in use follow it); the random numbers are its
Lehmer generator (128-bit state times 0xda942042e4dd58b5, the high 64 bits),
whose per-thread state starts at 0xdeadbeef, so with the default ``seed`` our
run equals libCacheSim's first LHD run in a fresh process hit for hit
(``tests/sim/test_lhd_cacheus.py``); one policy object owns its generator.

State: per id ``where`` (slot + 1), ``osize``; per slot the id, the last access
time, the last two hit ages, the size and the explorer mark (slots 0 .. size-1
are the residents, an eviction moves the last slot into the hole, as
libCacheSim's tag vector does): 29 bytes per id, 37 with sizes. Fixed: three
16 x 20,000 ``float32`` tables (3.8 MB) and a few scalars.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .base import Policy

MAX_AGE = 20000
CLASSES = 16
APP_BASE = 16  # libCacheSim files every object under application 1: classes 16..31 of its table
RECONF = 1 << 20
N_RECENT = 8
# int64 scalars in ``s``
TS, NEXT_RECONF, N_RECONF, SHIFT, RECENT_HEAD, BUDGET = 2, 3, 4, 5, 6, 7
# float32 scalars in ``fs``
EWMA_VICTIM, EWMA_N, EWMA_MASS = 0, 1, 2
DECAY = np.float32(0.9)
ONE = np.float32(1.0)
LOWEST = np.float32(np.finfo(np.float32).min)
HIGHEST = np.float32(np.finfo(np.float32).max)
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_LEHMER = np.uint64(0xDA942042E4DD58B5)
DEFAULT_SEED = 0xDEADBEEF


@nb.njit(cache=True, inline="always", error_model="numpy")
def _rand(rng):
    """libCacheSim's ``next_rand``: the 128-bit state (hi, lo) times the Lehmer constant; the high word."""
    lo, hi = rng[1], rng[0]
    a0, a1 = lo & _MASK32, lo >> _S32
    b0, b1 = _LEHMER & _MASK32, _LEHMER >> _S32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _S32) + (p01 & _MASK32) + (p10 & _MASK32)
    carry = p11 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)
    rng[1] = lo * _LEHMER
    rng[0] = hi * _LEHMER + carry
    return rng[0]


@nb.njit(cache=True, inline="always", error_model="numpy")
def _class(age_sum):
    if age_sum == 0:
        return CLASSES - 1
    log = 0
    while age_sum < MAX_AGE and log < CLASSES - 1:
        age_sum <<= 1
        log += 1
    return log


@nb.njit(cache=True, inline="always", error_model="numpy")
def _age(slot, ts, s):
    a = (s[TS] - ts[slot]) >> s[SHIFT]
    return MAX_AGE - 1 if a >= MAX_AGE else a


@nb.njit(cache=True, inline="always", error_model="numpy")
def _density(slot, ts, lha, llha, tsz, expl, dens, s):
    a = _age(slot, ts, s)
    if a == MAX_AGE - 1:
        return LOWEST
    d = dens[_class(lha[slot] + llha[slot]), a] / tsz[slot]
    if expl[slot]:
        d = d + ONE
    return d


@nb.njit(cache=True, inline="always", error_model="numpy")  # a 0-byte object: density +inf, as C computes it
def _rank(where, ts, lha, llha, tsz, expl, dens, recent, rng, s, fs):
    """The victim's slot: the lowest density among random samples and the recent suspects."""
    victim = -1
    best = HIGHEST
    n = np.uint64(s[1])
    for _ in range(32 if s[N_RECONF] > 50 else 8):
        slot = np.int64(_rand(rng) % n)
        r = _density(slot, ts, lha, llha, tsz, expl, dens, s)
        if r < best:
            victim, best = slot, r
    for i in range(N_RECENT):
        x = recent[i]
        if x >= 0 and where[x] > 0:
            slot = np.int64(where[x] - 1)
            r = _density(slot, ts, lha, llha, tsz, expl, dens, s)
            if r < best:
                victim, best = slot, r
    fs[EWMA_VICTIM] = DECAY * fs[EWMA_VICTIM] + (ONE - DECAY) * best
    return victim


@nb.njit(cache=True, inline="always", error_model="numpy")
def _drop(slot, where, sid, ts, lha, llha, tsz, expl, s):
    """Take ``slot`` out (the last slot fills the hole); return its id."""
    x = sid[slot]
    where[x] = 0
    last = s[1] - 1
    s[1] = last
    if slot != last:
        y = sid[last]
        sid[slot], ts[slot], lha[slot], llha[slot] = y, ts[last], lha[last], llha[last]
        tsz[slot], expl[slot] = tsz[last], expl[last]
        where[y] = slot + 1
    return x


@nb.njit(cache=True, inline="always", error_model="numpy")
def _evict(slot, where, sid, ts, lha, llha, tsz, expl, hits_t, evs_t, s):
    a = _age(slot, ts, s)
    evs_t[_class(lha[slot] + llha[slot]), a] += ONE
    if expl[slot]:
        s[BUDGET] = np.int64(np.float32(s[BUDGET]) + tsz[slot])
    return _drop(slot, where, sid, ts, lha, llha, tsz, expl, s)


@nb.njit(cache=True, error_model="numpy")
def _coarsen(hits_t, evs_t, s, fs, n_resident):
    fs[EWMA_N] = fs[EWMA_N] * DECAY
    fs[EWMA_MASS] = fs[EWMA_MASS] * DECAY
    fs[EWMA_N] = fs[EWMA_N] + np.float32(n_resident)
    fs[EWMA_MASS] = fs[EWMA_MASS] + ONE
    if s[N_RECONF] != 5 and s[N_RECONF] != 25:
        return
    optimal = np.float64(fs[EWMA_N] / fs[EWMA_MASS]) / np.float64(np.float32(0.01) * np.float32(MAX_AGE))
    log2 = 1
    while (1 << log2) < optimal:
        log2 += 1
    delta = log2 - s[SHIFT]
    s[SHIFT] = log2
    fs[EWMA_N] = fs[EWMA_N] * np.float32(8)
    fs[EWMA_MASS] = fs[EWMA_MASS] * np.float32(8)
    for t in (hits_t, evs_t):
        for c in range(CLASSES):
            if delta < 0:
                d = -delta
                for a in range(MAX_AGE >> d, MAX_AGE - 1):
                    t[c, MAX_AGE - 1] += t[c, a]
                for a in range(MAX_AGE - 2, -1, -1):
                    t[c, a] = t[c, a >> d] / np.float32(1 << d)
            elif delta > 0:
                for a in range(MAX_AGE >> delta):
                    acc = t[c, a << delta]
                    for i in range(1, 1 << delta):
                        acc += t[c, (a << delta) + i]
                    t[c, a] = acc
                for a in range(MAX_AGE >> delta, MAX_AGE - 1):
                    t[c, a] = 0


@nb.njit(cache=True, error_model="numpy")
def _reconfigure(hits_t, evs_t, dens, s, fs, n_resident):
    for c in range(CLASSES):
        for a in range(MAX_AGE):
            hits_t[c, a] *= DECAY
            evs_t[c, a] *= DECAY
    _coarsen(hits_t, evs_t, s, fs, n_resident)
    for c in range(CLASSES):
        events = hits_t[c, MAX_AGE - 1] + evs_t[c, MAX_AGE - 1]
        total_hits = hits_t[c, MAX_AGE - 1]
        life = events
        for a in range(MAX_AGE - 2, -1, -1):
            total_hits += hits_t[c, a]
            events += hits_t[c, a] + evs_t[c, a]
            life += events
            dens[c, a] = total_hits / life if events > 1e-5 else np.float32(0)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _touch(x, slot, z, insert, where, ts, lha, llha, tsz, expl, hits_t, dens, recent, rng, s, fs):
    """libCacheSim's ``LHD::update``: a hit or an insertion of ``x`` in ``slot``."""
    if not insert:
        a = _age(slot, ts, s)
        hits_t[_class(lha[slot] + llha[slot]), a] += ONE
        if expl[slot]:
            s[BUDGET] = np.int64(np.float32(s[BUDGET]) + tsz[slot])
        llha[slot] = lha[slot]
        lha[slot] = a
    ts[slot] = s[TS]
    tsz[slot] = np.float32(z)
    explore = _rand(rng) % np.uint64(32) == 0
    expl[slot] = explore and s[BUDGET] > 0 and s[N_RECONF] < 50
    if expl[slot]:
        s[BUDGET] = np.int64(np.float32(s[BUDGET]) - tsz[slot])
    if insert and not explore:
        if _density(slot, ts, lha, llha, tsz, expl, dens, s) < fs[EWMA_VICTIM]:
            recent[s[RECENT_HEAD] % N_RECENT] = x
            s[RECENT_HEAD] += 1
    s[TS] += 1
    s[NEXT_RECONF] -= 1
    return s[NEXT_RECONF] == 0


@nb.njit(cache=True, error_model="numpy")
def _lhd_access(
    ids, sizes, sized, admit, use_admit, hits, evicted, record,
    where, sid, ts, lha, llha, tsz, expl, osize, hits_t, evs_t, dens, recent, rng, s, fs, used,
):  # fmt: skip
    cap = s[0]
    n_ev = n_adm = n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        z = sizes[k] if sized else 1
        w = where[x]
        if w > 0:
            hits[k] = True
            slot = w - 1
            insert = False
            if sized:  # libCacheSim's LHD takes the request's size on a hit
                used[0] += z - osize[x]
                osize[x] = z
        else:
            hits[k] = False
            if (use_admit and not admit[k]) or z > cap:
                n_rej += 1
                continue
            n_adm += 1
            while used[0] + z > cap:
                v = _rank(where, ts, lha, llha, tsz, expl, dens, recent, rng, s, fs)
                v_id = _evict(v, where, sid, ts, lha, llha, tsz, expl, hits_t, evs_t, s)
                used[0] -= osize[v_id] if sized else 1
                if record:
                    evicted[n_ev] = v_id
                n_ev += 1
            slot = s[1]
            s[1] = slot + 1
            where[x] = slot + 1
            sid[slot], lha[slot], llha[slot] = x, 0, MAX_AGE
            insert = True
            if sized:
                osize[x] = z
            used[0] += z
        if _touch(x, slot, z, insert, where, ts, lha, llha, tsz, expl, hits_t, dens, recent, rng, s, fs):
            _reconfigure(hits_t, evs_t, dens, s, fs, s[1])
            s[NEXT_RECONF] = RECONF
            s[N_RECONF] += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True, error_model="numpy")
def _lhd_remove(ids, where, sid, ts, lha, llha, tsz, expl, osize, s, used, sized):
    n = 0
    for k in range(ids.size):
        w = where[ids[k]]
        if w > 0:
            if expl[w - 1]:
                s[BUDGET] = np.int64(np.float32(s[BUDGET]) + tsz[w - 1])
            x = _drop(w - 1, where, sid, ts, lha, llha, tsz, expl, s)
            used[0] -= osize[x] if sized else 1
            n += 1
    return n


@nb.njit(cache=True, error_model="numpy")
def _lhd_shrink(
    evicted, where, sid, ts, lha, llha, tsz, expl, osize, hits_t, evs_t, dens, recent, rng, s, fs, used, sized
):
    n = 0
    while s[1] > 0 and used[0] > s[0]:
        v = _rank(where, ts, lha, llha, tsz, expl, dens, recent, rng, s, fs)
        x = _evict(v, where, sid, ts, lha, llha, tsz, expl, hits_t, evs_t, s)
        used[0] -= osize[x] if sized else 1
        evicted[n] = x
        n += 1
    return n


class LHD(Policy):
    name = "lhd"
    supports_sizes = True
    _where_dtype = np.int32
    _id_arrays = {
        "_sid": (np.int32, -1),
        "_ts": (np.int64, 0),
        "_lha": (np.int32, 0),  # hit ages are coarse ages: below 20,000
        "_llha": (np.int32, 0),
        "_tsz": (np.float32, 0),
        "_expl": (np.bool_, False),
    }
    _n_scalars = 8

    def __init__(self, capacity: int, n_ids: int = 0, *, seed: int = DEFAULT_SEED, **kwargs) -> None:
        self._seed = int(seed) & ((1 << 128) - 1)
        super().__init__(capacity, n_ids, **kwargs)

    def _init_scalars(self) -> None:
        s = self._s
        s[NEXT_RECONF], s[SHIFT] = RECONF, 10
        s[BUDGET] = int(np.float32(s[0]) * np.float32(0.01))
        self._fs = np.zeros(3, np.float32)
        self._rng = np.array([self._seed >> 64, self._seed & ((1 << 64) - 1)], np.uint64)
        self._recent = np.full(N_RECENT, -1, np.int64)
        self._hits_t = np.zeros((CLASSES, MAX_AGE), np.float32)
        self._evs_t = np.zeros((CLASSES, MAX_AGE), np.float32)
        age = np.arange(1, MAX_AGE + 1, dtype=np.float64)
        self._dens = ((APP_BASE + 1 + np.arange(CLASSES))[:, None] / age[None, :]).astype(np.float32)

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._fs, self._rng, self._recent, self._hits_t, self._evs_t, self._dens]

    def _slots(self):
        return self._where, self._sid, self._ts, self._lha, self._llha, self._tsz, self._expl

    def _run(self, ids, sizes, sized, admit, use_admit, hits, evicted, record):
        return _lhd_access(
            ids, sizes, sized, admit, use_admit, hits, evicted, record, *self._slots(), self._osize,
            self._hits_t, self._evs_t, self._dens, self._recent, self._rng, self._s, self._fs, self._used,
        )  # fmt: skip

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return self._run(ids, ids, False, admit, use_admit, hits, evicted, record)

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return self._run(ids, sizes, True, admit, use_admit, hits, evicted, record)

    def _remove(self, ids):
        return _lhd_remove(ids, *self._slots(), self._osize, self._s, self._used, self.by_bytes)

    def _shrink(self, evicted):
        return _lhd_shrink(
            evicted, *self._slots(), self._osize, self._hits_t, self._evs_t, self._dens, self._recent,
            self._rng, self._s, self._fs, self._used, self.by_bytes,
        )  # fmt: skip

    @property
    def used_bytes(self) -> int:
        return int(self._used[0])
