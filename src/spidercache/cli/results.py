"""`spidercache results list|purge|serve`: the job-result cache (DisCo's master keeps results)."""

from __future__ import annotations

import time
from typing import Optional

import typer

results_app = typer.Typer(
    help="Memoized job results: list, purge, serve read-only over HTTP.", no_args_is_help=True
)

STORE_HELP = "Results store: lmdb:PATH (default: ~/.cache/spidercache/results), redis://HOST:PORT, memcached://HOST:PORT,..."


@results_app.command("list")
def list_results(
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """One row per stored job result."""
    from ..weights.memo import ResultCache
    from .output import print_rows

    with ResultCache.open(store) as cache:
        rows = cache.entries()
    print_rows(
        rows,
        json_out=json_out,
        title=f"{len(rows)} cached job result(s)",
        columns=[
            ("key", lambda r: r["key"][:16]),
            ("function", lambda r: r["function"]),
            ("created", lambda r: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))),
            ("first run (s)", lambda r: f"{r['seconds']:.2f}"),
            ("bytes", lambda r: str(r["bytes"])),
        ],
    )


@results_app.command("purge")
def purge(
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    function: Optional[str] = typer.Option(None, help="Only results of this function (full or last name)."),
) -> None:
    """Delete stored results (all, or one function's)."""
    from ..weights.memo import ResultCache

    with ResultCache.open(store) as cache:
        n = cache.purge(function)
    print(f"purged {n} result(s)")


@results_app.command("serve")
def serve(
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    port: int = typer.Option(8765, help="Port on 127.0.0.1 (0 picks a free one)."),
) -> None:
    """Serve the results read-only on http://127.0.0.1:PORT/results until interrupted."""
    from ..checks import between
    from ..weights.memo import ResultCache
    from ..weights.results_server import make_server

    between(0, 65535, flag=True, port=port)
    with ResultCache.open(store) as cache:
        server = make_server(cache, port)
        print(
            f"serving results on http://127.0.0.1:{server.server_address[1]}/results (read-only)", flush=True
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def register(app: typer.Typer) -> None:
    app.add_typer(results_app, name="results")
