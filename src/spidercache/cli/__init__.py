"""The ``spidercache`` command: one typer app, one module per command group.

Each group module defines ``register(root)``; the commands are thin layers over
Python functions. Whatever a user can get wrong ends in one line on stderr and
exit status 2, never a traceback or a usage box:

* a bad flag or value (click's ``UsageError``: ``--keys abc``, ``--port 99999``);
* a ``UserError`` raised by the library, a store that is down, a damaged value;
* a path the user gave that cannot be opened (``FileNotFoundError``,
  ``PermissionError``, ...).

Help and tables are plain text that wraps instead of being cut: typer's rich
panels are turned off because rich sizes them to 80 columns whenever stdout is
not a terminal (CI logs, ``| grep``), which cut flag names and numbers, and
because rich parses ``[/prefix]`` in a help text as markup and crashed.
"""

from __future__ import annotations

import importlib
import sys

import typer
import typer.core
import typer.main

from ..errors import CorruptValue, StoreUnavailable, UserError

try:  # typer >= 0.20 carries its own copy of click; its exceptions are the ones raised
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as click_exc

# Plain click help (wraps to the terminal, never truncates, no markup parsing).
typer.core.HAS_RICH = False
typer.main.HAS_RICH = False

app = typer.Typer(
    name="spidercache",
    help="Caching at every stage of a deep-learning job.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Group modules, in the order they appear in --help. Each has ``register(app)``.
_GROUPS = [
    "demo",
    "doctor",
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

# Errors of the user's making: one line, exit 2.
_USER_ERRORS = (
    UserError,
    StoreUnavailable,
    CorruptValue,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


# Flags are kebab-case. SpiderCache's historical spellings (--batch_size, --working_set_size,
# --cache_nodes, --host_ip, --port_num, ...) are accepted as hidden aliases: underscores in a flag's
# name become dashes before parsing, and renamed flags map to today's name.
_RENAMED = {"--working-set-size": "--working-set"}
# One meaning per flag name: where `--model` named a network, a checkpoint, a folder or a model kind,
# each command now says which; the old spelling stays a hidden alias in that command only.
_RENAMED_IN = {
    ("gati", "build"): {"--model": "--checkpoint"},
    ("gati", "serve"): {"--model": "--checkpoint"},
    ("gati", "eval"): {"--model": "--checkpoint"},
    ("gati", "bench"): {"--model": "--network"},
    ("bench", "gati"): {"--model": "--network"},
    ("embed", "train"): {"--model": "--kind"},
    ("embed", "eval"): {"--model": "--model-dir"},
    ("embed", "headroom"): {"--model": "--model-dir"},
}


def canonical_flags(argv: list[str]) -> list[str]:
    """``argv`` with every ``--flag_name[=value]`` spelled ``--flag-name[=value]`` (values untouched)."""
    out: list[str] = []
    renamed = {**_RENAMED, **_RENAMED_IN.get(tuple(argv[:2]), {})}
    for i, arg in enumerate(argv):
        if arg == "--":  # everything after is positional
            return out + argv[i:]
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg.partition("=")
            name = name.replace("_", "-")
            arg = renamed.get(name, name) + eq + value
        out.append(arg)
    return out


def _load_groups() -> None:
    for name in _GROUPS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(app)


def _fail(message: str) -> None:
    # One line, whatever the message held (click messages can span lines).
    typer.echo("error: " + " ".join(str(message).split()), err=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    _load_groups()
    argv = canonical_flags(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=argv, prog_name="spidercache", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        # A group called without a command: its help, as before, and success.
        typer.echo(exc.ctx.get_help() if exc.ctx else "")
        sys.exit(0)
    except click_exc.UsageError as exc:
        _fail(exc.format_message())
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except click_exc.ClickException as exc:
        _fail(exc.format_message())
    except _USER_ERRORS as exc:
        _fail(str(exc))
    sys.exit(code if isinstance(code, int) else 0)  # as click's standalone mode: always exit
