"""``tinylfu``: W-TinyLFU (Einziger, Friedman, Manes, "TinyLFU", ToS 2017; Caffeine's policy).

A small LRU window (``window`` x capacity) takes every miss; the rest is a segmented LRU
(probation, then protected: ``protected`` of the main part). A row that falls out of the
window is admitted to the main part only if it was seen more often, recently, than the row
the main part would evict (the probation LRU end); otherwise it is dropped. So rows looked up
once (the one-offs of a DLRM-like trace) pass through the small window and never push a
useful row out, which no eviction order alone can do.

The frequency is an exact per-row counter (rows are dense ids, so no sketch is needed),
saturating at ``fmax`` and halved every ``period`` x capacity requests (TinyLFU's reset),
so it is a frequency over the recent past and follows drifting popularity.

Lists share one ``prev``/``next`` pair; ``where`` is 1 (window), 2 (probation), 3 (protected).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..engine.policies.base import Policy

NIL = -1
WIN, PROB, PROT = 1, 2, 3
# scalars: 0 capacity, 1 size, per list q (1..3): head 3q-1, tail 3q, count 3q+1 (2..10);
# 11 window target, 12 protected target, 13 requests since the last halving, 14 halving period, 15 fmax
T_WIN, T_PROT, TICK, PERIOD, FMAX = 11, 12, 13, 14, 15


@nb.njit(cache=True, inline="always")
def _unlink(i, q, prev, nxt, s):
    p, n = prev[i], nxt[i]
    if p != NIL:
        nxt[p] = n
    else:
        s[3 * q - 1] = n
    if n != NIL:
        prev[n] = p
    else:
        s[3 * q] = p
    s[3 * q + 1] -= 1


@nb.njit(cache=True, inline="always")
def _push(i, q, where, prev, nxt, s):
    head = s[3 * q - 1]
    prev[i] = NIL
    nxt[i] = head
    if head != NIL:
        prev[head] = i
    else:
        s[3 * q] = i
    s[3 * q - 1] = i
    s[3 * q + 1] += 1
    where[i] = q


@nb.njit(cache=True)
def _tlfu_access(
    ids, admit, use_admit, where, prev, nxt, freq, s, hits, evicted, record
):
    n_ev = 0
    n_adm = 0
    n_rej = 0
    fmax = s[FMAX]
    for k in range(ids.size):
        i = ids[k]
        if freq[i] < fmax:
            freq[i] += 1
        s[TICK] += 1
        if s[TICK] >= s[PERIOD]:
            s[TICK] = 0
            for j in range(freq.size):
                freq[j] >>= 1
        w = where[i]
        if w > 0:
            hits[k] = True
            _unlink(i, w, prev, nxt, s)
            if w == WIN:
                _push(i, WIN, where, prev, nxt, s)
            else:
                _push(i, PROT, where, prev, nxt, s)
                if w == PROB and s[3 * PROT + 1] > s[T_PROT]:
                    d = s[3 * PROT]
                    _unlink(d, PROT, prev, nxt, s)
                    _push(d, PROB, where, prev, nxt, s)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        _push(i, WIN, where, prev, nxt, s)
        s[1] += 1
        if s[3 * WIN + 1] <= s[T_WIN] and s[1] <= s[0]:
            continue
        c = s[3 * WIN]  # the window's LRU row: a candidate for the main part
        _unlink(c, WIN, prev, nxt, s)
        if s[1] <= s[0]:
            _push(c, PROB, where, prev, nxt, s)
            continue
        q = PROB if s[3 * PROB + 1] > 0 else PROT
        v = s[3 * q]
        if v == NIL:  # no main part (capacity 1): the candidate goes
            v, q = c, 0
        elif freq[c] > freq[v]:
            _unlink(v, q, prev, nxt, s)
            _push(c, PROB, where, prev, nxt, s)
        else:
            v = c
        where[v] = 0
        s[1] -= 1
        if record:
            evicted[n_ev] = v
        n_ev += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _tlfu_remove(ids, where, prev, nxt, s):
    n = 0
    for i in ids:
        w = where[i]
        if w > 0:
            _unlink(i, w, prev, nxt, s)
            where[i] = 0
            s[1] -= 1
            n += 1
    return n


@nb.njit(cache=True)
def _tlfu_shrink(evicted, where, prev, nxt, s):
    n = 0
    while s[1] > s[0]:
        q = PROB if s[3 * PROB + 1] > 0 else (WIN if s[3 * WIN + 1] > 0 else PROT)
        v = s[3 * q]
        _unlink(v, q, prev, nxt, s)
        where[v] = 0
        s[1] -= 1
        evicted[n] = v
        n += 1
    return n


class TinyLFU(Policy):
    """W-TinyLFU over dense ids (see the module docstring)."""

    name = "tinylfu"
    _id_arrays = {
        "_prev": (np.int32, NIL),
        "_next": (np.int32, NIL),
        "_freq": (np.int32, 0),
    }
    _n_scalars = 16

    def __init__(
        self,
        capacity: int,
        n_ids: int = 0,
        *,
        window: float = 0.01,
        protected: float = 0.8,
        period: float = 10.0,
        fmax: int = 15,
        **kw,
    ) -> None:
        self.window_share, self.protected_share, self.period = (
            float(window),
            float(protected),
            float(period),
        )
        self.fmax = int(fmax)
        super().__init__(capacity, n_ids, **kw)

    def _init_scalars(self) -> None:
        for q in (WIN, PROB, PROT):
            self._s[3 * q - 1] = NIL
            self._s[3 * q] = NIL
        self._s[FMAX] = self.fmax
        self._on_resize()

    def _on_resize(self) -> None:
        cap = self.capacity
        win = max(1, int(round(cap * self.window_share))) if cap > 1 else 1
        self._s[T_WIN] = win
        self._s[T_PROT] = max(0, int((cap - win) * self.protected_share))
        self._s[PERIOD] = max(16, int(self.period * cap))

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _tlfu_access(
            ids,
            admit,
            use_admit,
            self._where,
            self._prev,
            self._next,
            self._freq,
            self._s,
            hits,
            evicted,
            record,
        )

    def _remove(self, ids):
        return _tlfu_remove(ids, self._where, self._prev, self._next, self._s)

    def _shrink(self, evicted):
        return _tlfu_shrink(evicted, self._where, self._prev, self._next, self._s)
