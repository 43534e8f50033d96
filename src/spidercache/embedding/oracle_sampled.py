"""The posterior oracle: what learning the trace generator's laws could add to a count-based policy.

Split from ``oracle.py`` (the true-rate oracle and the generator's ground truth), which it builds on.
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np

from ..engine.capacity import capacity_for
from ..engine.ids import remap_trace
from .oracle import GeneratorTruth, _rate_slots
from .traces import GenConfig

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
    cap = min(capacity_for(cache_size, n), n)  # above n distinct rows, everything fits
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
