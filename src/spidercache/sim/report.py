"""Show simulator rows: a rich table for people, JSON for machines."""

from __future__ import annotations

import json
from typing import Sequence

from rich.table import Table


def _size_text(size: float, unit: str = "objects") -> str:
    if size <= 1:
        return f"{size:g}"
    return _bytes_text(int(size)) if unit == "bytes" else f"{int(size):,}"


def _bytes_text(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale:,}{unit}"
    return f"{n:,}B"


def rows_table(rows: Sequence[dict], title: str = "Trace simulation") -> Table:
    """One line per (policy, cache size); a byte hit ratio column when the trace has sizes."""
    with_bytes = any(r.get("byte_hit_ratio") is not None for r in rows)
    names = ["policy", "cache size", "capacity", "requests", "hits", "hit ratio"]
    names += ["byte hit ratio"] if with_bytes else []
    names += ["seconds", "M req/s"]
    table = Table(title=title)
    for name in names:
        table.add_column(name, justify="left" if name == "policy" else "right")
    for r in rows:
        unit = r.get("unit", "objects")
        cap = _bytes_text(r["capacity"]) if unit == "bytes" else f"{r['capacity']:,}"
        cells = [r["policy"], _size_text(r["cache_size"], unit), cap, f"{r['requests']:,}",
                 f"{r['hits']:,}", f"{r['hit_ratio']:.4f}"]
        if with_bytes:
            cells.append(f"{r['byte_hit_ratio']:.4f}" if r.get("byte_hit_ratio") is not None else "")
        cells += [f"{r['seconds']:.3f}", f"{r['requests_per_second'] / 1e6:.2f}"]
        table.add_row(*cells)
    return table


def rows_json(rows: Sequence[dict]) -> str:
    """The rows as a JSON list (keys exactly as the simulator returns them)."""
    return json.dumps(list(rows), indent=2)


# ------------------------------------------------- bench sim (vs libCacheSim)
def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "SHORT")


def _compare_cells(row) -> list[str]:
    checks = row.checks()
    tol = "" if checks["hit_ratio"] is None else f" ({_mark(checks['hit_ratio'])})"
    speed = "" if checks["speed"] is None else f" ({_mark(checks['speed'])})"
    return [
        row.policy, _size_text(row.cache_size), f"{row.capacity:,}",
        f"{row.ours_hit_ratio:.4f}", f"{row.lcs_hit_ratio:.4f}", f"{row.delta:.4f}{tol}",
        f"{row.ours_rps / 1e6:.2f}", f"{row.lcs_rps / 1e6:.2f}", f"{row.speedup:.2f}x{speed}",
        f"{row.state_bytes_per_key:.1f} ({_mark(checks['memory'])})",
    ]


COMPARE_HEADERS = [
    "policy", "cache size", "capacity", "hit ratio (ours)", "hit ratio (libCacheSim)", "\\|Δ\\|",
    "M req/s (ours)", "M req/s (libCacheSim)", "speed ratio", "state B/key",
]
# Short headers for the terminal, where the table must fit about 100 columns.
_SHORT_HEADERS = [
    "policy", "size", "capacity", "hit ours", "hit lcs", "|Δ|",
    "Mreq/s ours", "Mreq/s lcs", "ours/lcs", "B/key",
]


def compare_table(result, title: str = "Spider Cache vs libCacheSim") -> Table:
    table = Table(title=title)
    for name in _SHORT_HEADERS:
        table.add_column(name, justify="left" if name == "policy" else "right")
    for row in result.rows:
        table.add_row(*_compare_cells(row))
    return table


def compare_markdown(result, command: str) -> str:
    """The docs/bench/sim.md page: the command, the table, how it was timed."""
    t = result.trace
    env = result.environment
    lines = [
        "# Trace simulator vs libCacheSim",
        "",
        "Command (run from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"Trace: {_trace_text(t)}; {t['requests']:,} requests over {t['distinct_keys']:,} distinct keys.",
        f"Machine: {env.get('cpus')} CPUs ({env.get('machine')}), Python {env.get('python')}, "
        f"numpy {env.get('numpy')}, libCacheSim (PyPI libcachesim) {env.get('libcachesim')}; "
        f"each time is the fastest of {env.get('repeat')} run(s), ours and libCacheSim's interleaved.",
        "",
        "| " + " | ".join(COMPARE_HEADERS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(COMPARE_HEADERS) - 1)) + "|",
    ]
    for row in result.rows:
        lines.append("| " + " | ".join(_compare_cells(row)) + " |")
    lines += [
        "",
        "Targets (issue 3): |Δ| ≤ 0.001 for LRU, FIFO, OPT and ≤ 0.01 for LFU, ARC, S3-FIFO; "
        "speed ratio ≥ 3× for LRU and OPT; ≤ 64 bytes of policy state per distinct key. "
        "`ok` / `SHORT` are computed from the measured numbers in this run.",
        "",
        "What is timed:",
        "",
        "- ours: what `spidercache sim` reports as `seconds`: remapping keys to dense ids, "
        "next-use positions (OPT only) and the simulation; numba compile time is excluded "
        "(every kernel is warmed on a tiny trace first).",
        "- libCacheSim: `cache.process_trace(reader)` over an oracleGeneral binary trace held in "
        "RAM (`/dev/shm`): its C loop reads each record, hashes the key and runs the policy. "
        "Not timed: writing that file and the next-access times Belady reads from it "
        "(precomputed in its trace format, whereas our OPT pays for its next-use pass), and "
        "building the cache. Its hash table is sized to the cache (hashpower = bits of the "
        "capacity, at least 12), which is faster than its 2^24 default on these traces.",
        "- state B/key: `policy.state_bytes()` divided by the number of distinct keys.",
        "",
    ]
    return "\n".join(lines)


def _trace_text(t: dict) -> str:
    if t.get("kind") == "zipf":
        return f"Zipf alpha {t['alpha']}, {t['keys']:,} keys, seed {t['seed']}"
    return f"file {t.get('path', '?')}"
