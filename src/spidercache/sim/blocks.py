"""A synthetic block-I/O trace: what a storage trace looks like, expanded into 512-byte sectors.

No real block trace can be downloaded on the machines this runs on, so the
benchmark generates one with the shape that matters for a simulator's speed
(the key remap, the hash table, the locality of a hit):

* a hot set of extents (4 KiB to 64 KiB, 4 KiB aligned) read again and again,
  with Zipf(``alpha``) popularity;
* sequential runs (a file or a backup being read): 1 to 8 consecutive 32 KiB
  extents at a random place, rarely read twice;
* cold random reads scattered over a 1 TiB address space.

Each extent request is then expanded into one request per 512-byte sector
(``start, start + 1, ...``), as libCacheSim's block traces are; every sector
request has size 512. Keys are sector numbers; the span is far wider than the
request count, so the remap takes its hashed path, as on a real trace.
"""

from __future__ import annotations

import numpy as np

from ..checks import at_least
from ..errors import UserError
from .formats import Trace

SECTOR = 512
_SPACE = 2**31  # sectors: a 1 TiB volume


def block_trace(
    requests: int,
    seed: int = 0,
    alpha: float = 0.9,
    hot_extents: int = 20_000,
    scan_share: float = 0.03,
    cold_share: float = 0.07,
) -> Trace:
    """About ``requests`` sector requests (trimmed to exactly that many) with sizes of 512 bytes."""
    at_least(1, requests=requests)
    if not (0 <= scan_share <= 1 and 0 <= cold_share <= 1 and scan_share + cold_share <= 1):
        raise UserError("scan and cold shares must be in [0, 1] and add up to at most 1")
    rng = np.random.default_rng(seed)
    hot_start = rng.integers(0, _SPACE // 8, hot_extents) * 8
    hot_len = rng.choice(np.array([8, 16, 32, 64, 128]), hot_extents, p=[0.4, 0.25, 0.15, 0.1, 0.1])
    ranks = np.arange(1, hot_extents + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-alpha)
    cdf /= cdf[-1]
    starts: list[np.ndarray] = []
    lens: list[np.ndarray] = []
    total = 0
    while total < requests:
        n = 4096
        kind = rng.random(n)
        s = np.empty(n, np.int64)
        ln = np.empty(n, np.int64)
        hot = kind >= scan_share + cold_share
        pick = np.searchsorted(cdf, rng.random(int(hot.sum())), side="right").clip(max=hot_extents - 1)
        s[hot], ln[hot] = hot_start[pick], hot_len[pick]
        cold = kind < cold_share
        s[cold] = rng.integers(0, _SPACE // 8, int(cold.sum())) * 8
        ln[cold] = 8
        scan = ~hot & ~cold
        n_scan = int(scan.sum())
        # a scan request reads a run of consecutive 32 KiB extents
        s[scan] = rng.integers(0, (_SPACE - 512) // 8, n_scan) * 8
        ln[scan] = 64 * rng.integers(1, 9, n_scan)
        starts.append(s)
        lens.append(ln)
        total += int(ln.sum())
    start = np.concatenate(starts)
    length = np.concatenate(lens)
    cut = int(np.searchsorted(np.cumsum(length), requests)) + 1
    start, length = start[:cut], length[:cut]
    offsets = np.arange(int(length.sum()), dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
    keys = (np.repeat(start, length) + offsets)[:requests]
    return Trace(keys, np.full(keys.size, SECTOR, np.int64))
