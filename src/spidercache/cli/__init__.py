"""The ``spidercache`` command: one typer app, one module per command group.

Each group module defines ``app`` (a typer.Typer) or a ``register(root)``
function; the commands are thin layers over Python functions. A ``UserError``
(or a store that is down, or a value that fails its checksum) anywhere ends
in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import CorruptValue, StoreUnavailable, UserError

app = typer.Typer(
    name="spidercache",
    help="Caching at every stage of a deep-learning job.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Group modules, in the order they appear in --help. Each has ``register(app)``.
_GROUPS = [
    "demo",
    "train",
    "trace",
    "sim",
    "store",
    "bench",
    "server",
    "gati",
    "embed",
    "mapreduce",
    "results",
]


def _load_groups() -> None:
    for name in _GROUPS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(app)


def usage_error(exc: BaseException) -> str | None:
    """The one-line message of a command-line usage error (bad option, missing argument), else None."""
    if hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2:
        return str(exc.format_message())
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    _load_groups()
    try:
        code = app(args=argv, prog_name="spidercache", standalone_mode=False)
    except (UserError, StoreUnavailable, CorruptValue) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        message = usage_error(exc)
        if message is None:
            raise
        if message:  # (empty: a group called with no arguments; its help is printed)
            typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
