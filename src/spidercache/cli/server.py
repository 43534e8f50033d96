"""`spidercache server ...` and `spidercache session ...`: the cache server's admin
commands (MindSpore's cache_admin), plus `spidercache bench server`.

Every command takes ``--host HOST -p PORT`` (and ``--token``, or
$SPIDERCACHE_TOKEN) to reach a server other than the default 127.0.0.1:50052;
``-h`` is help. MindSpore's own command lines are in ``cli/mindspore.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoreUnavailable, UserError
from ..server.limits import check_port, check_session_id, parse_memory

HELP = {"help_option_names": ["-h", "--help"]}
HOST_OPT = typer.Option("127.0.0.1", "--host", help="Server address.")
PORT_OPT = typer.Option("50052", "-p", "--port", help="Server port.", callback=lambda v: check_port(v))
TOKEN_OPT = typer.Option(None, "--token", help="Shared secret (default: $SPIDERCACHE_TOKEN).")
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of a table.")
START_HINT = "; start one with `spidercache server start`"


# "-1" must reach the callback as a value, not be read as an unknown option
SID_ARG = typer.Argument(..., help="Session id.", callback=lambda v: check_session_id(v))
SID_COMMAND = {**HELP, "ignore_unknown_options": True}


def _mb(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MB"


def session_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    width = max([len(str(s["session_id"])) for s in rows] + [7])
    for col in (
        "session",
        "pipeline",
        "memory used / budget",
        "in memory",
        "spilled",
        "hits",
        "misses",
        "rejected",
        "evicted",
        "clients",
    ):
        if col == "session":  # the one value a user copies: never cut, whatever the width
            table.add_column(col, no_wrap=True, min_width=width, overflow="fold")
        else:
            table.add_column(col, justify="left" if col == "pipeline" else "right")
    for s in rows:
        table.add_row(
            str(s["session_id"]),
            (s["pipeline"] or "-")[:16],
            f"{_mb(s['memory_used'])} / {_mb(s['memory_budget'])}",
            str(s["items_in_memory"]),
            f"{s['items_spilled']} ({_mb(s['spilled_bytes'])})",
            str(s["hits"]),
            str(s["misses"]),
            str(s["rejected"]),
            str(s["evicted"]),
            str(s["clients"]),
        )
    return table


_PLAIN = (
    "session_id",
    "pipeline",
    "memory_used",
    "memory_budget",
    "items_in_memory",
    "items_spilled",
    "spilled_bytes",
    "hits",
    "misses",
    "rejected",
    "evicted",
    "clients",
)


def print_sessions(rows: list[dict], title: str) -> None:
    """A table on a terminal; tab-separated lines, nothing cut, into a pipe or a file."""
    import sys

    if sys.stdout.isatty():
        from .output import console

        console().print(session_table(rows, title))
        return
    typer.echo("\t".join(_PLAIN))
    for s in rows:
        typer.echo("\t".join(str(s[c]) if s[c] != "" else "-" for c in _PLAIN))


def status_line(host: str, port: int, st: dict) -> str:
    return (
        f"cache server {host}:{port} pid {st['pid']}: memory {_mb(st['memory_used'])} / "
        f"{_mb(st['memory_budget'])} (process RSS {_mb(st['rss_bytes'] - st['rss_file_bytes'])}, "
        f"file-backed pages {_mb(st['rss_file_bytes'])}), spilled {_mb(st['spilled_bytes'])}, "
        f"hits {st['hits']}, misses {st['misses']}, clients {st['clients']}, "
        f"sessions {len(st['sessions'])} of {st['max_sessions']}, spill {st['spill_dir'] or 'off'}"
        f"{', persist' if st['persist'] else ''}{', policy ' + st['policy'] if st['policy'] else ''}"
    )


server_app = typer.Typer(
    help="Start, stop and inspect the local cache server.", no_args_is_help=True, context_settings=HELP
)
session_app = typer.Typer(
    help="Sessions of the cache server: one cache each.", no_args_is_help=True, context_settings=HELP
)


@server_app.command("start")
def server_start(
    memory: str = typer.Option("1G", "-m", "--memory", help="Memory budget (MB, or with a unit: 512M, 2G)."),
    spill_dir: Optional[Path] = typer.Option(
        None, "-s", "--spill-dir", help="Where sessions spill (default: the state directory)."
    ),
    no_spill: bool = typer.Option(False, "--no-spill", help="Sessions may not spill."),
    workers: int = typer.Option(8, "-w", "--workers", help="Threads serving calls."),
    host: str = HOST_OPT,
    port: str = PORT_OPT,
    persist: bool = typer.Option(
        False, "--persist", help="Write values through to disk and reload them after a restart."
    ),
    policy: Optional[str] = typer.Option(
        None, "--policy", help="Evict with this engine policy when full (e.g. lru)."
    ),
    token: Optional[str] = TOKEN_OPT,
    max_message_mb: Optional[int] = typer.Option(
        None, "--max-message-mb", help="Largest request or reply (default: 1/64 of -m, 4 to 128 MB)."
    ),
    max_sessions: Optional[int] = typer.Option(
        None, "--max-sessions", help="Most sessions at once (default 256)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    foreground: bool = typer.Option(
        False, "--foreground", help="Run in this process instead of as a daemon."
    ),
) -> None:
    """Start the cache server; returns once it answers (unless --foreground)."""
    from ..server.daemon import configure_logging, run_foreground, server_settings, start_server

    config, options = server_settings(
        memory=memory,
        spill_dir=None if spill_dir is None else str(spill_dir),
        no_spill=no_spill,
        workers=workers,
        host=host,
        port=port,
        persist=persist,
        policy=policy,
        token=token,
        max_message_mb=max_message_mb,
        max_sessions=max_sessions,
        log_level=log_level,
    )
    if foreground:
        configure_logging(log_level)
        run_foreground(config, options)
        return
    pid = start_server(config, options, log_level)
    typer.echo(
        f"cache server running on {options.host}:{options.port} (pid {pid}, memory "
        f"{_mb(config.memory_bytes)}, spill {config.spill_dir or 'off'}{', persist' if persist else ''})"
    )


@server_app.command("stop")
def server_stop(host: str = HOST_OPT, port: str = PORT_OPT, token: Optional[str] = TOKEN_OPT) -> None:
    """Stop the cache server; returns once its process has exited (persisted data stays)."""
    from ..server.admin import resolve_token
    from ..server.daemon import stop_server

    pid = stop_server(host, port, resolve_token(token))
    typer.echo(f"cache server on {host}:{port} stopped" + (f" (pid {pid})" if pid else ""))


@server_app.command("status")
def server_status(
    host: str = HOST_OPT, port: str = PORT_OPT, token: Optional[str] = TOKEN_OPT, json_out: bool = JSON_OPT
) -> None:
    """Sessions, memory used / budget beside the process's RSS, spilled bytes, hits, misses."""
    from .output import console

    st = admin_call(host, port, "status", token=token)
    if json_out:
        typer.echo(json.dumps(st, indent=2))
        return
    console().print(status_line(host, port, st), soft_wrap=True)
    if st["sessions"]:
        print_sessions(st["sessions"], "sessions")


def admin_call(
    host: str, port: int | str, call: str, *args, token: str | None = None, hint: str = START_HINT
):
    """``AdminClient(...).CALL(*args)``; a server that does not answer ends in one user line."""
    from ..server.admin import AdminClient

    try:
        with AdminClient(host, check_port(port), token) as admin:
            return getattr(admin, call)(*args)
    except StoreUnavailable:
        raise UserError(f"no cache server answers on {host}:{port}{hint}") from None


@session_app.command("new")
def session_new(
    memory: Optional[str] = typer.Option(
        None, "-m", "--memory", help="Budget of this session (default: the server's)."
    ),
    spill: bool = typer.Option(False, "--spill", help="Spill to disk when memory is full."),
    host: str = HOST_OPT,
    port: str = PORT_OPT,
    token: Optional[str] = TOKEN_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Create a session and print its id (hand it to the pipeline)."""
    budget = parse_memory(memory) if memory is not None else 0
    s = admin_call(host, port, "new_session", budget, spill, token=token)
    typer.echo(json.dumps(s) if json_out else str(s["session_id"]))


@session_app.command("list")
def session_list(
    host: str = HOST_OPT, port: str = PORT_OPT, token: Optional[str] = TOKEN_OPT, json_out: bool = JSON_OPT
) -> None:
    """All sessions with their usage."""

    rows = admin_call(host, port, "list_sessions", token=token)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no sessions")
    else:
        print_sessions(rows, "sessions")


@session_app.command("stats", context_settings=SID_COMMAND)
def session_stats(
    session_id: str = SID_ARG,
    host: str = HOST_OPT,
    port: str = PORT_OPT,
    token: Optional[str] = TOKEN_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """One session's usage and hit counts."""

    s = admin_call(host, port, "session_stats", session_id, token=token)
    if json_out:
        typer.echo(json.dumps(s, indent=2))
    else:
        print_sessions([s], f"session {session_id}")


@session_app.command("destroy", context_settings=SID_COMMAND)
def session_destroy(
    session_id: str = SID_ARG, host: str = HOST_OPT, port: str = PORT_OPT, token: Optional[str] = TOKEN_OPT
) -> None:
    """Drop a session and everything it cached (memory and spill files)."""
    admin_call(host, port, "destroy_session", session_id, token=token)
    typer.echo(f"session {session_id} destroyed")


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
    app.add_typer(session_app, name="session")
