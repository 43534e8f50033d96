"""`spidercache sim TRACE`: run the engine's policies over a trace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def sim(
    trace: Path = typer.Argument(
        ..., help="A trace: .npy, text (one key per line), CSV, oracleGeneral, vscsi or ARC .lis."
    ),
    policy: str = typer.Option("lru,fifo,lfu,arc,s3fifo,opt", help="Comma-separated policy names."),
    cache_size: str = typer.Option(
        "0.01,0.1",
        help="Comma-separated sizes: <= 1 a fraction of the distinct keys (or of the "
        "footprint in bytes), > 1 a number of objects; with a unit (1GiB, 512MiB) bytes.",
    ),
    by_bytes: bool = typer.Option(False, "--bytes", help="Plain numbers in --cache-size are bytes."),
    column: Optional[str] = typer.Option(None, help="CSV column with the keys (name or 0-based index)."),
    size_column: Optional[str] = typer.Option(None, help="CSV column with the object sizes in bytes."),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        help="Trace format when the name does not tell it: npy, txt, csv, oracleGeneral, vscsi, lis.",
    ),
    workers: int = typer.Option(0, help="Processes for the sweep (0: one per core)."),
    keep_dense: bool = typer.Option(
        True,
        "--keep-dense/--no-keep-dense",
        help="Keep the remapped trace beside the input (NAME.dense.*); reuse it while it is unchanged.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """Simulate every policy at every cache size; one row each (hit ratio, byte hit ratio)."""
    from rich.progress import Progress

    from ..checks import at_least
    from ..sim.dense import load_dense
    from ..sim.report import rows_json, rows_table
    from ..sim.simulate import parse_cache_sizes, parse_policies, simulate
    from .output import console

    # Check the cheap arguments before reading a possibly large trace.
    policies = parse_policies(policy)
    parse_cache_sizes(cache_size, by_bytes)
    at_least(0, flag=True, workers=workers)  # 0: one per core
    data = load_dense(trace, column, size_column, fmt, keep=keep_dense)
    err = console(stderr=True)
    n_workers = workers or os.cpu_count() or 1
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("simulating", total=None)
        rows = simulate(
            data.ids,
            policies,
            cache_size,
            sizes=data.sizes,
            by_bytes=by_bytes,
            workers=n_workers,
            dense=(data.ids, data.n),
            remap_seconds=data.remap_seconds,
            id_keys=data.id_keys,
            on_row=lambda _row: progress.advance(task),
        )
    if json_out:
        typer.echo(rows_json(rows))
    else:
        out = console()
        out.print(rows_table(rows, title=f"Trace simulation: {trace.name}"))


def register(app: typer.Typer) -> None:
    app.command("sim")(sim)
