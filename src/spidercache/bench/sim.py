"""`spidercache bench sim`: the same trace through libCacheSim and Spider Cache.

Per policy and cache size: hit ratios of both, |Δ|, requests/s of both, their
ratio, and the policy's state bytes per key. The trace is a generated Zipf
trace unless ``trace`` names a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..sim.compare import CompareResult, CompareRow, compare
from ..sim.report import compare_markdown, compare_table
from ..sim.simulate import parse_cache_sizes, parse_policies
from ..sim.traces import read_trace, zipf
from .runner import Rows

DOCS = "docs/bench/sim.md"
HELP = {
    "trace": "Trace file to use instead of the generated Zipf trace.",
    "column": "CSV column with the keys (name or 0-based index).",
    "alpha": "Zipf exponent of the generated trace.",
    "keys": "Distinct keys of the generated trace.",
    "requests": "Length of the generated trace.",
    "seed": "Seed of the generated trace.",
    "policy": "Comma-separated policy names.",
    "cache_size": "Comma-separated cache sizes (<= 1: fraction of distinct keys).",
    "repeat": "Runs per measurement; the fastest is kept.",
}


def run(
    trace: Optional[Path] = None,
    column: Optional[str] = None,
    alpha: float = 1.0,
    keys: int = 1_000_000,
    requests: int = 10_000_000,
    seed: int = 0,
    policy: str = "lru,fifo,lfu,arc,s3fifo,opt",
    cache_size: str = "0.01,0.1",
    repeat: int = 3,
    log: Callable[[str], None] = print,
) -> Rows:
    """Same trace through libCacheSim and Spider Cache: hit ratios, |Δ|, requests/s, bytes/key."""
    policies = parse_policies(policy)
    sizes = parse_cache_sizes(cache_size)
    if trace is not None:
        data = read_trace(trace, column)
        info = {"kind": "file", "path": str(trace)}
    else:
        data = zipf(alpha, keys, requests, seed)
        log(f"generated Zipf trace: alpha {alpha}, {keys:,} keys, {requests:,} requests, seed {seed}")
        info = {"kind": "zipf", "alpha": alpha, "keys": keys, "seed": seed}
    result = compare(
        data,
        policies,
        sizes,
        repeat=repeat,
        trace_info=info,
        on_row=lambda r: log(
            f"  {r.policy:7s} size {r.cache_size:g}: |Δ| {r.delta:.4f}, speed ratio {r.speedup:.2f}x"
        ),
    )
    d = result.as_dict()
    return Rows(d["rows"], {"trace": d["trace"], "environment": d["environment"]})


def _result(rows: Rows) -> CompareResult:
    return CompareResult(rows.info["trace"], [_row(r) for r in rows], rows.info["environment"])


def _row(r: dict) -> CompareRow:
    return CompareRow(
        r["policy"],
        r["cache_size"],
        r["capacity"],
        r["requests"],
        r["hit_ratio"],
        r["libcachesim_hit_ratio"],
        r["seconds"],
        r["libcachesim_seconds"],
        r["state_bytes_per_key"],
    )


def table(rows: Rows):
    return compare_table(_result(rows))


def markdown(rows: Rows, command: str) -> str:
    return compare_markdown(_result(rows), command)
