"""Run one policy over one dense trace: the loop every simulation goes through.

``run_policy`` builds a fresh policy (object count or bytes) and feeds it the
whole trace in one ``access`` call; only that call is timed. The trace simulator
and the benchmark share it, so there is one loop, not one per front-end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from ..engine.policies import make_policy


@dataclass(frozen=True)
class PolicyRun:
    """One simulation: ``capacity`` as asked, ``built`` as given to the policy (at most the footprint)."""

    policy: str
    size: float
    capacity: int
    built: int
    by_bytes: bool = False


def is_opt(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in {"opt", "belady", "min"}


def policy_kwargs(name: str, next_use: np.ndarray | None) -> dict[str, Any]:
    """Extra constructor arguments a policy needs from the trace (OPT: next use)."""
    return {"next_use": next_use} if is_opt(name) else {}


@nb.njit(cache=True)
def _first_sizes_sum(ids, sizes):
    # ids are numbered in order of first appearance: a new id is the next number
    total = 0
    nxt = 0
    for i in range(ids.size):
        if ids[i] == nxt:
            total += sizes[i]
            nxt += 1
    return total


def footprint_bytes(ids: np.ndarray, sizes: np.ndarray | None, n: int) -> int:
    """The trace's working set in bytes: each distinct object at its first size (libCacheSim's)."""
    if sizes is None:
        return int(n)
    return int(_first_sizes_sum(ids, sizes))


def replay(
    policy: Any, ids: np.ndarray, batch: int | None = None, sizes: np.ndarray | None = None
) -> np.ndarray:
    """The one trace-replay loop: ``ids`` through ``policy`` (whole, or ``batch`` at a time) -> hits."""
    if not batch or batch >= ids.size:
        return policy.access(ids) if sizes is None else policy.access(ids, sizes=sizes)
    hits = np.empty(ids.size, np.bool_)
    for s in range(0, ids.size, batch):
        part = slice(s, s + batch)
        hits[part] = (
            policy.access(ids[part]) if sizes is None else policy.access(ids[part], sizes=sizes[part])
        )
    return hits


def run_policy(
    run: PolicyRun,
    ids: np.ndarray,
    n_ids: int,
    sizes: np.ndarray | None = None,
    next_use: np.ndarray | None = None,
) -> dict:
    """Feed the whole trace of dense ids to one fresh policy; time only the loop."""
    kwargs = policy_kwargs(run.policy, next_use)
    if run.by_bytes:
        kwargs["by_bytes"] = True
    policy = make_policy(run.policy, max(run.built, 1), n_ids, **kwargs)
    t0 = time.perf_counter()
    hit_mask = replay(policy, ids, sizes=sizes if run.by_bytes else None)
    elapsed = time.perf_counter() - t0
    return {
        "policy": policy.name,
        "hits": int(np.count_nonzero(hit_mask)),
        "bytes_hit": int(sizes[hit_mask].sum()) if sizes is not None else 0,
        "sim_seconds": elapsed,
        "state_bytes": policy.state_bytes(),
    }
