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

import functools

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
    cap = capacity_for(cache_size, n)
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


# ---------------------------------------------------------------- posterior oracle
# The true-rate oracle knows each row's rate. A policy that learns from the trace
# can at best know the generator's *laws* (the Zipf probabilities, when a row's
# rank changed, which rows burst and how hard, which rows are one-offs) and must
# still infer each row's rank from the accesses it saw. The posterior oracle is
# that policy: it is told every rank change, burst and one-off, and ranks the
# rows by the posterior mean of their Zipf rate given their accesses since their
# last rank change (uniform prior over the table's ranks). What it reaches bounds
# what learning the generator's dynamics can add to a count-based policy.


def posterior_table(
    cfg: GenConfig, k_max: int = 128, grid: int = 512, e_max: float = 1e9, bins: int = 2000
) -> tuple[np.ndarray, float, float]:
    """``table[k, g]``: E[rate | k accesses in an exposure of E_g requests], E_g log-spaced
    from 1 to ``e_max``; returns (table, log E_0, 1 / step of log E)."""
    return _posterior_table(cfg.rows, cfg.alpha, cfg.one_off, cfg.tables, k_max, grid, e_max, bins)


@functools.lru_cache(maxsize=4)  # the ablations ask for the same table several times (~2 s each)
def _posterior_table(
    rows: int, alpha: float, one_off: float, tables: int, k_max: int, grid: int, e_max: float, bins: int
) -> tuple[np.ndarray, float, float]:
    cfg = GenConfig(rows=rows, alpha=alpha, one_off=one_off, tables=tables)
    ranks = np.arange(1, cfg.rows + 1, dtype=np.float64)
    p = ranks ** (-cfg.alpha)
    p = p / p.sum() * (1.0 - cfg.one_off) / cfg.tables
    edges = np.unique(np.geomspace(1, cfg.rows + 1, bins).astype(np.int64))
    w = np.diff(edges).astype(np.float64)  # ranks per bin
    rep = np.add.reduceat(p, edges[:-1] - 1) / w  # mean rate in the bin
    log_e = np.linspace(0.0, np.log(e_max), grid)
    ks = np.arange(k_max, dtype=np.float64)[:, None]
    table = np.empty((k_max, grid))
    for g, le in enumerate(log_e):
        lw = np.log(w)[None, :] + ks * np.log(rep)[None, :] - rep[None, :] * np.exp(le)
        lw -= lw.max(axis=1, keepdims=True)
        e = np.exp(lw)
        table[:, g] = (e * rep[None, :]).sum(axis=1) / e.sum(axis=1)
    table.setflags(write=False)
    return table, 0.0, (grid - 1) / np.log(e_max)


@nb.njit(cache=True, inline="always")
def _score(v, now, mode, rate_slot, k, t0, brate, trate, table, log_e0, inv_dlog, cover, horizon, rows):
    s = rate_slot[v]
    if s < 0:
        return 0.0
    if mode == 1:
        r = trate[s]
    else:
        kk = k[s]
        e = now - t0[s] + 1.0
        if kk >= table.shape[0]:
            r = kk / e + brate[s]
        else:
            g = int((np.log(e) - log_e0) * inv_dlog + 0.5)
            g = min(max(g, 0), table.shape[1] - 1)
            r = table[kk, g] + brate[s]
    if horizon > 0:  # expected accesses in the next ``horizon`` requests: rate x its table's lookups there
        u = s // rows
        end = min(now + horizon, cover.shape[1] - 1)
        r *= (cover[u, end] - cover[u, now]) * cover.shape[0]
    return r


@nb.njit(cache=True)
def _sampled_sim(
    ids,
    rate_slot,
    sw_pos,
    sw_slot,
    b_pos,
    b_slot,
    b_rate,
    t_pos,
    t_slot,
    t_rate,
    n_ids,
    n_slots,
    cap,
    table,
    log_e0,
    inv_dlog,
    mode,
    n_samples,
    seed,
    bypass,
    cover,
    horizon,
    rows,
):
    """Eviction of the lowest-scored of ``n_samples`` random residents (as LRB samples);
    mode 0: posterior mean rate, mode 1: true rate."""
    np.random.seed(seed)
    k = np.zeros(n_slots, np.int64)
    t0 = np.zeros(n_slots, np.int64)
    brate = np.zeros(n_slots)
    trate = np.zeros(n_slots)
    res = np.empty(cap, np.int64)
    where = np.full(n_ids, -1, np.int64)
    used = 0
    hits = np.zeros(ids.size, np.bool_)
    a = 0
    b = 0
    c = 0
    for now in range(ids.size):
        while a < sw_pos.size and sw_pos[a] <= now:
            k[sw_slot[a]] = 0
            t0[sw_slot[a]] = now
            a += 1
        while b < b_pos.size and b_pos[b] <= now:
            brate[b_slot[b]] = b_rate[b]
            b += 1
        while c < t_pos.size and t_pos[c] <= now:
            trate[t_slot[c]] = t_rate[c]
            c += 1
        x = ids[now]
        s = rate_slot[x]
        if s >= 0 and brate[s] == 0.0:  # accesses a burst drew say nothing about the rank
            k[s] += 1
        if where[x] >= 0:
            hits[now] = True
            continue
        if used < cap:
            where[x] = used
            res[used] = x
            used += 1
            continue
        best = np.inf
        victim = -1
        for _ in range(n_samples):
            v = res[np.random.randint(used)]
            sv = _score(
                v, now, mode, rate_slot, k, t0, brate, trate, table, log_e0, inv_dlog, cover, horizon, rows
            )
            if sv < best:
                best = sv
                victim = v
        if (
            bypass
            and _score(
                x, now, mode, rate_slot, k, t0, brate, trate, table, log_e0, inv_dlog, cover, horizon, rows
            )
            <= best
        ):
            continue
        slot = where[victim]
        where[victim] = -1
        res[slot] = x
        where[x] = slot
    return hits


def sampled_oracle_hits(
    keys: np.ndarray,
    truth: GeneratorTruth,
    cfg: GenConfig,
    cache_size: float,
    posterior: bool = True,
    n_samples: int = 256,
    seed: int = 0,
    horizon: float = 0.0,
    know_changes: bool = True,
    know_bursts: bool = True,
    know_one_offs: bool = True,
) -> np.ndarray:
    """Hit mask of the posterior oracle (``posterior=True``) or of the true-rate oracle
    with the same sampled eviction (to see what sampling costs).

    ``horizon`` > 0 (in units of the capacity) makes either oracle phase-aware: the trace is
    table-major within a batch, so a row is only looked up while its table's block runs, and
    the score becomes the expected accesses in the next ``horizon`` requests (rate times the
    lookups its table gets there) instead of the rate.

    The ``know_*`` flags take one piece of the generator's truth away from the posterior
    oracle (an ablation: how much each piece is worth): rank changes (then a row's counts run
    from the start), bursts (burst accesses count as Zipf accesses), one-offs (a one-off row
    is scored from its accesses like any other)."""
    if not posterior and not (know_changes and know_bursts and know_one_offs):
        raise ValueError("the know_* ablations apply to the posterior oracle")
    if horizon > 0 and not know_one_offs:
        raise ValueError("the phase-aware oracle needs to know the one-off rows")
    ids, n = remap_trace(keys)
    cap = capacity_for(cache_size, n)
    table, le0, inv = posterior_table(cfg)
    cat = np.concatenate
    empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
    sw_pos = cat(truth.swap_pos) if truth.swap_pos and know_changes else empty_i
    sw_idx = cat(truth.swap_idx) if truth.swap_idx and know_changes else empty_i
    bursts = (
        (cat(truth.burst_pos), cat(truth.burst_idx), cat(truth.burst_rate))
        if know_bursts
        else (empty_i, empty_i, empty_f)
    )
    tp, ti, tr = truth.events()
    slots = _rate_slots(keys, ids, n, cfg)
    n_slots = cfg.tables * cfg.rows
    if not know_one_offs:  # every one-off row gets a slot of its own, scored like any row
        lone = slots < 0
        slots[lone] = n_slots + np.arange(int(lone.sum()))
        n_slots += int(lone.sum())
    if horizon > 0:
        cover = _cumulative_cover(cfg.tables, keys.size, np.array(truth.blocks, np.int64))
    else:
        cover = np.zeros((1, 1), np.int32)
    return _sampled_sim(
        ids,
        slots,
        sw_pos,
        sw_idx,
        *bursts,
        tp,
        ti,
        tr,
        n,
        n_slots,
        cap,
        table,
        le0,
        inv,
        0 if posterior else 1,
        n_samples,
        seed,
        True,
        cover,
        int(horizon * cap),
        cfg.rows,
    )


@nb.njit(cache=True)
def _cumulative_cover(tables, total, blocks):
    """``cover[u, p]``: lookups of table u among trace positions ``0 .. p-1``."""
    cover = np.zeros((tables, total + 1), np.int32)
    is_u = np.full(total, -1, np.int64)
    for b in range(blocks.shape[0]):
        u, start, n = blocks[b, 0], blocks[b, 1], blocks[b, 2]
        for p in range(start, start + n):
            is_u[p] = u
    for p in range(total):
        for u in range(tables):
            cover[u, p + 1] = cover[u, p] + (1 if is_u[p] == u else 0)
    return cover
