"""GDSF (Greedy-Dual-Size-Frequency; Cherkasova '98), as libCacheSim's ``GDSF``.

Each resident object has a priority ``L + freq * 1e6 / size``: ``freq`` counts
its requests since it was inserted (1 at insertion), ``size`` its bytes (1 with
object counts), ``L`` the priority of the last object evicted (0 at first), so
objects that wait age against newcomers. A hit bumps ``freq`` and recomputes
the priority with the current ``L``; the victim is the lowest priority, ties
broken by the oldest insertion or hit (libCacheSim orders by (priority, request
number)). A miss is inserted first, then the lowest are evicted until the cache
fits, so a newcomer of low priority may leave at once (libCacheSim's order).
Size-aware: with ``by_bytes`` capacities are bytes; an object larger than the
cache is not inserted.

State: an indexed 4-ary min-heap over dense slots keyed by (priority, request
number): ``where[id]`` = heap position + 1, ``_hpri`` (``float64``), ``_hvt``
(``int64``), ``_hid`` (``int32``) per slot and ``_freq`` (``int32``) per id.
28 bytes per distinct id.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .base import Policy

NIL = -1
VT = 2  # scalar: request number of the next request


@nb.njit(cache=True, inline="always")
def _less(pa, va, pb, vb):
    return pa < pb or (pa == pb and va < vb)


@nb.njit(cache=True, inline="always")
def _place(pos, pri, vt, i, where, hpri, hvt, hid):
    hpri[pos] = pri
    hvt[pos] = vt
    hid[pos] = i
    where[i] = pos + 1


@nb.njit(cache=True, inline="always")
def _sift_up(pos, where, hpri, hvt, hid):
    pri, vt, i = hpri[pos], hvt[pos], hid[pos]
    while pos > 0:
        parent = (pos - 1) >> 2
        if not _less(pri, vt, hpri[parent], hvt[parent]):
            break
        _place(pos, hpri[parent], hvt[parent], hid[parent], where, hpri, hvt, hid)
        pos = parent
    _place(pos, pri, vt, i, where, hpri, hvt, hid)


@nb.njit(cache=True, inline="always")
def _sift_down(pos, size, where, hpri, hvt, hid):
    pri, vt, i = hpri[pos], hvt[pos], hid[pos]
    while True:
        first = 4 * pos + 1
        if first >= size:
            break
        child = first
        for c in range(first + 1, min(first + 4, size)):
            if _less(hpri[c], hvt[c], hpri[child], hvt[child]):
                child = c
        if not _less(hpri[child], hvt[child], pri, vt):
            break
        _place(pos, hpri[child], hvt[child], hid[child], where, hpri, hvt, hid)
        pos = child
    _place(pos, pri, vt, i, where, hpri, hvt, hid)


@nb.njit(cache=True)
def _drop_pos(pos, where, hpri, hvt, hid, s):
    """Take the entry at heap position ``pos`` out; return its id."""
    x = hid[pos]
    where[x] = 0
    last = s[1] - 1
    s[1] = last
    if pos != last:
        moved = hid[last]
        _place(pos, hpri[last], hvt[last], moved, where, hpri, hvt, hid)
        _sift_up(pos, where, hpri, hvt, hid)
        if where[moved] - 1 == pos:
            _sift_down(pos, last, where, hpri, hvt, hid)
    return x


@nb.njit(cache=True, error_model="numpy")  # a 0-byte object: priority +inf, as C computes it
def _gdsf_access(
    ids,
    sizes,
    sized,
    admit,
    use_admit,
    hits,
    evicted,
    record,
    where,
    hpri,
    hvt,
    hid,
    freq,
    s,
    osize,
    used,
    lpri,
):
    cap = s[0]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        x = ids[k]
        vt = s[VT]
        s[VT] = vt + 1
        w = where[x]
        if w > 0:
            hits[k] = True
            pos = w - 1
            freq[x] += 1
            z = osize[x] if sized else 1
            hpri[pos] = lpri[0] + freq[x] * 1.0e6 / z
            hvt[pos] = vt
            _sift_up(pos, where, hpri, hvt, hid)  # the key only grows: up is a no-op, then down
            _sift_down(where[x] - 1, s[1], where, hpri, hvt, hid)
            continue
        hits[k] = False
        z = sizes[k] if sized else 1
        if (use_admit and not admit[k]) or z > cap:
            n_rej += 1
            continue
        n_adm += 1
        # libCacheSim inserts first, then evicts the lowest until the cache fits:
        # the newcomer itself may be the one to go
        pos = s[1]
        s[1] = pos + 1
        freq[x] = 1
        _place(pos, lpri[0] + 1.0e6 / z, vt, x, where, hpri, hvt, hid)
        _sift_up(pos, where, hpri, hvt, hid)
        if sized:
            osize[x] = z
            used[0] += z
        while (used[0] > cap) if sized else (s[1] > cap):
            lpri[0] = hpri[0]
            v = _drop_pos(0, where, hpri, hvt, hid, s)
            if sized:
                used[0] -= osize[v]
            if v == x:  # the newcomer went at once: never resident, so a refusal, not an eviction
                n_adm -= 1
                n_rej += 1
                continue
            if record:
                evicted[n_ev] = v
            n_ev += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _gdsf_remove(ids, where, hpri, hvt, hid, freq, s, osize, used, lpri, sized):
    n = 0
    for k in range(ids.size):
        w = where[ids[k]]
        if w > 0:
            v = _drop_pos(w - 1, where, hpri, hvt, hid, s)
            if sized:
                used[0] -= osize[v]
            n += 1
    return n


@nb.njit(cache=True)
def _gdsf_shrink(evicted, where, hpri, hvt, hid, freq, s, osize, used, lpri, sized):
    n = 0
    while s[1] > 0 and ((used[0] > s[0]) if sized else (s[1] > s[0])):
        lpri[0] = hpri[0]
        v = _drop_pos(0, where, hpri, hvt, hid, s)
        if sized:
            used[0] -= osize[v]
        evicted[n] = v
        n += 1
    return n


class GDSF(Policy):
    name = "gdsf"
    supports_sizes = True
    _where_dtype = np.int32
    _id_arrays = {
        "_hpri": (np.float64, 0),
        "_hvt": (np.int64, 0),
        "_hid": (np.int32, NIL),
        "_freq": (np.int32, 0),
    }
    _n_scalars = 3  # 0 capacity, 1 size, 2 request number

    def _init_scalars(self) -> None:
        self._lpri = np.zeros(1, np.float64)  # L: the priority of the last eviction

    def _extra_arrays(self) -> list[np.ndarray]:
        return [self._lpri]

    def _arrays(self):
        return (
            self._where,
            self._hpri,
            self._hvt,
            self._hid,
            self._freq,
            self._s,
            self._osize,
            self._used,
            self._lpri,
        )

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _gdsf_access(ids, ids, False, admit, use_admit, hits, evicted, record, *self._arrays())

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        return _gdsf_access(ids, sizes, True, admit, use_admit, hits, evicted, record, *self._arrays())

    def _remove(self, ids):
        return _gdsf_remove(ids, *self._arrays(), self.by_bytes)

    def _shrink(self, evicted):
        return _gdsf_shrink(evicted, *self._arrays(), self.by_bytes)
