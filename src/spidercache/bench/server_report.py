"""``spidercache bench server``'s rows as a table (terminal)."""

from __future__ import annotations


def rows_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="cache server vs redis-server")
    for col in ("transport", "api", "value_bytes", "batch", "in_flight", "items/s", "MB/s", "x redis"):
        table.add_column(col, justify="right")
    for r in rows:
        if "items_per_second" not in r:
            continue
        table.add_row(
            r["transport"],
            r["api"],
            str(r["value_bytes"]),
            str(r["batch"]),
            str(r["in_flight"]),
            f"{r['items_per_second']:,.0f}",
            f"{r['mb_per_second']:,.1f}",
            f"{r['ratio_vs_redis']:.2f}",
        )
    return table
