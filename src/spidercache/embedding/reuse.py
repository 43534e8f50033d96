"""An online reuse model: P(a row's next access comes within the horizon H), learned as the trace goes.

Each access falls in a bucket of three features: the row's table (mod 16), how often the
row was seen before (log2 buckets) and the gap since its previous access in units of H
(half-octave buckets; a first access has its own bucket). The label of an access is known
H requests later at the latest: positive if the row came back within H, negative if not.
A ring queue holds the accesses younger than H; a return within H marks its previous
access positive, and an access is counted in its bucket (total, and positive if marked)
once it is H old, so ``pos / tot`` is the empirical reuse rate of the bucket, over a memory that decays by
``decay`` every
``capacity`` requests (so it follows a trace whose behaviour changes).

H is the cache's horizon: for an LRU cache, the time an admitted row that is not used again
takes to fall off (capacity / admissions per request), measured by the caller.

This is what LRB learns from (labels that become known as the trace goes on), with a
histogram instead of gradient boosting: a few thousand buckets, updated in O(1) per access.
"""

from __future__ import annotations

import numba as nb
import numpy as np

N_TABLE_BUCKETS = 16
N_COUNT_BUCKETS = 8
N_GAP_BUCKETS = 16
N_BUCKETS = N_TABLE_BUCKETS * N_COUNT_BUCKETS * N_GAP_BUCKETS


@nb.njit(cache=True, inline="always")
def _bucket(table, count, gap, horizon):
    c = 0
    x = count
    while x > 0 and c < N_COUNT_BUCKETS - 1:
        c += 1
        x >>= 1
    if count == 0:
        g = 0
    else:
        g = int(np.floor(2.0 * np.log2(max(gap, 1) / horizon))) + 8
        g = min(max(g, 1), N_GAP_BUCKETS - 1)
    return ((table % N_TABLE_BUCKETS) * N_COUNT_BUCKETS + c) * N_GAP_BUCKETS + g


@nb.njit(cache=True)
def _observe(ids, tables, now0, horizon, seen, count, last_b, last_q, q_t, q_b, q_pos, qs, pos, tot, p_out):
    """Score each access (p_out) with the buckets' current rates, then learn from it."""
    mask = q_t.size - 1
    h = int(horizon)
    for k in range(ids.size):
        i = ids[k]
        now = now0 + k
        while qs[0] != qs[1] and q_t[qs[0] & mask] < now - h:  # accesses now H old: their label is final
            j = qs[0] & mask
            tot[q_b[j]] += 1.0
            pos[q_b[j]] += q_pos[j]
            qs[0] += 1
        gap = now - seen[i]
        if count[i] > 0 and gap <= h and last_q[i] >= qs[0]:  # back within H: the last access was a reuse
            q_pos[last_q[i] & mask] = 1.0
        b = _bucket(tables[k], count[i], gap, horizon)
        p_out[k] = (pos[b] + 0.5) / (tot[b] + 1.0)
        if qs[1] - qs[0] == q_t.size:  # full ring: settle the oldest early
            j = qs[0] & mask
            tot[q_b[j]] += 1.0
            pos[q_b[j]] += q_pos[j]
            qs[0] += 1
        j = qs[1] & mask
        q_t[j] = now
        q_b[j] = b
        q_pos[j] = 0.0
        last_q[i] = qs[1]
        qs[1] += 1
        last_b[i] = b
        seen[i] = now
        count[i] += 1


class ReuseModel:
    """Online bucketed estimate of P(next access within H); ``observe`` scores and learns."""

    def __init__(self, capacity: int, n_ids: int, ring: int | None = None, decay: float = 0.9) -> None:
        self.capacity = max(1, int(capacity))
        self.decay = float(decay)
        self.seen = np.zeros(max(16, n_ids), np.int64)
        self.count = np.zeros(max(16, n_ids), np.int64)
        self.last_b = np.zeros(max(16, n_ids), np.int64)
        self.last_q = np.full(max(16, n_ids), -1, np.int64)
        size = 1 << int(np.ceil(np.log2(max(1024, ring or 16 * self.capacity))))
        self.q_t = np.zeros(size, np.int64)
        self.q_b = np.zeros(size, np.int64)
        self.q_pos = np.zeros(size, np.float64)
        self.qs = np.zeros(2, np.int64)
        self.pos = np.zeros(N_BUCKETS, np.float64)
        self.tot = np.zeros(N_BUCKETS, np.float64)
        self.time = 0
        self._since_decay = 0

    def _reserve(self, hi: int) -> None:
        if hi < self.seen.size:
            return
        n = max(hi + 1, 2 * self.seen.size)
        for name in ("seen", "count", "last_b", "last_q"):
            old = getattr(self, name)
            new = np.full(n, -1 if name == "last_q" else 0, np.int64)
            new[: old.size] = old
            setattr(self, name, new)

    def observe(self, ids: np.ndarray, tables: np.ndarray, horizon: float) -> np.ndarray:
        """P(reuse within ``horizon``) for each access of ``ids`` (then the accesses are learned)."""
        ids = np.ascontiguousarray(ids, np.int64)
        if ids.size:
            self._reserve(int(ids.max()))
        out = np.empty(ids.size, np.float64)
        h = float(min(max(horizon, 1.0), self.q_t.size))
        _observe(
            ids,
            np.ascontiguousarray(tables, np.int64),
            self.time,
            h,
            self.seen,
            self.count,
            self.last_b,
            self.last_q,
            self.q_t,
            self.q_b,
            self.q_pos,
            self.qs,
            self.pos,
            self.tot,
            out,
        )
        self.time += ids.size
        self._since_decay += ids.size
        if self._since_decay >= self.capacity:
            f = self.decay ** (self._since_decay / self.capacity)
            self.pos *= f
            self.tot *= f
            self._since_decay = 0
        return out
