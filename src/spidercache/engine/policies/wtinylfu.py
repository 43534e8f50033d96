"""W-TinyLFU (Einziger et al., ToS '17), following libCacheSim's ``WTinyLFU``.

A window LRU (1 % of the capacity) takes every newcomer; the main cache (the
rest) is an SLRU with a probation segment (1/5) and a protected one (4/5). A
counting Bloom filter (10 hashes, 14.4 counters per main-cache entry: sized for
a 0.001 error, as libCacheSim) estimates how often ids were seen; it counts
insertions, hits in the main cache and window victims, and halves every
counter after ``32 x`` main-cache-size main hits.

* hit in the window: to its head. Hit in probation: to protected's head (the
  protected tail cools back to probation's head while protected is over its
  size; probation's tail is evicted while it is over its size). Hit in
  protected: to its head.
* miss (an object larger than the window or probation is not inserted): while
  the cache would be over its capacity, evict once: the window's LRU moves to the
  main cache when that has room; else it competes with the main cache's victim
  (probation's tail, protected's when probation is empty) and the one seen less
  often (the window's on a tie) is evicted. Then the newcomer enters the window.
* the SLRU inserts into the lowest segment with room (probation, else protected).

Sizes: with ``by_bytes`` everything is measured in bytes; with object counts
every object is 1. The filter hashes each key with XXH64 under libCacheSim's
two seeds, as libCacheSim does, so its collisions are libCacheSim's too: given
``keys`` (the key each dense id stands for; the simulator passes them) the
policy equals libCacheSim's miss for miss. Without them it hashes the dense ids
(other collisions, the same definition).

State: per id a queue code (``int8``) and ``int32`` links (``_idlist``); the
filter's counters, about 14.4 x 2 bytes per main-cache entry: ``uint16``, which
saturate at 65,535 where libCacheSim's ``uint32`` would count on (so a decision
can differ only between two ids both counted that often since the last
halving; it keeps the state under 64 bytes per key when the cache holds every
key).
"""

from __future__ import annotations

import math
import warnings

import numba as nb
import numpy as np

from . import _idlist as il
from .base import Policy

WIN, P0, P1 = 0, 2, 4  # list heads in q (tails at L + 1)
B_WIN, B_P0, B_P1, N_MAIN_HITS = 6, 7, 8, 9
C_WIN, C_P0, C_P1 = 1, 2, 3  # where[id]
HASHES = 10
WINDOW, PROBATION = 0.01, 0.2


def filter_counters(entries: int) -> int:
    """Counters of libCacheSim's filter for ``entries`` at a 0.001 error (at most 2^31 - 1)."""
    bpe = -math.log(0.001) / 0.480453013918201
    return max(min(int(math.ceil(bpe * max(entries, 1))), 2**31 - 1), 2 * HASHES)


XP1, XP2 = np.uint64(0x9E3779B185EBCA87), np.uint64(0xC2B2AE3D27D4EB4F)  # xxHash's primes
XP3, XP4, XP5 = (
    np.uint64(0x165667B19E3779F9),
    np.uint64(0x85EBCA77C2B2AE63),
    np.uint64(0x27D4EB2F165667C5),
)
SEED_A, SEED_B = 0x12345678, 0x12344321  # libCacheSim's HASH_SEED0 / HASH_SEED1


@nb.njit(cache=True, inline="always")
def _rotl(v, r):
    return (v << np.uint64(r)) | (v >> np.uint64(64 - r))


@nb.njit(cache=True, inline="always")
def xxh64_u64(key, seed):
    """XXH64 of the 8 little-endian bytes of ``key`` (the xxHash specification, one lane)."""
    acc = np.uint64(seed) + XP5 + np.uint64(8)
    acc ^= _rotl(np.uint64(key) * XP2, 31) * XP1
    acc = _rotl(acc, 27) * XP1 + XP4
    acc ^= acc >> np.uint64(33)
    acc *= XP2
    acc ^= acc >> np.uint64(29)
    acc *= XP3
    return acc ^ (acc >> np.uint64(32))


@nb.njit(cache=True, inline="always")
def _count(key, cbf, add):
    """The filter's estimate for ``key`` (the minimum of its counters); ``add`` then counts it."""
    a = np.int64(xxh64_u64(key, SEED_A) & np.uint64(0xFFFFFFFF))
    b = np.int64(xxh64_u64(key, SEED_B) & np.uint64(0xFFFFFFFF))
    n = cbf.size
    lo = np.uint16(0xFFFF)
    for i in range(HASHES):
        j = ((a + i * b) & 0xFFFFFFFF) % n
        if cbf[j] < lo:
            lo = cbf[j]
    if add:
        for i in range(HASHES):
            j = ((a + i * b) & 0xFFFFFFFF) % n
            if cbf[j] < np.uint16(0xFFFF):  # 16-bit counters saturate (libCacheSim's are 32-bit)
                cbf[j] += np.uint16(1)
    return lo


@nb.njit(cache=True, inline="always")
def _key(x, hkeys):
    return hkeys[x] if x < hkeys.size else x


@nb.njit(cache=True, inline="always")
def _sz(y, osize, sized):
    return osize[y] if sized else 1


@nb.njit(cache=True, inline="always")
def _move(y, frm, to, code, bfrom, bto, z, where, prev, nxt, q):
    il.unlink(y, frm, prev, nxt, q)
    q[bfrom] -= z
    il.push_head(y, to, prev, nxt, q)
    q[bto] += z
    where[y] = code


@nb.njit(cache=True, inline="always")
def _main_victim(q):
    return q[P0 + 1] if q[B_P0] > 0 else q[P1 + 1]


@nb.njit(cache=True, inline="always")
def _drop(y, where, prev, nxt, q, s, osize, sized):
    w = where[y]
    L = WIN if w == C_WIN else (P0 if w == C_P0 else P1)
    il.unlink(y, L, prev, nxt, q)
    q[B_WIN + L // 2] -= _sz(y, osize, sized)
    where[y] = 0
    s[1] -= 1


@nb.njit(cache=True, inline="always")
def _main_insert(y, z, dims, where, prev, nxt, q, s, osize, sized, evicted, n_ev, record):
    """The SLRU's insert: the lowest segment with room; with none, evict until the main cache
    has room, then probation. Returns the new eviction count."""
    if q[B_P0] + z <= dims[2]:
        L, B, code = P0, B_P0, C_P0
    elif q[B_P1] + z <= dims[3]:
        L, B, code = P1, B_P1, C_P1
    else:
        L, B, code = P0, B_P0, C_P0
        while q[B_P0] + q[B_P1] + z > dims[1]:
            v = _main_victim(q)
            _drop(v, where, prev, nxt, q, s, osize, sized)
            if record:
                evicted[n_ev] = v
            n_ev += 1
    il.push_head(y, L, prev, nxt, q)
    q[B] += z
    where[y] = code
    return n_ev


@nb.njit(cache=True)
def _wtlfu_access(
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
    q,
    s,
    osize,
    used,
    cbf,
    dims,
    hkeys,
):
    c, win, main, max0, max1, decay_at = (
        s[0],
        dims[0],
        dims[1],
        dims[2],
        dims[3],
        dims[4],
    )
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        w = where[x]
        if w > 0:
            hits[k] = True
            if w == C_WIN:
                il.unlink(x, WIN, prev, nxt, q)
                il.push_head(x, WIN, prev, nxt, q)
                continue
            z = _sz(x, osize, sized)
            if w == C_P1:
                il.unlink(x, P1, prev, nxt, q)
                il.push_head(x, P1, prev, nxt, q)
            else:
                _move(x, P0, P1, C_P1, B_P0, B_P1, z, where, prev, nxt, q)
                while q[B_P1] > max1:
                    y = q[P1 + 1]
                    _move(
                        y,
                        P1,
                        P0,
                        C_P0,
                        B_P1,
                        B_P0,
                        _sz(y, osize, sized),
                        where,
                        prev,
                        nxt,
                        q,
                    )
                    while q[B_P0] > max0:
                        v = q[P0 + 1] if q[B_P0] > 0 else q[P1 + 1]
                        _drop(v, where, prev, nxt, q, s, osize, sized)
                        if record:
                            evicted[n_ev] = v
                        n_ev += 1
            _count(_key(x, hkeys), cbf, True)
            q[N_MAIN_HITS] += 1
            if q[N_MAIN_HITS] >= decay_at:
                q[N_MAIN_HITS] = 0
                for j in range(cbf.size):
                    cbf[j] >>= np.uint16(1)
            continue
        hits[k] = False
        z = sizes[k] if sized else 1
        if (use_admit and not admit[k]) or z > c or z > win or z > max0:
            n_rej += 1
            continue
        n_adm += 1
        while q[B_WIN] + q[B_P0] + q[B_P1] + z > c:
            done = False
            while not done:
                if q[B_WIN] <= 0:
                    v = _main_victim(q)
                    _drop(v, where, prev, nxt, q, s, osize, sized)
                    if record:
                        evicted[n_ev] = v
                    n_ev += 1
                    break
                y = q[WIN + 1]
                zy = _sz(y, osize, sized)
                if q[B_P0] + q[B_P1] + zy <= main:
                    il.unlink(y, WIN, prev, nxt, q)
                    q[B_WIN] -= zy
                    n_ev = _main_insert(
                        y, zy, dims, where, prev, nxt, q, s, osize, sized, evicted, n_ev, record
                    )
                else:
                    m = _main_victim(q)
                    if _count(_key(y, hkeys), cbf, False) > _count(_key(m, hkeys), cbf, False):
                        v = m
                        _drop(m, where, prev, nxt, q, s, osize, sized)
                        il.unlink(y, WIN, prev, nxt, q)
                        q[B_WIN] -= zy
                        n_ev = _main_insert(
                            y, zy, dims, where, prev, nxt, q, s, osize, sized, evicted, n_ev, record
                        )
                    else:
                        v = y
                        _drop(y, where, prev, nxt, q, s, osize, sized)
                    if record:
                        evicted[n_ev] = v
                    n_ev += 1
                    done = True
                _count(_key(y, hkeys), cbf, True)
        il.push_head(x, WIN, prev, nxt, q)
        q[B_WIN] += z
        where[x] = C_WIN
        if sized:
            osize[x] = z
        s[1] += 1
        _count(_key(x, hkeys), cbf, True)
    used[0] = q[B_WIN] + q[B_P0] + q[B_P1]
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _wtlfu_remove(ids, where, prev, nxt, q, s, osize, used, sized):
    n = 0
    for k in range(ids.size):
        if where[ids[k]] > 0:
            _drop(ids[k], where, prev, nxt, q, s, osize, sized)
            n += 1
    used[0] = q[B_WIN] + q[B_P0] + q[B_P1]
    return n


@nb.njit(cache=True)
def _wtlfu_shrink(evicted, where, prev, nxt, q, s, osize, used, sized):
    n = 0
    while q[B_WIN] + q[B_P0] + q[B_P1] > s[0] and s[1] > 0:
        v = q[WIN + 1] if q[B_WIN] > 0 else _main_victim(q)
        _drop(v, where, prev, nxt, q, s, osize, sized)
        evicted[n] = v
        n += 1
    used[0] = q[B_WIN] + q[B_P0] + q[B_P1]
    return n


class WTinyLFU(Policy):
    name = "wtinylfu"
    supports_sizes = True
    _id_arrays = {"_prev": (np.int32, il.NIL), "_next": (np.int32, il.NIL)}

    def __init__(self, capacity: int, n_ids: int = 0, *, keys: np.ndarray | None = None, **kwargs) -> None:
        # the key each dense id stands for, hashed by the filter as libCacheSim hashes it (else the id)
        self._hkeys = np.zeros(0, np.int64) if keys is None else np.ascontiguousarray(keys).view(np.int64)
        self._n_hint = int(n_ids)
        super().__init__(capacity, n_ids, **kwargs)
        if self._dims[0] == 0 and not self.by_bytes:
            # kept as libCacheSim has it, so that its figures stay equal miss for miss
            warnings.warn(
                f"wtinylfu at capacity {self.capacity}: its window (1 % of it) is 0 objects, so it "
                "admits nothing (as libCacheSim's); use 100 or more",
                RuntimeWarning,
                stacklevel=3,
            )

    def _init_scalars(self) -> None:
        self._q = np.zeros(10, np.int64)
        self._q[:6] = il.NIL
        self._set_dims()

    def _set_dims(self) -> None:
        c = self.capacity
        win = int(c * WINDOW)
        main = c - win
        self._dims = np.array([win, main, int(PROBATION * main), int(4 / 5 * main), 32 * main], np.int64)
        # libCacheSim sizes the filter by the main cache's size in its unit; in bytes that is 14.4
        # counters per byte (up to 2^31 of them, 4 GiB here). A byte-sized cache never holds more
        # objects than there are keys (or, with none given, than 4 KiB objects fit): size it by that.
        entries = main if not self.by_bytes else min(main, self._n_hint or max(main // 4096, 1))
        self._cbf = np.zeros(filter_counters(entries), np.uint16)

    def _on_resize(self) -> None:
        self._set_dims()  # a new filter for the new main cache (libCacheSim sizes it once, at init)

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._q, self._dims, self._cbf]

    def _arrays(self):
        return (
            self._where,
            self._prev,
            self._next,
            self._q,
            self._s,
            self._osize,
            self._used,
        )

    def _run(self, ids, sizes, sized, admit, use_admit, hits, evicted, record):
        return _wtlfu_access(
            ids,
            sizes,
            sized,
            admit,
            use_admit,
            hits,
            evicted,
            record,
            *self._arrays(),
            self._cbf,
            self._dims,
            self._hkeys,
        )

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return self._run(ids, ids, False, admit, use_admit, hits, evicted, record)

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return self._run(ids, sizes, True, admit, use_admit, hits, evicted, record)

    def _remove(self, ids):
        return _wtlfu_remove(ids, *self._arrays(), self.by_bytes)

    def _shrink(self, evicted):
        return _wtlfu_shrink(evicted, *self._arrays(), self.by_bytes)
