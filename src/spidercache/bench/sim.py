"""``bench sim``: our simulator against libCacheSim, same trace, same run.

``run(**opts) -> list[dict]``: one row per (policy, cache size) with both hit
ratios (and byte hit ratios with sizes), their difference, both times and their
ratio, the bytes of policy state per distinct key; then one ``sweep`` row: the
whole sweep end to end, ours (one ``simulate`` call: remap once, every
simulation, on ``workers`` processes) against libCacheSim running the same
simulations one after the other.

The trace: a file (``trace=``), a generated block-I/O trace expanded into
512-byte sectors (``kind="block"``, the default: see ``sim.blocks``; no real
block trace can be downloaded here) or a Zipf trace (``kind="zipf"``).

How each side is timed (each gets the trace in memory in the form it needs;
only the work after that is on the clock; every time is the median of
``repeat`` runs, ours and libCacheSim's interleaved):

* ours, per row: the simulation's own time plus its share of the remap (the
  remap's time divided over the rows of the sweep) and, for OPT, its share of
  the next-use pass. Numba compile time is excluded (kernels are warmed first).
* libCacheSim: ``cache.process_trace(reader)`` over an oracleGeneral binary
  trace in a RAM folder (``/dev/shm``): its C loop reads each record, hashes the
  key, runs the policy. Not timed: writing the file, the next-access times
  Belady reads from it (precomputed in its format, while our OPT pays for its
  next-use pass), building the cache. Its hash table is sized to the cache
  (``hashpower`` = bits of the capacity in objects, 12 to 24), which was
  1.5-3x faster than its 2^24 default on these traces.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..checks import at_least
from ..engine.ids import remap_trace
from ..engine.nextuse import next_use_positions
from ..errors import UserError
from ..sim.blocks import block_trace
from ..sim.formats import Trace, write_oracle_general
from ..sim.run import footprint_bytes, is_opt
from ..sim.simulate import parse_cache_sizes, parse_policies, simulate, warm_up
from ..sim.traces import load_trace, zipf

# Our policy name -> libCacheSim class name.
LIBCACHESIM_NAMES = {
    "lru": "LRU",
    "fifo": "FIFO",
    "lfu": "LFU",
    "arc": "ARC",
    "s3fifo": "S3FIFO",
    "opt": "Belady",
    "sieve": "Sieve",
    "clock": "Clock",
    "twoq": "TwoQ",
    "gdsf": "GDSF",
    "wtinylfu": "WTinyLFU",
    "lecar": "LeCaR",
    "lhd": "LHD",
    "cacheus": "Cacheus",
}
# The figures: |hit ratio difference| allowed, speed ratio wanted.
HIT_RATIO_TOLERANCE = {
    "lru": 0.001,
    "fifo": 0.001,
    "arc": 0.001,
    "opt": 0.001,
    "sieve": 0.001,
    "clock": 0.001,
    "twoq": 0.001,
    "gdsf": 0.001,
    "wtinylfu": 0.001,
    "lfu": 0.01,
    "s3fifo": 0.01,
    "lecar": 0.01,  # random draws: libCacheSim's generator is process-wide
    # random draws too: LHD and Cacheus equal libCacheSim's first run in a fresh process miss for miss
    # (pinned in tests/sim/test_lhd_cacheus.py), but here libCacheSim's runs follow one another in one
    # process, each starting where the last left its generator
    "lhd": 0.01,
    "cacheus": 0.01,
}
SPEEDUP_TARGET = {"lru": 3.0, "opt": 3.0, "sweep": 3.0}
BYTES_PER_KEY_TARGET = 64.0


def _import_libcachesim():
    try:
        import libcachesim
    except ImportError:
        raise UserError(
            "bench sim needs libCacheSim: pip install libcachesim (it is in the test extras)"
        ) from None
    return libcachesim


def make_trace(
    trace=None,
    column=None,
    size_column=None,
    fmt=None,
    kind="block",
    alpha=1.0,
    keys=1_000_000,
    requests=8_200_000,
    seed=0,
) -> tuple[Trace, str]:
    """The benchmark's trace and a one-line description of it."""
    if trace is not None:
        return load_trace(trace, column, size_column, fmt), f"file {trace}"
    at_least(1, flag=True, requests=requests)
    if kind == "block":
        return block_trace(requests, seed), f"generated block-I/O trace in 512-byte sectors, seed {seed}"
    if kind == "zipf":
        return Trace(zipf(alpha, keys, requests, seed)), f"Zipf alpha {alpha}, {keys:,} keys, seed {seed}"
    raise UserError(f"unknown trace kind {kind!r}; choose block or zipf")


def _hashpower(capacity_objects: int) -> int:
    return min(24, max(12, int(capacity_objects).bit_length()))


def _lcs_run(lcs, reader, policy: str, capacity: int, objects: int) -> tuple[float, float, float]:
    """(hit ratio, byte hit ratio, seconds) of one libCacheSim run; only process_trace is timed."""
    cache = getattr(lcs, LIBCACHESIM_NAMES[policy])(capacity, hashpower=_hashpower(objects))
    t0 = time.perf_counter()
    miss, byte_miss = cache.process_trace(reader)
    return 1.0 - miss, 1.0 - byte_miss, time.perf_counter() - t0


def run(
    trace=None,
    column=None,
    size_column=None,
    fmt=None,
    kind="block",
    alpha=1.0,
    keys=1_000_000,
    requests=8_200_000,
    seed=0,
    policy="lru,fifo,lfu,arc,s3fifo,opt",
    cache_size="0.001,0.01,0.1",
    by_bytes=False,
    repeat=3,
    workers=0,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Rows comparing ours with libCacheSim on one trace (see the module docstring)."""
    lcs = _import_libcachesim()
    policies = parse_policies(policy)
    specs = parse_cache_sizes(cache_size, by_bytes)
    unknown = [p for p in policies if (("opt" if is_opt(p) else p) not in LIBCACHESIM_NAMES)]
    if unknown:
        raise UserError(
            f"no libCacheSim counterpart for {', '.join(unknown)}; choose from {', '.join(LIBCACHESIM_NAMES)}"
        )
    at_least(1, flag=True, repeat=repeat)
    at_least(0, flag=True, workers=workers)  # 0: one per core
    in_bytes = specs[0][1]
    data, described = make_trace(trace, column, size_column, fmt, kind, alpha, keys, requests, seed)
    sizes = data.sizes if in_bytes else None  # object counts: both sides count every object as 1
    if data.keys.size >= 2**32:
        raise UserError("libCacheSim's oracleGeneral format holds fewer than 2**32 requests")
    warm_up(policies, in_bytes)
    ids, n = remap_trace(data.keys)
    footprint = footprint_bytes(ids, sizes, n) if in_bytes else n
    mean_size = footprint / max(n, 1)
    workers = workers or os.cpu_count() or 1
    common = {
        "trace": described,
        "requests": int(data.keys.size),
        "distinct_keys": int(n),
        "libcachesim": getattr(lcs, "__version__", "?"),
        "cpus": os.cpu_count(),
        "workers": workers,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeat": repeat,
    }

    ours_runs, lcs_times, lcs_hits, sweep_ours, sweep_lcs = _measure(
        lcs, data, ids, sizes, policies, cache_size, by_bytes, workers, repeat, mean_size
    )
    out = [_row(common, ours_runs, i, lcs_times, lcs_hits, n) for i in range(len(ours_runs[0]))]
    for row in out:
        if on_row is not None:
            on_row(row)
    sweep = dict(
        common,
        policy="sweep",
        cache_size=None,
        rows=len(out),
        seconds=statistics.median(sweep_ours),
        libcachesim_seconds=statistics.median(sweep_lcs),
    )
    sweep["speed_ratio"] = sweep["libcachesim_seconds"] / sweep["seconds"]
    sweep["speed_target"] = SPEEDUP_TARGET["sweep"]
    sweep["meets"] = {"speed": sweep["speed_ratio"] >= SPEEDUP_TARGET["sweep"]}
    if on_row is not None:
        on_row(sweep)
    return out + [sweep]


def _measure(lcs, data, ids, sizes, policies, cache_size, by_bytes, workers, repeat, mean_size):
    """``repeat`` interleaved rounds: our whole sweep, then libCacheSim's runs one by one."""
    in_bytes = sizes is not None
    ours_runs, lcs_times, lcs_hits, sweep_ours, sweep_lcs = [], {}, {}, [], []
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="spidercache-bench-", dir=shm) as tmp:
        path = Path(tmp) / "trace.oracleGeneral"
        nu = next_use_positions(ids)
        write_oracle_general(path, data.keys, sizes, np.where(nu == np.iinfo(np.int64).max, -1, nu))
        del nu
        reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
        for _ in range(repeat):
            t0 = time.perf_counter()
            rows = simulate(data.keys, policies, cache_size, sizes=sizes, by_bytes=by_bytes, workers=workers)
            sweep_ours.append(time.perf_counter() - t0)
            ours_runs.append(rows)
            total = 0.0
            for row in rows:
                key = (row["policy"], row["cache_size"])
                objects = int(row["capacity"] / mean_size) if in_bytes else row["capacity"]
                hr, bhr, secs = _lcs_run(lcs, reader, row["policy"], min(row["capacity"], 2**62), objects)
                lcs_times.setdefault(key, []).append(secs)
                lcs_hits[key] = (hr, bhr)
                total += secs
            sweep_lcs.append(total)
    return ours_runs, lcs_times, lcs_hits, sweep_ours, sweep_lcs


def _row(common, ours_runs, i, lcs_times, lcs_hits, n) -> dict:
    first = ours_runs[0][i]
    key = (first["policy"], first["cache_size"])
    seconds = statistics.median(r[i]["seconds"] for r in ours_runs)
    lcs_seconds = statistics.median(lcs_times[key])
    hr, bhr = lcs_hits[key]
    tol = HIT_RATIO_TOLERANCE.get(first["policy"])
    delta = abs(first["hit_ratio"] - hr)
    byte_delta = None if first["byte_hit_ratio"] is None else abs(first["byte_hit_ratio"] - bhr)
    target = SPEEDUP_TARGET.get(first["policy"])
    per_key = first["state_bytes"] / max(n, 1)
    row = dict(
        common,
        policy=first["policy"],
        cache_size=first["cache_size"],
        unit=first["unit"],
        capacity=first["capacity"],
        hit_ratio=first["hit_ratio"],
        libcachesim_hit_ratio=hr,
        abs_delta=delta,
        byte_hit_ratio=first["byte_hit_ratio"],
        libcachesim_byte_hit_ratio=bhr if first["byte_hit_ratio"] is not None else None,
        byte_abs_delta=byte_delta,
        tolerance=tol,
        seconds=seconds,
        sim_seconds=statistics.median(r[i]["sim_seconds"] for r in ours_runs),
        libcachesim_seconds=lcs_seconds,
        speed_ratio=lcs_seconds / seconds,
        speed_target=target,
        state_bytes_per_key=per_key,
    )
    row["meets"] = {
        "hit_ratio": None if tol is None else delta <= tol and (byte_delta is None or byte_delta <= tol),
        "speed": None if target is None else row["speed_ratio"] >= target,
        "memory": per_key <= BYTES_PER_KEY_TARGET,
    }
    return row


# ------------------------------------------ what `spidercache bench sim` reads (bench/runner.py)
DOCS = "docs/bench/sim.md"
OPTION_NAMES = {"fmt": "--format", "by_bytes": "--bytes"}
HELP = {
    "trace": "Trace file instead of a generated trace.",
    "column": "CSV column with the keys (name or 0-based index).",
    "size_column": "CSV column with the object sizes.",
    "fmt": "Trace format when the name does not tell it.",
    "kind": "Generated trace: block (block I/O in 512-byte sectors) or zipf.",
    "alpha": "Zipf exponent of a generated Zipf trace.",
    "keys": "Distinct keys of a generated Zipf trace.",
    "requests": "Length of the generated trace.",
    "seed": "Seed of the generated trace.",
    "policy": "Comma-separated policy names.",
    "cache_size": "Comma-separated cache sizes (<= 1: a fraction).",
    "by_bytes": "Byte-sized caches (plain numbers are bytes).",
    "repeat": "Runs per measurement; the median is kept.",
    "workers": "Our worker processes (0: one per core).",
}


def progress(row: dict) -> str:
    return f"  {row['policy']:7s} {row['cache_size'] or '':<8}: speed ratio {row['speed_ratio']:.2f}x"


def table(rows: list[dict]):
    from .sim_report import compare_table

    return compare_table(rows)


def markdown(rows: list[dict], command: str, load: str = "") -> str:
    from .sim_report import compare_markdown

    return compare_markdown(rows, command, load)
