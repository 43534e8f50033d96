"""The issue's reference: LRU with an oracle that admits only rows reused before their eviction.

The filtered LRU admits a miss only if, under that same filtered LRU, the row is requested again
before it would be evicted; hits always move the row to the top. It needs the future, so it is a
study tool like OPT, but unlike the oracles of ``oracle.py`` it needs no generator truth: it runs
on any trace.

**What "evicted before its reuse" means exactly.** Call a request *touched* if it is a hit or an
admitted miss (a rejected miss changes nothing). In an LRU that only reorders on touches, the row
touched at ``p`` sits at depth ``1 + D(p, s)`` at time ``s``, where ``D(p, s)`` is the number of
distinct rows touched in ``(p, s)``; it is evicted by the admission that would take it to depth
``C + 1``. So the request at ``s`` is a hit iff its row was touched at its previous request ``p``
and ``D(p, s) < C`` -- warm-up included, since a row at depth ``C`` means the cache is full. One
pass with a Fenwick tree over positions (a 1 at each row's last touched position) gives
``D(p, s)`` at every request, hence the exact hits of LRU under *any* given admission decisions,
and for every request ``t`` the label ``D(t, next(t)) < C``: would its row have survived to its
next use, had it been admitted, with the touches of this pass.

**The fixed point.** The rule is self-referential (whether a row survives depends on which later
misses are admitted), so it is computed by iteration: pass 0 admits every miss (plain LRU); pass
``k + 1`` admits a miss iff pass ``k`` labelled it positive. Every pass is an exact simulation of
LRU under its decisions, so each hit ratio is reachable by some admission oracle. Pass 1 is the
common *two-pass* form (admit iff the next use would be an LRU hit); it never admits a row it
then loses before its reuse (its touches are a subset of LRU's, so its distances are no longer).
The iteration stops when a pass's decisions agree with its own labels on every miss (a fixed
point: the rule holds exactly) or after ``max_passes``; ``admission_oracle`` reports every pass.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..engine.capacity import capacity_for
from ..engine.ids import remap_trace


@nb.njit(cache=True)
def _filtered_lru_pass(ids, n_ids, cap, admit):
    """Exact hits of LRU (capacity ``cap``) whose miss at position s is admitted iff
    ``admit[s]``; and ``label[t]``: the row requested at t is requested again before ``cap``
    distinct rows are touched in between (False for a last request)."""
    n = ids.size
    tree = np.zeros(n + 1, np.int32)  # Fenwick tree over positions 1..n
    last_req = np.full(n_ids, -1, np.int64)
    last_touch = np.full(n_ids, -1, np.int64)
    hits = np.zeros(n, np.bool_)
    label = np.zeros(n, np.bool_)
    for s in range(n):
        x = ids[s]
        p = last_req[x]
        if p >= 0:
            cnt = 0  # distinct rows touched in (p, s): prefix(s) - prefix(p + 1), 1-based
            j = s
            while j > 0:
                cnt += tree[j]
                j -= j & -j
            j = p + 1
            while j > 0:
                cnt -= tree[j]
                j -= j & -j
            label[p] = cnt < cap
            hits[s] = last_touch[x] == p and cnt < cap
        last_req[x] = s
        if hits[s] or admit[s]:
            q = last_touch[x]
            if q >= 0:
                j = q + 1
                while j <= n:
                    tree[j] -= 1
                    j += j & -j
            j = s + 1
            while j <= n:
                tree[j] += 1
                j += j & -j
            last_touch[x] = s
    return hits, label


def admission_oracle(ids: np.ndarray, n_ids: int, cap: int, max_passes: int = 60) -> dict:
    """Iterate the filtered LRU to its fixed point (module docstring). Returns ``passes``: per pass
    ``{hit_ratio, admitted, disagree}`` (misses admitted; misses whose decision differs from the
    pass's own label), ``converged``, ``hits`` (mask of the fixed point, else of the best pass)
    and ``two_pass`` (hit ratio of pass 1)."""
    if cap < 1:
        raise ValueError("capacity must be >= 1")
    ids = np.ascontiguousarray(ids, np.int64)
    admit = np.ones(ids.size, np.bool_)
    passes: list[dict] = []
    best = None
    converged = False
    for _ in range(max_passes + 1):
        hits, label = _filtered_lru_pass(ids, n_ids, cap, admit)
        miss = ~hits
        row = {
            "hit_ratio": float(hits.mean()) if ids.size else 0.0,
            "admitted": int(np.count_nonzero(admit & miss)),
            "disagree": int(np.count_nonzero((admit != label) & miss)),
        }
        passes.append(row)
        if len(passes) > 1 and (best is None or row["hit_ratio"] > best[0]):
            best = (row["hit_ratio"], hits)
        if len(passes) > 1 and row["disagree"] == 0:
            converged = True
            best = (row["hit_ratio"], hits)
            break
        admit = label
    return {
        "passes": passes,
        "converged": converged,
        "hits": best[1] if best is not None else hits,
        "two_pass": passes[1]["hit_ratio"] if len(passes) > 1 else passes[0]["hit_ratio"],
    }


def admission_oracle_hits(keys: np.ndarray, cache_size: float, max_passes: int = 60) -> dict:
    """``admission_oracle`` on a trace of keys at ``cache_size`` (a fraction of the distinct keys
    when <= 1, else rows)."""
    ids, n = remap_trace(np.ascontiguousarray(keys, np.int64))
    return admission_oracle(ids, n, min(capacity_for(cache_size, n), n), max_passes)  # all fit above n
