"""`spidercache bench`: benchmarks that compare against a reference in the same run.

``bench_app`` is defined at module level so that other front-ends can add
their own benchmarks::

    from spidercache.cli.bench import bench_app

    @bench_app.command("train")
    def bench_train(...): ...
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

bench_app = typer.Typer(
    help="Benchmarks: each measures ratios against a reference in the same run.",
    no_args_is_help=True,
)

DEFAULT_DOCS = Path("docs/bench/sim.md")


@bench_app.command("sim")
def bench_sim(
    trace: Optional[Path] = typer.Option(None, help="Trace file instead of a generated trace."),
    column: Optional[str] = typer.Option(None, help="CSV column with the keys (name or 0-based index)."),
    size_column: Optional[str] = typer.Option(None, help="CSV column with the object sizes."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Trace format when the name does not tell it."),
    kind: str = typer.Option("block", help="Generated trace: block (block I/O in 512-byte sectors) or zipf."),
    alpha: float = typer.Option(1.0, help="Zipf exponent of a generated Zipf trace."),
    keys: int = typer.Option(1_000_000, help="Distinct keys of a generated Zipf trace."),
    requests: int = typer.Option(8_200_000, help="Length of the generated trace."),
    seed: int = typer.Option(0, help="Seed of the generated trace."),
    policy: str = typer.Option("lru,fifo,lfu,arc,s3fifo,opt", help="Comma-separated policy names."),
    cache_size: str = typer.Option("0.001,0.01,0.1", help="Comma-separated cache sizes (<= 1: a fraction)."),
    by_bytes: bool = typer.Option(False, "--bytes", help="Byte-sized caches (plain numbers are bytes)."),
    repeat: int = typer.Option(3, help="Runs per measurement; the median is kept."),
    workers: int = typer.Option(0, help="Our worker processes (0: one per core)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table."),
    write_docs: bool = typer.Option(True, "--write-docs/--no-write-docs", help="Write the markdown page."),
    docs_path: Path = typer.Option(DEFAULT_DOCS, help="Where the markdown page goes."),
) -> None:
    """Same trace through libCacheSim and Spider Cache: hit ratios, |Δ|, seconds, bytes/key."""
    import json

    from rich.console import Console

    from ..bench.sim import run
    from ..bench.sim_report import compare_markdown, compare_table

    err = Console(stderr=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = run(trace=trace, column=column, size_column=size_column, fmt=fmt, kind=kind, alpha=alpha, keys=keys,
               requests=requests, seed=seed, policy=policy, cache_size=cache_size, by_bytes=by_bytes,
               repeat=repeat, workers=workers,
               on_row=lambda r: err.print(f"  {r['policy']:7s} {r['cache_size'] or '':<8}: "
                                          f"speed ratio {r['speed_ratio']:.2f}x"))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    else:
        Console(width=None if sys.stdout.isatty() else 170).print(compare_table(rows))
    if write_docs:
        command = "spidercache " + shlex.join(["bench", "sim", *sys.argv[sys.argv.index("sim") + 1:]]) \
            if "sim" in sys.argv else "spidercache bench sim"
        docs_path.parent.mkdir(parents=True, exist_ok=True)
        docs_path.write_text(compare_markdown(rows, command, load))
        err.print(f"wrote {docs_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
