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
_GROUPS = ["demo", "train", "trace", "sim", "store", "bench", "server", "gati", "embed", "mapreduce", "results"]


def _load_groups() -> None:
    for name in _GROUPS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    from typer import _click as click  # typer >= 0.20 ships its own click

    _load_groups()
    try:
        rv = app(args=argv, prog_name="spidercache", standalone_mode=False)
    except (UserError, StoreUnavailable, CorruptValue) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group named alone: its help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # typer's own parsing errors: one line too, not a usage box
        typer.echo("error: " + " ".join(exc.format_message().split()), err=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)  # as click's standalone mode: always exit
