"""Validation trace families, built independently of ``embed gen`` (``traces.generate``).

``embed gen`` draws table-major batches of pooled bags and moves popularity by swapping two
ranks at random. The families here are built another way, so that a policy tuned on one
generator is checked on structures it was not shaped by:

* ``zipf``: i.i.d. Zipf(alpha) over a shuffled universe (inverse-CDF sampling).
* ``drift``: a "news" model -- the rank -> row map slides, every ``period`` requests the
  hottest row cools by one rank and a fresh row enters at the top; ``fast`` / ``slow``.
* ``scan``: a Zipf hot set interleaved with sequential scans over cold rows (each scan
  row read once per scan, scans recur).
* ``blockio``: a block-I/O-like trace: files with Zipf popularity read as sequential
  runs of blocks from a random offset, some files re-read in loops.
* ``dlrm``: 8 tables of different sizes and Zipf exponents, looked up sample-major (one
  sample touches every table), each table's popularity drifting at its own speed (news
  model), bursts (a few cold rows turn hot for a while) and one-off rows (about 40% of
  the distinct rows are used once). Keys ``table << 40 | row``.
* ``meta`` and ``pooled``: DLRM-like again, from two more generators written apart (batch-major
  pooled bags; ``pooled`` was written after ``learned``'s defaults were fixed, to check them).

``FAMILIES`` names the traces; ``TUNE`` are the ones parameters were chosen on, ``REPORT``
the ones only reported (docs/embedding.md says which is which).
"""

from __future__ import annotations

import numpy as np

from ..checks import at_least
from ..errors import UserError
from .traces import pack_keys


def _zipf_ranks(rng: np.random.Generator, alpha: float, n: int, size: int) -> np.ndarray:
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -alpha)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1).astype(np.int64)


def zipf(requests: int, alpha: float, rows: int = 200_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rows).astype(np.int64)
    return perm[_zipf_ranks(rng, alpha, rows, requests)]


def drift(requests: int, period: float, alpha: float = 0.9, rows: int = 200_000, seed: int = 0) -> np.ndarray:
    """Rank r at time t is row ``perm[(r - t // period) mod rows]``: rows cool down one rank per period."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rows).astype(np.int64)
    ranks = _zipf_ranks(rng, alpha, rows, requests)
    shift = (np.arange(requests, dtype=np.float64) / period).astype(np.int64)
    return perm[(ranks - shift) % rows]


def scan(
    requests: int,
    alpha: float = 0.9,
    hot_rows: int = 50_000,
    cold_rows: int = 400_000,
    scan_share: float = 0.3,
    scan_len: int = 5_000,
    seed: int = 0,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(requests, np.int64)
    hot = rng.permutation(hot_rows).astype(np.int64)
    pos = 0
    while pos < requests:
        n = min(int(rng.geometric(scan_share / scan_len)), requests - pos)  # a run of hot lookups
        out[pos : pos + n] = hot[_zipf_ranks(rng, alpha, hot_rows, n)]
        pos += n
        if pos >= requests:
            break
        m = min(scan_len, requests - pos)
        start = int(rng.integers(0, cold_rows - m))
        out[pos : pos + m] = hot_rows + start + np.arange(m)
        pos += m
    return out


def blockio(
    requests: int,
    files: int = 20_000,
    alpha: float = 0.8,
    mean_run: float = 8.0,
    file_blocks: int = 64,
    loop_share: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(files).astype(np.int64)
    out = np.empty(requests, np.int64)
    loop = np.arange(0)
    pos = 0
    while pos < requests:
        if loop.size and rng.random() < loop_share:
            run = loop
        else:
            f = perm[_zipf_ranks(rng, alpha, files, 1)[0]]
            n = int(min(rng.geometric(1.0 / mean_run), file_blocks))
            off = int(rng.integers(0, file_blocks - n + 1))
            run = f * file_blocks + off + np.arange(n)
            if rng.random() < 0.01:
                loop = np.concatenate([loop, run])[-4_000:]
        n = min(run.size, requests - pos)
        out[pos : pos + n] = run[:n]
        pos += n
    return out


def dlrm(
    requests: int,
    tables: int = 8,
    one_off: float = 0.03,
    burst_every: int = 20_000,
    seed: int = 0,
    speed: float = 1.0,
) -> np.ndarray:
    """Sample-major DLRM-like lookups over ``tables`` tables (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sizes = (rng.integers(20_000, 200_000, tables)).astype(np.int64)
    alphas = rng.uniform(0.7, 1.2, tables)
    periods = rng.uniform(50.0, 2_000.0, tables) / speed  # requests per one-rank slide, per table
    share = rng.dirichlet(np.full(tables, 2.0))
    tab = rng.choice(tables, size=requests, p=share)
    rows = np.empty(requests, np.int64)
    t = np.arange(requests, dtype=np.float64)
    for j in range(tables):
        m = np.flatnonzero(tab == j)
        perm = rng.permutation(int(sizes[j])).astype(np.int64)
        ranks = _zipf_ranks(rng, float(alphas[j]), int(sizes[j]), m.size)
        rows[m] = perm[(ranks - (t[m] / periods[j]).astype(np.int64)) % sizes[j]]
    # bursts: 32 cold rows of one table take 20% of the lookups for a window of burst_every
    for start in range(0, requests, burst_every):
        if rng.random() < 0.5:
            continue
        j = int(rng.integers(tables))
        hot = rng.integers(0, int(sizes[j]), 32)
        sel = np.arange(start, min(requests, start + burst_every))
        sel = sel[rng.random(sel.size) < 0.2]
        tab[sel] = j
        rows[sel] = hot[rng.integers(0, 32, sel.size)]
    # one-off rows: fresh rows above the table's range, each used once
    sel = np.flatnonzero(rng.random(requests) < one_off)
    rows[sel] = (1 << 32) + np.arange(sel.size)
    return pack_keys(tab, rows)


def _meta_drift(rng, perm, fresh, swap_share, new_rate):
    """Gradual drift (ranks swap with a near neighbour) and new rows entering at a random rank."""
    n = perm.size
    a = rng.integers(0, n, rng.binomial(n, swap_share))
    b = np.minimum(n - 1, a + rng.geometric(0.05, a.size))
    perm[a], perm[b] = perm[b], perm[a]
    m = rng.poisson(new_rate)
    if m:  # a new row replaces the row at a log-uniform rank: new rows are often hot, the old one is gone
        perm[(np.exp(rng.random(m) * np.log(n))).astype(np.int64) - 1] = fresh + np.arange(m)
    return fresh + m


def meta(
    requests: int,
    tables: int = 12,
    batch: int = 64,
    one_off: float = 0.01,
    swap_share: float = 0.002,
    new_rate: float = 3.0,
    seed: int = 0,
) -> np.ndarray:
    """DLRM-like lookups laid out as Meta's dlrm_datasets store them, written apart from ``dlrm``.

    Batch-major, then table-major, then sample order; per table a power-law popularity over a
    rank -> row map, a pooling factor per table (Poisson lengths, means log-uniform 1 ... 30),
    sizes log-uniform 5 k ... 200 k rows. The map drifts gradually (a share of the ranks swap
    with a near neighbour each batch) and abruptly (new rows replace the row at a log-uniform
    rank), rows of one table ramp up and down in bursts, and ``one_off`` of the lookups go to
    rows never seen again. New and one-off rows take ids from one counter above the table's
    range, so an id says nothing about which it is.
    """
    rng = np.random.default_rng([seed, 77])
    sizes = np.exp(rng.uniform(np.log(5e3), np.log(2e5), tables)).astype(np.int64)
    alphas = rng.uniform(0.9, 1.4, tables)
    pools = np.exp(rng.uniform(0.0, np.log(30.0), tables))
    cdfs = [np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -a) for n, a in zip(sizes, alphas)]
    perms = [rng.permutation(int(n)).astype(np.int64) for n in sizes]
    fresh = sizes.copy()
    burst_t, burst_rows, burst_age = 0, np.zeros(0, np.int64), 0
    out_t, out_r, total = [], [], 0
    while total < requests:
        if burst_age <= 0 and rng.random() < 0.05:  # a burst: 16 rows of one table, 40 batches
            burst_t, burst_rows, burst_age = int(rng.integers(tables)), rng.integers(0, 1 << 30, 16), 40
        for j in range(tables):
            k = int(rng.poisson(pools[j], batch).sum())
            u = rng.random(k) * cdfs[j][-1]
            rows = perms[j][np.minimum(np.searchsorted(cdfs[j], u), sizes[j] - 1)]
            if j == burst_t and burst_age > 0:  # share rises then falls: 0.15 x a triangle
                hot = rng.random(k) < 0.15 * (1.0 - abs(burst_age - 20) / 20.0)
                rows[hot] = (1 << 31) + burst_rows[rng.integers(0, 16, int(hot.sum()))]
            once = np.flatnonzero(rng.random(k) < one_off)
            rows[once] = fresh[j] + np.arange(once.size)
            fresh[j] += once.size
            fresh[j] = _meta_drift(rng, perms[j], fresh[j], swap_share, new_rate)
            out_t.append(np.full(k, j, np.int64))
            out_r.append(rows)
            total += k
        burst_age -= 1
    return pack_keys(np.concatenate(out_t)[:requests], np.concatenate(out_r)[:requests])


def pooled(
    requests: int,
    tables: int = 8,
    batch: int = 128,
    drift: float = 1.0,
    one_off: float = 0.3,
    session_rate: float = 0.05,
    pool_max: float = 12.0,
    seed: int = 0,
) -> np.ndarray:
    """DLRM-like pooled bags from a third generator, written after ``learned`` was fixed (a check only).

    Batch-major and table-major like ``meta``, but built another way: per table a Zipf popularity
    (sizes log-uniform 30 k ... 400 k, exponents 0.8 ... 1.3, mean bag length 1 ... ``pool_max``)
    over a rank -> row map that drifts by "trending" swaps (per batch, Poisson(``drift``) rows
    from a log-uniform rank trade places with one of the top 50) and neighbour swaps
    (Poisson(20 ``drift``)); ``one_off / (1 + one_off)`` of the lookups draw uniformly from a
    hashed id space of 2^34 rows (almost never repeated, and inside the table's key range);
    sessions (a table's 8 cold rows take 10 % of its lookups for 5-60 batches) start at
    ``session_rate`` per table and batch.
    """
    rng = np.random.default_rng([seed, 99])
    sizes = np.exp(rng.uniform(np.log(3e4), np.log(4e5), tables)).astype(np.int64)
    alphas = rng.uniform(0.8, 1.3, tables)
    pools = rng.uniform(1.0, pool_max, tables)
    cdfs = [np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -a) for n, a in zip(sizes, alphas)]
    perms = [rng.permutation(int(n)).astype(np.int64) for n in sizes]
    hashed = 1 << 34
    sessions: list = [None] * tables  # [rows, batches left] per table
    out_t, out_r, total = [], [], 0
    while total < requests:
        for j in range(tables):
            k = int(rng.poisson(pools[j] * batch))
            rows = perms[j][np.minimum(np.searchsorted(cdfs[j], rng.random(k) * cdfs[j][-1]), sizes[j] - 1)]
            once = rng.random(k) < one_off / (1.0 + one_off)
            rows[once] = rng.integers(0, hashed, int(once.sum()))
            if sessions[j] is None and rng.random() < session_rate:
                sessions[j] = [hashed + rng.integers(0, sizes[j], 8), int(rng.integers(5, 60))]
            if sessions[j] is not None:
                hot = rng.random(k) < 0.1
                rows[hot] = sessions[j][0][rng.integers(0, 8, int(hot.sum()))]
                sessions[j][1] -= 1
                sessions[j] = sessions[j] if sessions[j][1] > 0 else None
            perm = perms[j]
            for _ in range(int(rng.poisson(drift))):
                a, c = int(np.exp(rng.random() * np.log(sizes[j]))) - 1, int(rng.integers(0, 50))
                perm[a], perm[c] = perm[c], perm[a]
            a = np.unique(rng.integers(0, sizes[j] - 1, rng.poisson(20.0 * drift)))
            a = a[np.diff(a, prepend=-2) > 1]  # disjoint pairs, so the map stays a permutation
            perm[a], perm[a + 1] = perm[a + 1], perm[a]
            out_t.append(np.full(k, j, np.int64))
            out_r.append(rows)
            total += k
    return pack_keys(np.concatenate(out_t)[:requests], np.concatenate(out_r)[:requests])


# name -> (function, keyword arguments); sizes scale with ``requests``
FAMILIES: dict[str, tuple] = {
    "zipf-0.6": (zipf, {"alpha": 0.6}),
    "zipf-0.8": (zipf, {"alpha": 0.8}),
    "zipf-1.0": (zipf, {"alpha": 1.0}),
    "zipf-1.2": (zipf, {"alpha": 1.2}),
    "drift-slow": (drift, {"period": 200.0}),
    "drift-fast": (drift, {"period": 10.0}),
    "scan-hot": (scan, {}),
    "scan-tune": (scan, {"seed": 5, "scan_len": 3_000, "scan_share": 0.25}),
    "blockio": (blockio, {}),
    "dlrm-a": (dlrm, {"seed": 1}),
    "dlrm-b": (dlrm, {"seed": 2}),
    "dlrm-c": (dlrm, {"seed": 11}),
    "dlrm-d": (dlrm, {"seed": 12}),
    "dlrm-fast": (dlrm, {"seed": 13, "speed": 4.0}),
    "dlrm-meta": (meta, {"seed": 21}),
    "dlrm-pooled": (pooled, {"seed": 31}),
    "dlrm-pooled-fast": (pooled, {"seed": 32, "drift": 10.0}),
    "dlrm-pooled-rare": (pooled, {"seed": 33, "drift": 2.0, "one_off": 0.03}),
}
TUNE = ("zipf-0.8", "drift-slow", "scan-tune", "dlrm-a", "dlrm-b")
REPORT = tuple(n for n in FAMILIES if n not in TUNE)


def make(name: str, requests: int = 2_000_000, seed: int | None = None) -> np.ndarray:
    """The family trace ``name`` with about ``requests`` lookups (``seed`` overrides the family's)."""
    if name not in FAMILIES:
        raise UserError(f"unknown trace family {name!r}; choose from {', '.join(FAMILIES)}")
    at_least(1, requests=requests)
    at_least(0, seed=seed)  # numpy's generators take no negative seed (None: the family's own)
    fn, kw = FAMILIES[name]
    kw = dict(kw)
    if seed is not None:
        kw["seed"] = seed
    return fn(requests, **kw)
