"""``spidercache bench server``'s rows as a table (terminal) and as markdown (``--docs``)."""

from __future__ import annotations

MB = 1 << 20


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


def format_markdown(rows: list[dict]) -> str:
    lines = [
        "| transport | api | value bytes | batch | in flight | items/s | MB/s | x redis |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "items_per_second" in r:
            lines.append(
                f"| {r['transport']} | {r['api']} | {r['value_bytes']} | {r['batch']} | {r['in_flight']} | "
                f"{r['items_per_second']:,.0f} | {r['mb_per_second']:,.1f} | {r['ratio_vs_redis']:.2f} |"
            )
    for r in rows:
        if r.get("api") == "rss":
            lines.append(
                f"\nServer RSS: budget {r['budget_bytes'] / MB:,.0f} MB, wrote "
                f"{r['written_bytes'] / MB:,.0f} MB; "
                f"peak RSS {r['peak_rss_bytes'] / MB:,.0f} MB = {r['peak_rss_over_budget']:.3f}x budget."
            )
        if r.get("api") == "put-burst":
            lines.append(
                f"\nConcurrent writers: {r['clients']} writers of {r['batch_bytes'] / MB:,.0f} MB batches "
                "into "
                f"{r['budget_bytes'] / MB:,.0f} MB; peak RSS {r['peak_rss_over_budget']:.3f}x budget, "
                f"{r['writer_errors']} writer errors."
            )
        if r.get("api") == "spill-rss":
            lines.append(
                f"\nSpilling: {r['written_bytes'] / MB:,.0f} MB into {r['budget_bytes'] / MB:,.0f} MB; peak "
                "private "
                f"memory {r['peak_private_over_budget']:.3f}x budget, file-backed pages "
                f"{r['peak_spill_file_pages_bytes'] / MB:,.0f} MB apart (VmRSS "
                f"{r['peak_rss_over_budget']:.3f}x)."
            )
        if r.get("api") == "sessions":
            lines.append(
                f"\nSessions: {r['sessions']} made on {r['budget_bytes'] / MB:,.0f} MB before one was "
                "refused "
                f"({r['refused_reason'] or 'none refused'}); peak RSS {r['peak_rss_over_budget']:.3f}x "
                "budget."
            )
        if r.get("api") == "epoch":
            lines.append(
                f"\nCached epoch ({r['items']} x {r['value_bytes']} B): 5 ms storage "
                f"{r['storage_epoch_seconds']} s, "
                f"through the server {r['cached_epoch_seconds']} s = {r['speedup']}x."
            )
    return "\n".join(lines) + "\n"
