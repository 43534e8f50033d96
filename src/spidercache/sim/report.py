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
        cells = [
            r["policy"],
            _size_text(r["cache_size"], unit),
            cap,
            f"{r['requests']:,}",
            f"{r['hits']:,}",
            f"{r['hit_ratio']:.4f}",
        ]
        if with_bytes:
            cells.append(f"{r['byte_hit_ratio']:.4f}" if r.get("byte_hit_ratio") is not None else "")
        cells += [f"{r['seconds']:.3f}", f"{r['requests_per_second'] / 1e6:.2f}"]
        table.add_row(*cells)
    return table


def rows_json(rows: Sequence[dict]) -> str:
    """The rows as a JSON list (keys exactly as the simulator returns them)."""
    return json.dumps(list(rows), indent=2)
