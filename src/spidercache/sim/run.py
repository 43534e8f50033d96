"""Run one policy over one dense trace: the loop every simulation goes through.

``run_policy`` builds a fresh policy (object count or bytes) and feeds it the
whole trace in one ``access`` call; only that call is timed. The trace simulator
and the benchmark share it, so there is one loop, not one per front-end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba as nb
import numpy as np

from ..engine.policies import make_policy
from ..engine.policies.base import hit_bytes
from ..engine.replay import replay


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


def wants_keys(name: str) -> bool:
    """Whether the policy hashes the original keys (W-TinyLFU's filter, as libCacheSim's)."""
    return name.lower().replace("-", "").replace("_", "") in {"wtinylfu", "tinylfu"}


def keys_by_id(keys: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """The key each dense id stands for (``int64`` bit patterns)."""
    out = np.empty(n, np.int64)
    out[ids] = keys.view(np.int64) if keys.dtype == np.uint64 else keys
    return out


def policy_kwargs(name: str, next_use: np.ndarray | None, id_keys: np.ndarray | None = None) -> dict:
    """Extra constructor arguments a policy needs from the trace (OPT: next use; W-TinyLFU: keys)."""
    if is_opt(name):
        return {"next_use": next_use}
    return {"keys": id_keys} if wants_keys(name) and id_keys is not None else {}


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


def run_policy(
    run: PolicyRun,
    ids: np.ndarray,
    n_ids: int,
    sizes: np.ndarray | None = None,
    next_use: np.ndarray | None = None,
    id_keys: np.ndarray | None = None,
) -> dict:
    """Feed the whole trace of dense ids to one fresh policy; time only the loop."""
    kwargs = policy_kwargs(run.policy, next_use, id_keys)
    if run.by_bytes:
        kwargs["by_bytes"] = True
    policy = make_policy(run.policy, max(run.built, 1), n_ids, **kwargs)
    t0 = time.perf_counter()
    # training policies: one epoch is one pass over the ids, as their loader would ask
    out = replay(policy, ids, sizes=sizes if run.by_bytes else None, epoch_length=n_ids)
    elapsed = time.perf_counter() - t0
    row = {
        "policy": run.policy if run.policy.startswith("train-") else policy.name,
        "hits": int(np.count_nonzero(out.hits)),
        "bytes_hit": int(hit_bytes(sizes, out.hits)) if sizes is not None else 0,
        "sim_seconds": elapsed,
        "state_bytes": policy.state_bytes(),
    }
    if out.substituted.any():
        row["substitutions"] = int(np.count_nonzero(out.substituted))
    return row
