"""`spidercache trace`: generate and convert request traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..checks import at_least
from ..paths import check_output_path

trace_app = typer.Typer(help="Generate and convert request traces.", no_args_is_help=True)
gen_app = typer.Typer(help="Generate a synthetic trace of integer keys.", no_args_is_help=True)
trace_app.add_typer(gen_app, name="gen")


JSON_OPT = typer.Option(False, "--json", help="Print what was written as JSON.")


def _say_written(path: Path, keys, json_out: bool = False, sizes: Path | None = None) -> None:
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "path": str(path),
                    "requests": int(keys.size),
                    "distinct_keys": int(np.unique(keys).size),
                    "sizes": None if sizes is None else str(sizes),
                }
            )
        )
        return
    typer.echo(f"wrote {keys.size:,} requests to {path}" + (f" (sizes in {sizes.name})" if sizes else ""))


@gen_app.command("zipf")
def gen_zipf(
    alpha: float = typer.Option(1.0, help="Zipf exponent (any value >= 0; 1.0 is classic Zipf)."),
    keys: int = typer.Option(1_000_000, help="Number of distinct keys to draw from."),
    requests: int = typer.Option(10_000_000, help="Length of the trace."),
    seed: int = typer.Option(0, help="Random seed."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.npy, or .txt for text)."),
    json_out: bool = JSON_OPT,
) -> None:
    """A Zipf(alpha) trace; hot keys are spread over 0..keys-1 at random."""
    from ..sim.traces import write_trace, zipf

    check_output_path(output)
    at_least(0, flag=True, seed=seed)
    trace = zipf(alpha, keys, requests, seed)
    _say_written(write_trace(output, trace), trace, json_out)


@gen_app.command("uniform")
def gen_uniform(
    keys: int = typer.Option(1_000_000, help="Number of distinct keys to draw from."),
    requests: int = typer.Option(10_000_000, help="Length of the trace."),
    seed: int = typer.Option(0, help="Random seed."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.npy, or .txt for text)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Every key equally likely."""
    from ..sim.traces import uniform, write_trace

    check_output_path(output)
    at_least(0, flag=True, seed=seed)
    trace = uniform(keys, requests, seed)
    _say_written(write_trace(output, trace), trace, json_out)


@gen_app.command("block")
def gen_block(
    requests: int = typer.Option(8_200_000, help="Sector requests in the trace."),
    seed: int = typer.Option(0, help="Random seed."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .npy (sizes go to NAME.sizes.npy)."),
    json_out: bool = JSON_OPT,
) -> None:
    """A block-I/O-like trace (hot extents, sequential runs, cold reads) in 512-byte sectors."""
    from ..sim.blocks import block_trace
    from ..sim.traces import write_trace

    check_output_path(output)
    at_least(0, flag=True, seed=seed)
    trace = block_trace(requests, seed)
    written = write_trace(output, trace.keys, trace.sizes)
    _say_written(written, trace.keys, json_out, written.with_name(written.stem + ".sizes.npy"))


@trace_app.command("convert")
def convert(
    source: Path = typer.Argument(..., help="A trace: .npy, text, CSV, oracleGeneral, vscsi or ARC .lis."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .npy (+ NAME.sizes.npy) or .txt."),
    column: Optional[str] = typer.Option(None, help="CSV column with the keys (name or 0-based index)."),
    size_column: Optional[str] = typer.Option(None, help="CSV column with the object sizes in bytes."),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        help="Input format when the name does not tell it: npy, txt, csv, oracleGeneral, vscsi, lis.",
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Read a trace in any supported format and write it as .npy (+ sizes) or text."""
    from ..sim.traces import load_trace, write_trace

    check_output_path(output)
    trace = load_trace(source, column, size_column, fmt)
    written = write_trace(output, trace.keys, trace.sizes)
    has_sizes = trace.sizes is not None and written.suffix == ".npy"
    sizes = written.with_name(written.stem + ".sizes.npy") if has_sizes else None
    _say_written(written, trace.keys, json_out, sizes)


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")
