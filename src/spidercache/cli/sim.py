"""`spidercache sim TRACE`: run the engine's policies over a trace."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def sim(
    trace: Path = typer.Argument(..., help="A .npy of integer keys, a text file with one key per line, or a CSV."),
    policy: str = typer.Option("lru,fifo,lfu,arc,s3fifo,opt", help="Comma-separated policy names."),
    cache_size: str = typer.Option(
        "0.01,0.1", help="Comma-separated sizes: <= 1 is a fraction of distinct keys, > 1 a number of objects."),
    column: Optional[str] = typer.Option(None, help="CSV column with the keys (name or 0-based index)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """Simulate every policy at every cache size; one row each."""
    from rich.console import Console
    from rich.progress import Progress

    from ..sim.report import rows_json, rows_table
    from ..sim.simulate import parse_cache_sizes, parse_policies, simulate
    from ..sim.traces import read_trace

    # Check the cheap arguments before reading a possibly large trace.
    policies = parse_policies(policy)
    sizes = parse_cache_sizes(cache_size)
    keys = read_trace(trace, column)
    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("simulating", total=len(policies) * len(sizes))
        rows = simulate(keys, policies, sizes, on_row=lambda _row: progress.advance(task))
    if json_out:
        typer.echo(rows_json(rows))
    else:
        out = Console(width=None if sys.stdout.isatty() else 120)
        out.print(rows_table(rows, title=f"Trace simulation: {trace.name}"))


def register(app: typer.Typer) -> None:
    app.command("sim")(sim)
