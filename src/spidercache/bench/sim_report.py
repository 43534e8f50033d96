"""Show ``bench sim`` rows: a rich table for the terminal, the docs/bench/sim.md page."""

from __future__ import annotations

from typing import Sequence

from rich.table import Table

from ..sim.report import _size_text


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "SHORT")


def _cells(row: dict) -> list[str]:
    meets = row["meets"]
    if row["policy"] == "sweep":
        return [
            "sweep (all rows)",
            "",
            "",
            "",
            "",
            "",
            f"{row['seconds']:.3f}",
            f"{row['libcachesim_seconds']:.3f}",
            f"{row['speed_ratio']:.2f}x ({_mark(meets['speed'])})",
            "",
        ]
    tol = "" if meets["hit_ratio"] is None else f" ({_mark(meets['hit_ratio'])})"
    speed = "" if meets["speed"] is None else f" ({_mark(meets['speed'])})"
    hit = f"{row['hit_ratio']:.4f} / {row['libcachesim_hit_ratio']:.4f}"
    byte = (
        ""
        if row["byte_hit_ratio"] is None
        else f"{row['byte_hit_ratio']:.4f} / {row['libcachesim_byte_hit_ratio']:.4f}"
    )
    delta = max(row["abs_delta"], row["byte_abs_delta"] or 0.0)
    return [
        row["policy"],
        _size_text(row["cache_size"], row["unit"]),
        f"{row['capacity']:,}",
        hit,
        byte,
        f"{delta:.4f}{tol}",
        f"{row['seconds']:.3f}",
        f"{row['libcachesim_seconds']:.3f}",
        f"{row['speed_ratio']:.2f}x{speed}",
        f"{row['state_bytes_per_key']:.1f} ({_mark(meets['memory'])})",
    ]


HEADERS = [
    "policy",
    "cache size",
    "capacity",
    "hit ratio ours / libCacheSim",
    "byte hit ratio ours / libCacheSim",
    "\\|Δ\\|",
    "seconds (ours)",
    "seconds (libCacheSim)",
    "speed ratio",
    "state B/key",
]
_SHORT = [
    "policy",
    "size",
    "capacity",
    "hit ours/lcs",
    "byte hit ours/lcs",
    "|Δ|",
    "s ours",
    "s lcs",
    "lcs/ours",
    "B/key",
]


def compare_table(rows: Sequence[dict], title: str = "Spider Cache vs libCacheSim") -> Table:
    table = Table(title=title)
    for name in _SHORT:
        table.add_column(name, justify="left" if name == "policy" else "right")
    for row in rows:
        table.add_row(*_cells(row))
    return table


def compare_markdown(rows: Sequence[dict], command: str, load: str = "") -> str:
    """The docs/bench/sim.md page: the command, the table, how it was timed."""
    t = rows[0]
    lines = [
        "# Trace simulator vs libCacheSim",
        "",
        "Command (run from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"Trace: {t['trace']}; {t['requests']:,} requests over {t['distinct_keys']:,} distinct keys.",
        f"Machine: {t['cpus']} CPUs ({t['machine']}), Python {t['python']}, libCacheSim (PyPI libcachesim) "
        f"{t['libcachesim']}; ours on {t['workers']} worker process(es); every time is the median of "
        f"{t['repeat']} run(s), ours and libCacheSim's interleaved"
        + (f"; load before the run: {load}" if load else "")
        + ".",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += [
        "",
        "Targets (issue 16): |Δ| ≤ 0.001 for LRU, FIFO, ARC, OPT, SIEVE, CLOCK, 2Q, GDSF, W-TinyLFU and "
        "≤ 0.01 for LFU, S3-FIFO, LeCaR, LHD, Cacheus (byte hit ratio too, with sizes); "
        "speed ratio ≥ 3× for the whole "
        "sweep and for the LRU and OPT rows; ≤ 64 bytes of policy state per distinct key. `ok` / `SHORT` are "
        "computed from the numbers measured in this run.",
        "",
        "What is timed:",
        "",
        "- ours, per row: the simulation plus its share of the key remap (the remap's time divided over the "
        "rows of the sweep) and, for OPT, its share of the next-use pass; numba compile time is excluded.",
        "- ours, sweep: one `simulate` call end to end (remap once, every simulation, on the worker "
        "processes).",
        "- libCacheSim: `cache.process_trace(reader)` over an oracleGeneral trace in RAM (`/dev/shm`); its "
        "sweep is the sum of its runs, one after the other. Not timed: writing that file and the next-access "
        "times Belady reads from it, building the cache. Its hash table is sized to the cache (hashpower = "
        "bits of the capacity in objects, 12 to 24).",
        "- state B/key: `policy.state_bytes()` divided by the number of distinct keys.",
        "",
    ]
    return "\n".join(lines)
