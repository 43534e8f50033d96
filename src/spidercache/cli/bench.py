"""`spidercache bench`: benchmarks that compare against a reference in the same run.

``bench_app`` is defined at module level so that other front-ends can add
their own benchmarks::

    from spidercache.cli.bench import bench_app

    @bench_app.command("train")
    def bench_train(...): ...
"""

from __future__ import annotations

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
    trace: Optional[Path] = typer.Option(
        None, help="Trace file to use instead of the generated Zipf trace."),
    column: Optional[str] = typer.Option(None, help="CSV column with the keys (name or 0-based index)."),
    alpha: float = typer.Option(1.0, help="Zipf exponent of the generated trace."),
    keys: int = typer.Option(1_000_000, help="Distinct keys of the generated trace."),
    requests: int = typer.Option(10_000_000, help="Length of the generated trace."),
    seed: int = typer.Option(0, help="Seed of the generated trace."),
    policy: str = typer.Option("lru,fifo,lfu,arc,s3fifo,opt", help="Comma-separated policy names."),
    cache_size: str = typer.Option("0.01,0.1", help="Comma-separated cache sizes (<= 1: fraction of distinct keys)."),
    repeat: int = typer.Option(3, help="Runs per measurement; the fastest is kept."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    write_docs: bool = typer.Option(True, "--write-docs/--no-write-docs", help="Write the markdown page."),
    docs_path: Path = typer.Option(DEFAULT_DOCS, help="Where the markdown page goes."),
) -> None:
    """Same trace through libCacheSim and Spider Cache: hit ratios, |Δ|, requests/s, bytes/key."""
    import json

    from rich.console import Console

    from ..sim.compare import compare
    from ..sim.report import compare_markdown, compare_table
    from ..sim.simulate import parse_cache_sizes, parse_policies
    from ..sim.traces import read_trace, zipf

    policies = parse_policies(policy)
    sizes = parse_cache_sizes(cache_size)
    err = Console(stderr=True)
    if trace is not None:
        data = read_trace(trace, column)
        info = {"kind": "file", "path": str(trace)}
    else:
        data = zipf(alpha, keys, requests, seed)
        err.print(f"generated Zipf trace: alpha {alpha}, {keys:,} keys, {requests:,} requests, seed {seed}")
        info = {"kind": "zipf", "alpha": alpha, "keys": keys, "seed": seed}
    result = compare(
        data, policies, sizes, repeat=repeat, trace_info=info,
        on_row=lambda r: err.print(
            f"  {r.policy:7s} size {r.cache_size:g}: |Δ| {r.delta:.4f}, speed ratio {r.speedup:.2f}x"),
    )
    if json_out:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        Console(width=None if sys.stdout.isatty() else 150).print(compare_table(result))
    if write_docs:
        command = "spidercache " + shlex.join(["bench", "sim", *sys.argv[sys.argv.index("sim") + 1:]]) \
            if "sim" in sys.argv else "spidercache bench sim"
        docs_path.parent.mkdir(parents=True, exist_ok=True)
        docs_path.write_text(compare_markdown(result, command))
        err.print(f"wrote {docs_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
