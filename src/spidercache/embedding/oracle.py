"""The headroom of online policies on our synthetic traces: a true-rate oracle.

No online policy can know the future, but on a trace we generate we know the
generator's truth: at every moment, the probability that the next lookup hits a
given row (its Zipf rank's probability under the current rank -> row map, the
share taken by the bursts active in its table, the one-off share), and which
rows are one-offs. For independent references drawn from known probabilities the
best online policy keeps the rows of highest probability (Aho-Denning-Ullman's
A0); with drift and bursts the probabilities change at batch boundaries and the
oracle follows them at once. So:

* ``oracle``: on a miss, if the cache is full and the missed row's true rate is
  not above the lowest resident rate, do not admit it (one-off rows have rate 0
  and are never admitted once the cache is full); otherwise evict the resident
  of lowest true rate.
* ``oracle_demand``: the same ordering, but every miss is admitted (demand
  paging, like the engine's OPT).

Its hit ratio is an upper estimate of what an online policy can reach on the
trace: a learned policy can only approach it by estimating the rates from the
past. The *posterior oracle* (below) is that estimate done as well as the
generator allows: it is told every rank change, burst and one-off, and infers
each row's rank from its accesses. Both are study tools (``bench embed`` prints
the headroom table), not policies: they need the generator's ground truth.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..engine.capacity import capacity_for
from ..engine.heap import heap_pop, heap_push
from ..engine.ids import remap_trace
from .traces import GenConfig, generate, row_of, table_of


class GeneratorTruth:
    """``generate(cfg, observer=truth)`` fills it: per (batch, table) block, the rows whose
    true rate changed, the rows whose Zipf rank changed, burst rates, and where the block lies."""

    def __init__(self, cfg: GenConfig) -> None:
        self.cfg = cfg
        ranks = np.arange(1, cfg.rows + 1, dtype=np.float64)
        pz = ranks ** (-cfg.alpha)
        self.pz = pz / pz.sum()
        self.scale = (1.0 - cfg.one_off) / cfg.tables  # every table gets the same expected lookups
        self.current = np.zeros((cfg.tables, cfg.rows))
        self.zipf_now = np.zeros((cfg.tables, cfg.rows))
        self.burst_now = np.zeros((cfg.tables, cfg.rows))
        self.pos: list[np.ndarray] = []
        self.idx: list[np.ndarray] = []
        self.rate: list[np.ndarray] = []
        # for the posterior oracle: rank changes (drift) and burst rates, separately
        self.swap_pos: list[np.ndarray] = []
        self.swap_idx: list[np.ndarray] = []
        self.burst_pos: list[np.ndarray] = []
        self.burst_idx: list[np.ndarray] = []
        self.burst_rate: list[np.ndarray] = []
        self.blocks: list[tuple[int, int, int]] = []  # (table, start, n): when each table's lookups come

    def __call__(
        self, b: int, t: int, start: int, n: int, perm: np.ndarray, bursts: list[np.ndarray]
    ) -> None:
        cfg = self.cfg
        self.blocks.append((t, start, n))
        keep = 1.0 - cfg.burst_share
        # summed, not assigned: a drift step that draws the same rank twice leaves two ranks on
        # one row (the map is then no longer a permutation), and that row gets both ranks' mass
        zipf = np.bincount(perm, weights=self.pz, minlength=cfg.rows) * self.scale
        burst = np.zeros(cfg.rows)
        for j, brows in enumerate(bursts):  # applied in order: a later burst overwrites an earlier one
            np.add.at(burst, brows, cfg.burst_share * keep ** (len(bursts) - 1 - j) / brows.size)
        burst *= self.scale
        rate = zipf * keep ** len(bursts) + burst
        moved = np.flatnonzero(zipf != self.zipf_now[t])
        if b > 0:  # at b = 0 every row gets its first rank: no change to report
            self.swap_pos.append(np.full(moved.size, start, np.int64))
            self.swap_idx.append(t * cfg.rows + moved)
        self.zipf_now[t, moved] = zipf[moved]
        bchanged = np.flatnonzero(burst != self.burst_now[t])
        self.burst_now[t, bchanged] = burst[bchanged]
        self.burst_pos.append(np.full(bchanged.size, start, np.int64))
        self.burst_idx.append(t * cfg.rows + bchanged)
        self.burst_rate.append(burst[bchanged])
        changed = np.flatnonzero(rate != self.current[t])
        self.current[t, changed] = rate[changed]
        self.pos.append(np.full(changed.size, start, np.int64))
        self.idx.append(t * cfg.rows + changed)
        self.rate.append(rate[changed])

    def events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.concatenate(self.pos), np.concatenate(self.idx), np.concatenate(self.rate)


@nb.njit(cache=True)
def _drop_stale(hk, hv, size, resident, rate, rate_slot):
    """Rebuild a full lazy heap from its live entries only (row still resident, rate unchanged)."""
    m = 0
    for j in range(size):
        v = hv[j]
        if resident[v] and -(rate[rate_slot[v]] if rate_slot[v] >= 0 else 0.0) == hk[j]:
            hk[m] = hk[j]
            hv[m] = v
            m += 1
    keys = hk[:m].copy()
    vals = hv[:m].copy()
    size = 0
    for j in range(m):
        size = heap_push(hk, hv, size, keys[j], vals[j])
    return size


@nb.njit(cache=True)
def _oracle_sim(ids, rate_slot, ev_pos, ev_slot, ev_rate, n_ids, n_slots, cap, bypass):
    """Hits of the true-rate oracle. ``rate_slot[id]``: the id's slot in the rate
    table (-1: a one-off row, rate 0). Lowest rate first: a max-heap of (-rate, id) with lazy entries."""
    rate = np.zeros(n_slots)
    slot_id = np.full(n_slots, -1, np.int64)
    for i in range(n_ids):
        if rate_slot[i] >= 0:
            slot_id[rate_slot[i]] = i
    resident = np.zeros(n_ids, np.bool_)
    hsize_max = 4 * cap + 1024
    hk = np.empty(hsize_max, np.float64)
    hv = np.empty(hsize_max, np.int64)
    size = 0
    used = 0
    hits = np.zeros(ids.size, np.bool_)
    e = 0
    for k in range(ids.size):
        while e < ev_pos.size and ev_pos[e] <= k:
            s = ev_slot[e]
            rate[s] = ev_rate[e]
            i = slot_id[s]
            if i >= 0 and resident[i]:
                if size == hsize_max:
                    size = _drop_stale(hk, hv, size, resident, rate, rate_slot)
                size = heap_push(hk, hv, size, -rate[s], i)
            e += 1
        x = ids[k]
        if resident[x]:
            hits[k] = True
            continue
        rx = rate[rate_slot[x]] if rate_slot[x] >= 0 else 0.0
        if used >= cap:
            # the live minimum: skip entries whose row left or whose rate changed since
            while True:
                v = hv[0]
                rv = rate[rate_slot[v]] if rate_slot[v] >= 0 else 0.0
                if resident[v] and -rv == hk[0]:
                    break
                size = heap_pop(hk, hv, size)
            if bypass and rx <= -hk[0]:
                continue
            resident[hv[0]] = False
            size = heap_pop(hk, hv, size)
            used -= 1
        if size == hsize_max:
            size = _drop_stale(hk, hv, size, resident, rate, rate_slot)
        resident[x] = True
        used += 1
        size = heap_push(hk, hv, size, -rx, x)
    return hits


def generate_with_rates(cfg: GenConfig) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The trace ``generate(cfg)`` and its true-rate change events (position, table * rows + row, rate)."""
    rec = GeneratorTruth(cfg)
    keys = generate(cfg, observer=rec)
    return keys, rec.events()


def oracle_hits(
    keys: np.ndarray, events, cfg: GenConfig, cache_size: float, bypass: bool = True
) -> np.ndarray:
    """Hit mask of the true-rate oracle on ``keys`` (made by ``generate_with_rates(cfg)``)."""
    ids, n = remap_trace(keys)
    cap = min(capacity_for(cache_size, n), n)  # above n distinct rows, everything fits
    pos, slot, rate = events
    return _oracle_sim(
        ids, _rate_slots(keys, ids, n, cfg), pos, slot, rate, n, cfg.tables * cfg.rows, cap, bypass
    )


def _rate_slots(keys: np.ndarray, ids: np.ndarray, n: int, cfg: GenConfig) -> np.ndarray:
    """Per dense id: its row's slot ``table * rows + row`` in the rate arrays, -1 for a one-off row."""
    first = np.full(n, -1, np.int64)
    first[ids[::-1]] = np.arange(ids.size - 1, -1, -1)  # a position of each id (the first one)
    key_of_id = keys[first]
    t, r = table_of(key_of_id), row_of(key_of_id)
    if t.size and int(t.max()) >= cfg.tables:
        raise ValueError("the trace has more tables than the generator configuration it was given")
    return np.where(r < cfg.rows, t * cfg.rows + r, -1).astype(np.int64)
