"""The trace simulator: a loop over a trace, through the engine's own policies.

``simulate(keys, ["lru", "opt"], [0.01, 0.1])`` remaps the keys to dense ids
once, builds each policy with ``make_policy`` and feeds it the whole trace in one
``access`` call: the very kernels a live ``Cache`` runs, never a second
implementation. With ``sizes`` (bytes per request) and byte capacities
(``"1GiB"``, ``"512MiB"``, or any size with ``by_bytes=True``) the policies run
byte-sized, with libCacheSim's definition (see ``engine.policies.base``); every
row then has a byte hit ratio too.

Capacities follow ``engine.capacity.capacity_for``: a size <= 1 is a fraction of
the distinct keys (of the trace's footprint in bytes, for a byte capacity),
rounded to the nearest integer; a whole number above 1 is itself. A capacity
above the footprint is fine (everything fits) and allocates nothing extra.

What ``seconds`` counts: everything after the trace is in memory. The remap to
dense ids (and, for OPT, the next-use pass) is done once per sweep; each row is
charged its share of it (the time divided over the rows that used it) on top
of its own simulation, which ``sim_seconds`` gives alone. Numba compile time is
not counted: ``warm_up`` runs every kernel on a tiny trace first (and checks the
policy names, so an unknown policy fails before any work is done).

``workers > 1`` runs the simulations of a sweep in forked processes (traces of
at least ``PARALLEL_MIN_REQUESTS`` requests); the trace is shared with them
copy-on-write, never pickled.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Callable, Sequence

import numpy as np

from ..checks import at_least
from ..engine.capacity import capacity_for, parse_size
from ..engine.ids import remap_trace
from ..engine.nextuse import next_use_positions
from ..engine.policies import make_policy
from ..errors import UserError
from .run import (
    PolicyRun,
    footprint_bytes,
    is_opt,
    keys_by_id,
    policy_kwargs,
    run_policy,
    wants_keys,
)

ROW_KEYS = (
    "policy",
    "cache_size",
    "unit",
    "capacity",
    "requests",
    "hits",
    "hit_ratio",
    "byte_hit_ratio",
    "seconds",
    "sim_seconds",
    "requests_per_second",
    "state_bytes",
)


# ------------------------------------------------------------ arguments
def parse_policies(text: str | Sequence[str]) -> list[str]:
    """``"lru,fifo"`` -> ``["lru", "fifo"]`` (names are checked by ``warm_up``)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip().lower() for s in items if s.strip()]
    if not names:
        raise UserError("no policy given; e.g. --policy lru,fifo,lfu,arc,s3fifo,opt")
    return names


def parse_cache_sizes(text: str | Sequence, by_bytes: bool = False) -> list[tuple[float, bool]]:
    """``"0.01,5000,1GiB"`` -> ``[(0.01, False), (5000, False), (1073741824, True)]``.

    The flag says the size is in bytes: it has a unit, or ``by_bytes`` is set.
    One sweep is all objects or all bytes.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if str(item).strip():
            value, in_bytes = parse_size(str(item))
            out.append((value, in_bytes or by_bytes))
    if not out:
        raise UserError("no cache size given; e.g. --cache-size 0.01,0.1 or 1GiB,4GiB")
    if len({b for _, b in out}) > 1:
        raise UserError(
            "cache sizes mix bytes (a unit, e.g. 1GiB) and objects; use one kind per run "
            "(--bytes makes plain numbers bytes)"
        )
    return out


def warm_up(policies: Sequence[str], by_bytes: bool = False) -> None:
    """Compile (or load) every numba kernel the run will use, outside the clock.

    Raises ``UserError`` for an unknown policy name or one that has no byte-sized form.
    """
    small = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4], np.int64)
    remap_trace(small)  # the direct-table path
    remap_trace(small * (1 << 40))  # the hashed path (a span too wide for a table)
    ids, n = remap_trace(small)
    sizes = (ids % 3 + 1).astype(np.int64)
    footprint_bytes(ids, sizes, n)
    nxt = next_use_positions(ids) if any(is_opt(p) for p in policies) else None
    for name in policies:
        with warnings.catch_warnings():  # a policy's warning about capacity 3 is not the user's
            warnings.simplefilter("ignore", RuntimeWarning)
            policy = make_policy(name, 3, n, **policy_kwargs(name, nxt))
        policy.access(ids)
        if by_bytes:
            if not policy.supports_sizes:
                from ..engine.policies import ENGINE_POLICIES, policy_class

                sized = ", ".join(n for n in ENGINE_POLICIES if policy_class(n).supports_sizes)
                raise UserError(
                    f"policy {name!r} does not run with object sizes yet; byte capacities work with {sized}"
                )
            make_policy(name, 5, n, by_bytes=True, **policy_kwargs(name, nxt)).access(ids, sizes=sizes)


# ----------------------------------------------------------- simulator
def simulate(
    keys: np.ndarray,
    policies: Sequence[str],
    cache_sizes: Sequence,
    *,
    sizes: np.ndarray | None = None,
    by_bytes: bool = False,
    workers: int = 1,
    dense: tuple[np.ndarray, int] | None = None,
    remap_seconds: float = 0.0,
    id_keys: np.ndarray | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run every policy at every cache size over ``keys``; one row each (keys ``ROW_KEYS``).

    ``sizes``: bytes per request (byte hit ratios; byte capacities need them).
    ``dense``: ``(ids, n)`` already remapped (``sim.dense.load_dense``): no remap is
    done; ``remap_seconds`` (the time it took when it was done) is charged instead.
    ``id_keys``: the key each dense id stands for (W-TinyLFU hashes keys, as
    libCacheSim); made from ``keys`` when not given, unless ``dense`` is.
    ``on_row`` is called as each row is finished (for a progress bar).
    """
    policies = parse_policies(policies)
    specs = parse_cache_sizes(cache_sizes, by_bytes)
    in_bytes = specs[0][1]
    keys, sizes = _checked(keys, sizes, in_bytes, workers)
    keys, sizes, dense = _without_zero_sizes(keys, sizes, dense)
    warm_up(policies, in_bytes)

    t0 = time.perf_counter()
    if dense is None:
        # Writable, contiguous: the layout the warmed kernels were compiled for.
        keys = keys.view(np.int64) if keys.dtype == np.uint64 else keys
        ids, n = remap_trace(np.require(keys, np.int64, ["C_CONTIGUOUS", "WRITEABLE"]))
    else:
        ids, n = np.require(dense[0], np.int64, ["C_CONTIGUOUS", "WRITEABLE"]), int(dense[1])
    footprint = footprint_bytes(ids, sizes, n) if sizes is not None else n
    remap_seconds = time.perf_counter() - t0 + (remap_seconds if dense is not None else 0.0)

    next_use, next_use_seconds = None, 0.0
    if any(is_opt(p) for p in policies):
        t0 = time.perf_counter()
        next_use = next_use_positions(ids)
        next_use_seconds = time.perf_counter() - t0

    keys_seconds = 0.0
    if id_keys is None and dense is None and any(wants_keys(p) for p in policies):
        t0 = time.perf_counter()
        id_keys = keys_by_id(keys, ids, n)
        keys_seconds = time.perf_counter() - t0

    # Nothing resident can exceed n objects or every byte requested: a larger
    # capacity is built at that bound (same hits, no memory for the excess).
    bound = max(int(sizes.sum()), 1) if in_bytes else n
    runs = []
    for name in policies:
        for size, _ in specs:
            # parse_size gives a whole number (int) for a size with a unit: "1B" is one byte, not
            # the fraction 1 (all of it) that a plain "1" (a float) is
            exact = in_bytes and isinstance(size, int)
            capacity = int(size) if exact else capacity_for(size, footprint if in_bytes else n)
            runs.append(PolicyRun(name, size, capacity, min(capacity, bound), in_bytes))
    n_opt = sum(is_opt(r.policy) for r in runs)
    n_keyed = sum(wants_keys(r.policy) for r in runs)
    results = _run_all(runs, ids, n, sizes, next_use, workers, id_keys)
    rows = []
    for run, res in zip(runs, results):
        share = remap_seconds / len(runs) + (next_use_seconds / n_opt if is_opt(run.policy) else 0.0)
        share += keys_seconds / n_keyed if wants_keys(run.policy) else 0.0
        rows.append(_row(run, res, ids.size, sizes, res["sim_seconds"] + share))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def _without_zero_sizes(keys, sizes, dense):
    """libCacheSim's readers skip zero-size requests (neither counted nor cached): so do we, or
    every figure of a trace that has them differs from its."""
    if sizes is None or (sizes > 0).all():
        return keys, sizes, dense
    keep = sizes > 0
    if not keep.any():
        raise UserError("every request of the trace has size 0 (libCacheSim skips those): nothing left")
    dense = None if dense is None else (np.ascontiguousarray(dense[0][keep]), dense[1])
    return keys[keep], np.ascontiguousarray(sizes[keep]), dense


def _checked(keys, sizes, in_bytes: bool, workers: int):
    """The trace as arrays the kernels take; ``UserError`` for what cannot be simulated."""
    keys = np.asarray(keys)
    if keys.ndim != 1 or keys.size == 0:
        raise UserError("the trace is empty")
    if sizes is not None:
        sizes = np.require(sizes, np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
        if sizes.shape != keys.shape:
            raise UserError(f"the trace has {keys.size:,} keys but {sizes.size:,} sizes")
    if in_bytes and sizes is None:
        raise UserError(
            "byte capacities need object sizes: a CSV with --size-column, an "
            "oracleGeneral or vscsi trace, or NAME.sizes.npy beside NAME.npy"
        )
    at_least(1, workers=workers)
    return keys, sizes


def _row(run: PolicyRun, res: dict, requests: int, sizes, seconds: float) -> dict:
    return {
        "policy": res["policy"],
        "cache_size": run.size,
        "unit": "bytes" if run.by_bytes else "objects",
        "capacity": run.capacity,
        "requests": int(requests),
        "hits": res["hits"],
        "hit_ratio": res["hits"] / requests,
        "byte_hit_ratio": None if sizes is None else res["bytes_hit"] / max(int(sizes.sum()), 1),
        "seconds": seconds,
        "sim_seconds": res["sim_seconds"],
        "requests_per_second": requests / seconds if seconds > 0 else float("inf"),
        "state_bytes": res["state_bytes"],
    }


# The sweep's shared inputs, set before forking so the workers inherit them.
_SHARED: dict = {}


def _run_index(i: int) -> dict:
    s = _SHARED
    return run_policy(s["runs"][i], s["ids"], s["n"], s["sizes"], s["next_use"], s["id_keys"])


# Below this many requests per simulation, forking costs more than it saves.
PARALLEL_MIN_REQUESTS = 1_000_000


def _run_all(runs, ids, n, sizes, next_use, workers, id_keys) -> list[dict]:
    workers = min(workers, len(runs), os.cpu_count() or 1)
    if ids.size < PARALLEL_MIN_REQUESTS:
        workers = 1
    if workers <= 1:
        return [run_policy(r, ids, n, sizes, next_use, id_keys) for r in runs]
    import multiprocessing as mp

    _SHARED.update(runs=runs, ids=ids, n=n, sizes=sizes, next_use=next_use, id_keys=id_keys)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            # longest first (OPT, then the rest), so the last worker is not left with a long one
            order = sorted(range(len(runs)), key=lambda i: not is_opt(runs[i].policy))
            done = dict(zip(order, pool.map(_run_index, order, chunksize=1)))
    finally:
        _SHARED.clear()
    return [done[i] for i in range(len(runs))]
