"""The trace simulator: a loop over a trace, through the engine's own policies.

``simulate(keys, ["lru", "opt"], [0.01, 0.1])`` remaps the keys to dense ids,
builds each policy with ``make_policy`` and feeds it the whole trace in one
``access`` call: the very kernels a live ``Cache`` runs, never a second
implementation.

What ``seconds`` counts: everything after the trace is in memory, i.e.
remapping keys to dense ids, next-use positions (OPT only) and the simulation
itself. The remapping (and, for OPT, the next-use pass) is done once per trace
and its time is added to every row that uses it, so each row's ``seconds`` is
what that one simulation would cost on its own.

What it does not count: numba compile time. Before timing anything,
``warm_up`` runs every kernel involved on a tiny trace, so the JIT (or the
load of numba's on-disk cache) is paid outside the clock. The same warm-up
checks the policy names, so an unknown policy fails before any work is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..engine.capacity import capacity_for, check_size
from ..engine.ids import remap_trace
from ..engine.nextuse import next_use_positions
from ..engine.policies import Policy, make_policy
from ..errors import UserError

ROW_KEYS = (
    "policy", "cache_size", "capacity", "requests", "hits", "hit_ratio",
    "seconds", "requests_per_second",
)

ALL_POLICIES = ("lru", "fifo", "lfu", "arc", "s3fifo", "opt")


# ------------------------------------------------------------ arguments
def parse_policies(text: str | Sequence[str]) -> list[str]:
    """``"lru,fifo"`` -> ``["lru", "fifo"]`` (names are checked by ``warm_up``)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip().lower() for s in items if s.strip()]
    if not names:
        raise UserError("no policy given; e.g. --policy lru,fifo,lfu,arc,s3fifo,opt")
    return names


def parse_cache_sizes(text: str | Sequence[float]) -> list[float]:
    """``"0.01,0.1,5000"`` -> floats; each must be > 0."""
    items = text.split(",") if isinstance(text, str) else list(text)
    sizes: list[float] = []
    for item in items:
        s = str(item).strip()
        if not s:
            continue
        try:
            v = float(s)
        except ValueError:
            raise UserError(f"cache size {s!r} is not a number") from None
        check_size(v)
        sizes.append(v)
    if not sizes:
        raise UserError("no cache size given; e.g. --cache-size 0.01,0.1")
    return sizes


# ------------------------------------------------------------- kernels
def policy_kwargs(name: str, next_use: np.ndarray | None) -> dict[str, Any]:
    """Extra constructor arguments a policy needs from the trace (OPT: next use)."""
    return {"next_use": next_use} if _is_opt(name) else {}


def _is_opt(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in {"opt", "belady", "min"}


def warm_up(policies: Sequence[str]) -> None:
    """Compile (or load) every numba kernel the run will use, outside the clock.

    Raises ``UserError`` for an unknown policy name.
    """
    small = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4], np.int64)
    remap_trace(small)  # the direct-table path
    remap_trace(small * (1 << 40))  # the hashed path (a span too wide for a table)
    ids, n = remap_trace(small)
    nxt = next_use_positions(ids) if any(_is_opt(p) for p in policies) else None
    for name in policies:
        policy = make_policy(name, 3, n, **policy_kwargs(name, nxt))
        policy.access(ids)


@dataclass
class RunResult:
    """One policy at one capacity over a trace (the policy object is kept for state_bytes)."""

    policy: Policy
    hits: int
    sim_seconds: float


def replay(policy: Policy, ids: np.ndarray, batch: int | None = None) -> np.ndarray:
    """The one trace-replay loop: ``ids`` through ``policy`` (whole, or ``batch`` at a time) -> hits."""
    if not batch or batch >= ids.size:
        return policy.access(ids)
    hits = np.empty(ids.size, np.bool_)
    for s in range(0, ids.size, batch):
        hits[s : s + batch] = policy.access(ids[s : s + batch])
    return hits


def run_policy(name: str, ids: np.ndarray, n_ids: int, capacity: int,
               next_use: np.ndarray | None = None) -> RunResult:
    """Feed the whole trace of dense ids to one fresh policy; time only the loop."""
    policy = make_policy(name, capacity, n_ids, **policy_kwargs(name, next_use))
    t0 = time.perf_counter()
    hit_mask = replay(policy, ids)
    elapsed = time.perf_counter() - t0
    return RunResult(policy, int(np.count_nonzero(hit_mask)), elapsed)


# ----------------------------------------------------------- simulator
def simulate(
    keys: np.ndarray,
    policies: Sequence[str],
    cache_sizes: Sequence[float],
    *,
    on_row: Callable[[dict], None] | None = None,
    keep: list[RunResult] | None = None,
) -> list[dict]:
    """Run every policy at every cache size over ``keys``; one row each.

    Rows have exactly the keys in ``ROW_KEYS``. ``on_row`` is called as each
    row is finished (for a progress bar); ``keep`` collects the ``RunResult``
    objects (the benchmark reads ``policy.state_bytes()`` from them).
    """
    policies = parse_policies(policies)
    cache_sizes = parse_cache_sizes(cache_sizes)
    keys = np.asarray(keys)
    if keys.ndim != 1 or keys.size == 0:
        raise UserError("the trace is empty")
    # Writable, contiguous int64: the layout the warmed kernels were compiled
    # for (a read-only array would trigger a fresh compile inside the clock).
    keys = np.require(keys, np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
    warm_up(policies)

    t0 = time.perf_counter()
    ids, n = remap_trace(keys)
    remap_seconds = time.perf_counter() - t0

    next_use, next_use_seconds = None, 0.0
    if any(_is_opt(p) for p in policies):
        t0 = time.perf_counter()
        next_use = next_use_positions(ids)
        next_use_seconds = time.perf_counter() - t0

    rows = []
    for name in policies:
        for size in cache_sizes:
            capacity = capacity_for(size, n)
            result = run_policy(name, ids, n, capacity, next_use)
            seconds = result.sim_seconds + remap_seconds + (next_use_seconds if _is_opt(name) else 0.0)
            row = {
                "policy": result.policy.name,
                "cache_size": size,
                "capacity": capacity,
                "requests": int(ids.size),
                "hits": result.hits,
                "hit_ratio": result.hits / ids.size,
                "seconds": seconds,
                "requests_per_second": ids.size / seconds if seconds > 0 else float("inf"),
            }
            rows.append(row)
            if keep is not None:
                keep.append(result)
            if on_row is not None:
                on_row(row)
    return rows
