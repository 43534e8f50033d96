"""OPT (Belady's MIN): evict the resident id whose next request is farthest away.

It needs the future, given as ``next_use``: for every request of the trace the
position of the next request of the same id (``NEVER`` if none), as computed by
``engine.nextuse.next_use_positions``. The policy keeps a cursor into the trace, so successive
``access`` batches must be consecutive slices of the very trace ``next_use`` was
computed from (a hit whose recorded next use is not the current position means
they are not, and raises ``ValueError``).

Bypass. By default (``bypass=False``) every miss is admitted and the victim is
the farthest resident -- exactly libCacheSim's ``Belady`` (demand paging), so
the two agree hit for hit. With ``bypass=True`` a miss whose next use is at least
as far as every resident's is not admitted (counted as a rejection): that is
the true optimum when the cache may decline an item, and the number OPTgen
(Hawkeye) computes. ``opt_hits(ids, capacity, bypass=...)`` returns the per-access
hit mask for a whole trace; it is the single definition other modules (e.g. an
embedding cache's OPTgen) must match.

State: an indexed 4-ary max-heap (half the depth of a binary one; the four
children share a cache line) over dense slots, keyed by next use:
``where[id]`` = heap position + 1, ``_hkey`` (int64 next use) and ``_hid`` (int32
id) per heap slot. 16 bytes per distinct id. The ``next_use`` array itself is
8 bytes per *request*, not per key, and is not counted in ``state_bytes()``.
Heap operations are O(log C) and the heap never holds more than the resident ids
(no lazy entries piling up with the trace).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..nextuse import next_use_positions
from .base import Policy

NIL = -1


@nb.njit(cache=True, inline="always")
def _sift_up(pos, where, hkey, hid):
    key = hkey[pos]
    i = hid[pos]
    while pos > 0:
        parent = (pos - 1) >> 2
        if hkey[parent] >= key:
            break
        hkey[pos] = hkey[parent]
        j = hid[parent]
        hid[pos] = j
        where[j] = pos + 1
        pos = parent
    hkey[pos] = key
    hid[pos] = i
    where[i] = pos + 1


@nb.njit(cache=True, inline="always")
def _sift_down(pos, size, where, hkey, hid):
    key = hkey[pos]
    i = hid[pos]
    while True:
        first = 4 * pos + 1
        if first >= size:
            break
        child = first
        best = hkey[first]
        end = min(first + 4, size)
        for c in range(first + 1, end):
            if hkey[c] > best:
                best = hkey[c]
                child = c
        if best <= key:
            break
        hkey[pos] = best
        j = hid[child]
        hid[pos] = j
        where[j] = pos + 1
        pos = child
    hkey[pos] = key
    hid[pos] = i
    where[i] = pos + 1


@nb.njit(cache=True)
def _opt_access(ids, admit, use_admit, hits, evicted, record, where, hkey, hid, s, next_use):
    """Returns (n_evicted, n_admitted, n_rejected, bad) -- bad = index of a request
    that contradicts ``next_use`` (or -1)."""
    cap, size, cursor, bypass = s[0], s[1], s[2], s[3]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        t = cursor + k
        i = ids[k]
        nu = next_use[t]
        w = where[i]
        if w > 0:
            pos = w - 1
            if hkey[pos] != t:
                s[1] = size
                s[2] = t
                return n_ev, n_adm, n_rej, k
            hits[k] = True
            hkey[pos] = nu  # later than before: moves towards the root
            _sift_up(pos, where, hkey, hid)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        if size < cap:
            hkey[size] = nu
            hid[size] = i
            size += 1
            _sift_up(size - 1, where, hkey, hid)
            n_adm += 1
            continue
        if bypass and nu >= hkey[0]:
            n_rej += 1  # the newcomer itself is the farthest: do not admit it
            continue
        victim = hid[0]
        where[victim] = 0
        if record:
            evicted[n_ev] = victim
        n_ev += 1
        n_adm += 1
        hkey[0] = nu
        hid[0] = i
        _sift_down(0, size, where, hkey, hid)
    s[1] = size
    s[2] = cursor + ids.size
    return n_ev, n_adm, n_rej, -1


@nb.njit(cache=True, inline="always")
def _drop_pos(pos, where, hkey, hid, s):
    where[hid[pos]] = 0
    last = s[1] - 1
    s[1] = last
    if pos != last:
        # move the last entry into the hole; it then belongs either above or below
        moved = hid[last]
        hkey[pos] = hkey[last]
        hid[pos] = moved
        _sift_up(pos, where, hkey, hid)
        if where[moved] - 1 == pos:
            _sift_down(pos, last, where, hkey, hid)


@nb.njit(cache=True)
def _opt_access_sized(
    ids, sizes, admit, use_admit, hits, evicted, record, where, hkey, hid, s, next_use, osize, used
):
    """Byte-sized OPT (libCacheSim's ``Belady`` with sizes): a miss evicts the farthest
    residents until the newcomer fits; an object larger than the cache is not inserted."""
    cap = s[0]
    cursor = s[2]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        t = cursor + k
        i = ids[k]
        z = sizes[k]
        nu = next_use[t]
        w = where[i]
        if w > 0:
            pos = w - 1
            if hkey[pos] != t:
                s[2] = t
                return n_ev, n_adm, n_rej, k
            hits[k] = True
            hkey[pos] = nu
            _sift_up(pos, where, hkey, hid)
            continue
        hits[k] = False
        if (use_admit and not admit[k]) or z > cap:
            n_rej += 1
            continue
        n_adm += 1
        while used[0] + z > cap:
            victim = hid[0]
            used[0] -= osize[victim]
            _drop_pos(0, where, hkey, hid, s)
            if record:
                evicted[n_ev] = victim
            n_ev += 1
        size = s[1]
        hkey[size] = nu
        hid[size] = i
        s[1] = size + 1
        _sift_up(size, where, hkey, hid)
        osize[i] = z
        used[0] += z
    s[2] = cursor + ids.size
    return n_ev, n_adm, n_rej, -1


@nb.njit(cache=True)
def _opt_remove(ids, where, hkey, hid, s):
    n = 0
    for k in range(ids.size):
        w = where[ids[k]]
        if w > 0:
            _drop_pos(w - 1, where, hkey, hid, s)
            n += 1
    return n


@nb.njit(cache=True)
def _opt_shrink(evicted, where, hkey, hid, s, osize, used, sized):
    n = 0
    while s[1] > 0 and (used[0] if sized else s[1]) > s[0]:
        evicted[n] = hid[0]
        if sized:
            used[0] -= osize[hid[0]]
        n += 1
        _drop_pos(0, where, hkey, hid, s)
    return n


class OPT(Policy):
    name = "opt"
    _where_dtype = np.int32
    _id_arrays = {"_hkey": (np.int64, 0), "_hid": (np.int32, NIL)}
    _n_scalars = 4  # 0 capacity, 1 size, 2 cursor into the trace, 3 bypass
    supports_sizes = True

    def __init__(
        self,
        capacity: int,
        n_ids: int = 0,
        *,
        next_use: np.ndarray | None = None,
        bypass: bool = False,
        **kwargs,
    ) -> None:
        if next_use is None:
            raise ValueError("OPT needs next_use (see next_use_positions)")
        self.next_use = np.ascontiguousarray(next_use, dtype=np.int64)
        self.bypass = bool(bypass)
        if self.bypass and kwargs.get("by_bytes"):
            raise ValueError("OPT with bypass has no byte-sized form")
        super().__init__(capacity, n_ids, **kwargs)

    def _init_scalars(self) -> None:
        self._s[3] = int(self.bypass)

    @property
    def cursor(self) -> int:
        """How many requests of the trace have been served."""
        return int(self._s[2])

    def _check_room(self, n: int) -> None:
        if self.cursor + n > self.next_use.size:
            raise ValueError(
                f"OPT was given next-use positions for {self.next_use.size} requests; "
                f"this batch goes to request {self.cursor + n}"
            )

    def _arrays(self):
        return self._where, self._hkey, self._hid, self._s, self.next_use, self._osize, self._used

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        self._check_room(ids.size)
        out = _opt_access(ids, admit, use_admit, hits, evicted, record, *self._arrays()[:5])
        return self._checked(ids, *out)

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):
        self._check_room(ids.size)
        out = _opt_access_sized(ids, sizes, admit, use_admit, hits, evicted, record, *self._arrays())
        return self._checked(ids, *out)

    def _checked(self, ids, n_ev, n_adm, n_rej, bad):
        if bad >= 0:
            raise ValueError(
                f"request {self.cursor} (id {int(ids[bad])}) does not follow the trace "
                "next_use was computed from"
            )
        return n_ev, n_adm, n_rej

    def _remove(self, ids):
        if self.by_bytes:
            gone = np.unique(ids[self._where[ids] > 0])
            self._used[0] -= int(self._osize[gone].sum())
        return _opt_remove(ids, self._where, self._hkey, self._hid, self._s)

    def _shrink(self, evicted):
        return _opt_shrink(evicted, *self._arrays()[:4], self._osize, self._used, self.by_bytes)


def opt_hits(
    ids: np.ndarray, capacity: int, *, bypass: bool = False, next_use: np.ndarray | None = None
) -> np.ndarray:
    """Per-request hit mask of OPT over a whole trace of dense ids (the reference decision)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.size == 0:
        return np.zeros(0, np.bool_)
    if next_use is None:
        next_use = next_use_positions(ids)
    policy = OPT(capacity, int(ids.max()) + 1, next_use=next_use, bypass=bypass)
    return policy.access(ids)
