"""`spidercache server ...` and `spidercache session ...`: the cache server's admin
commands (MindSpore's cache_admin), plus `spidercache bench server`.

Every command takes ``-h HOST -p PORT`` (and ``--token``, or $SPIDERCACHE_TOKEN)
to reach a server other than the default 127.0.0.1:50052.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError

HOST_OPT = typer.Option("127.0.0.1", "-h", "--host", help="Server address.")
PORT_OPT = typer.Option(50052, "-p", "--port", help="Server port.")
TOKEN_OPT = typer.Option(None, "--token", help="Shared secret (default: $SPIDERCACHE_TOKEN).")
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of a table.")


def parse_memory(text: str) -> int:
    """'512' or '512M' -> bytes (MB when no unit); 'K', 'G' also accepted."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[iI]?[bB]?\s*", text or "")
    if not m:
        raise UserError(f"cannot read memory size {text!r}; write e.g. 512M or 2G")
    value = float(m.group(1)) * {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    if value <= 0:
        raise UserError(f"memory size must be positive, got {text!r}")
    return int(value)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"port must lie in 1..65535, got {port}")


def _mb(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MB"


def _session_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("session", "pipeline", "memory used / budget", "in memory", "spilled", "hits", "misses",
                "rejected", "evicted", "clients"):
        table.add_column(col, justify="left" if col in ("session", "pipeline") else "right")
    for s in rows:
        table.add_row(str(s["session_id"]), (s["pipeline"] or "-")[:16],
                      f"{_mb(s['memory_used'])} / {_mb(s['memory_budget'])}", str(s["items_in_memory"]),
                      f"{s['items_spilled']} ({_mb(s['spilled_bytes'])})", str(s["hits"]), str(s["misses"]),
                      str(s["rejected"]), str(s["evicted"]), str(s["clients"]))
    return table


server_app = typer.Typer(help="Start, stop and inspect the local cache server.", no_args_is_help=True)
session_app = typer.Typer(help="Sessions of the cache server: one cache each.", no_args_is_help=True)


@server_app.command("start")
def server_start(
    memory: str = typer.Option("1G", "-m", "--memory", help="Memory budget (MB, or with a unit: 512M, 2G)."),
    spill_dir: Optional[Path] = typer.Option(None, "-s", "--spill-dir",
                                             help="Where sessions spill (default: the state directory)."),
    no_spill: bool = typer.Option(False, "--no-spill", help="Sessions may not spill."),
    workers: int = typer.Option(8, "-w", "--workers", help="Threads serving calls."),
    host: str = HOST_OPT,
    port: int = PORT_OPT,
    persist: bool = typer.Option(False, "--persist", help="Write values through to disk and reload them after a restart."),
    policy: Optional[str] = typer.Option(None, "--policy", help="Evict with this engine policy when full (e.g. lru)."),
    token: Optional[str] = TOKEN_OPT,
    max_message_mb: int = typer.Option(128, "--max-message-mb", help="Largest request or reply accepted."),
    foreground: bool = typer.Option(False, "--foreground", help="Run in this process instead of as a daemon."),
) -> None:
    """Start the cache server; returns once it answers (unless --foreground)."""
    from ..server.admin import resolve_token
    from ..server.daemon import configure_logging, run_foreground, start_daemon, state_dir
    from ..server.service import ServeOptions
    from ..server.sessions import ServerConfig

    _check_port(port)
    budget = parse_memory(memory)
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if max_message_mb < 1:
        raise UserError("--max-message-mb must be at least 1")
    if no_spill and spill_dir is not None:
        raise UserError("give either --spill-dir or --no-spill, not both")
    if no_spill and persist:
        raise UserError("--persist keeps values in the spill directory; it cannot go with --no-spill")
    if policy:
        from ..engine.policies import make_policy

        make_policy(policy, 1)  # unknown name: one line now, not in the daemon's log
    token = resolve_token(token)
    spill = None if no_spill else str((spill_dir or state_dir() / f"spill-{port}").resolve())
    if foreground:
        configure_logging()
        config = ServerConfig(memory_bytes=budget, spill_dir=spill, persist=persist, policy=policy)
        options = ServeOptions(host=host, port=port, workers=workers, token=token,
                               max_message_bytes=max_message_mb << 20)
        run_foreground(config, options)
        return
    argv = ["-m", str(budget >> 20 if budget % (1 << 20) == 0 else f"{budget >> 10}K"), "-w", str(workers),
            "-h", host, "-p", str(port), "--max-message-mb", str(max_message_mb)]
    argv += ["--no-spill"] if spill is None else ["-s", spill]
    if persist:
        argv.append("--persist")
    if policy:
        argv += ["--policy", policy]
    pid = start_daemon(argv, host, port, token)
    typer.echo(f"cache server running on {host}:{port} (pid {pid}, memory {_mb(budget)}, "
               f"spill {'off' if spill is None else spill}{', persist' if persist else ''})")


@server_app.command("stop")
def server_stop(host: str = HOST_OPT, port: int = PORT_OPT, token: Optional[str] = TOKEN_OPT) -> None:
    """Stop the cache server (shared memory is freed; persisted data stays)."""
    from ..server.admin import resolve_token
    from ..server.daemon import stop_server

    _check_port(port)
    pid = stop_server(host, port, resolve_token(token))
    typer.echo(f"cache server on {host}:{port} stopped" + (f" (pid {pid})" if pid else ""))


@server_app.command("status")
def server_status(host: str = HOST_OPT, port: int = PORT_OPT, token: Optional[str] = TOKEN_OPT,
                  json_out: bool = JSON_OPT) -> None:
    """Sessions, memory used / budget, spilled bytes, hits, misses, clients."""
    from rich.console import Console

    from ..server.admin import AdminClient
    from ..errors import StoreUnavailable

    _check_port(port)
    try:
        with AdminClient(host, port, token) as admin:
            st = admin.status()
    except StoreUnavailable:
        raise UserError(f"no cache server answers on {host}:{port}") from None
    if json_out:
        typer.echo(json.dumps(st, indent=2))
        return
    console = Console()
    console.print(f"cache server {host}:{port} pid {st['pid']}: memory {_mb(st['memory_used'])} / "
                  f"{_mb(st['memory_budget'])}, spilled {_mb(st['spilled_bytes'])}, hits {st['hits']}, "
                  f"misses {st['misses']}, clients {st['clients']}, sessions {len(st['sessions'])}, "
                  f"spill {st['spill_dir'] or 'off'}{', persist' if st['persist'] else ''}"
                  f"{', policy ' + st['policy'] if st['policy'] else ''}")
    if st["sessions"]:
        console.print(_session_table(st["sessions"], "sessions"))


def _admin(host: str, port: int, token: Optional[str]):
    from ..server.admin import AdminClient

    _check_port(port)
    return AdminClient(host, port, token)


def _unavailable(host: str, port: int):
    return UserError(f"no cache server answers on {host}:{port}; start one with `spidercache server start`")


@session_app.command("new")
def session_new(
    memory: Optional[str] = typer.Option(None, "-m", "--memory", help="Budget of this session (default: the server's)."),
    spill: bool = typer.Option(False, "--spill", help="Spill to disk when memory is full."),
    host: str = HOST_OPT, port: int = PORT_OPT, token: Optional[str] = TOKEN_OPT, json_out: bool = JSON_OPT,
) -> None:
    """Create a session and print its id (hand it to the pipeline)."""
    from ..errors import StoreUnavailable

    budget = parse_memory(memory) if memory is not None else 0
    try:
        with _admin(host, port, token) as admin:
            s = admin.new_session(budget, spill)
    except StoreUnavailable:
        raise _unavailable(host, port) from None
    typer.echo(json.dumps(s) if json_out else str(s["session_id"]))


@session_app.command("list")
def session_list(host: str = HOST_OPT, port: int = PORT_OPT, token: Optional[str] = TOKEN_OPT,
                 json_out: bool = JSON_OPT) -> None:
    """All sessions with their usage."""
    from rich.console import Console

    from ..errors import StoreUnavailable

    try:
        with _admin(host, port, token) as admin:
            rows = admin.list_sessions()
    except StoreUnavailable:
        raise _unavailable(host, port) from None
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no sessions")
    else:
        Console().print(_session_table(rows, "sessions"))


@session_app.command("stats")
def session_stats(session_id: int = typer.Argument(..., help="Session id."), host: str = HOST_OPT,
                  port: int = PORT_OPT, token: Optional[str] = TOKEN_OPT, json_out: bool = JSON_OPT) -> None:
    """One session's usage and hit counts."""
    from rich.console import Console

    from ..errors import StoreUnavailable

    try:
        with _admin(host, port, token) as admin:
            s = admin.session_stats(session_id)
    except StoreUnavailable:
        raise _unavailable(host, port) from None
    if json_out:
        typer.echo(json.dumps(s, indent=2))
    else:
        Console().print(_session_table([s], f"session {session_id}"))


@session_app.command("destroy")
def session_destroy(session_id: int = typer.Argument(..., help="Session id."), host: str = HOST_OPT,
                    port: int = PORT_OPT, token: Optional[str] = TOKEN_OPT) -> None:
    """Drop a session and everything it cached (memory and spill files)."""
    from ..errors import StoreUnavailable

    try:
        with _admin(host, port, token) as admin:
            admin.destroy_session(session_id)
    except StoreUnavailable:
        raise _unavailable(host, port) from None
    typer.echo(f"session {session_id} destroyed")


def bench_server(
    value_bytes: str = typer.Option("3072,153600", "--value-bytes", help="Comma-separated value sizes."),
    batch: int = typer.Option(256, "--batch", help="Items per batch."),
    items: int = typer.Option(4096, "--items", help="Distinct items stored per value size."),
    batches: int = typer.Option(200, "--batches", help="Batches read per measurement."),
    in_flight: str = typer.Option("1,20", "--in-flight", help="Comma-separated numbers of calls in flight."),
    json_out: bool = JSON_OPT,
    docs: Optional[Path] = typer.Option(None, "--docs", help="Also write the table as markdown here."),
) -> None:
    """Cache server (gRPC, shared memory) against redis-server (MGET), same data, same run."""
    from rich.console import Console

    from ..server.bench import format_markdown, rows_table, run_bench

    sizes = _int_list(value_bytes, "--value-bytes")
    flights = _int_list(in_flight, "--in-flight")
    if batch < 1 or items < batch or batches < 1:
        raise UserError("need --batch >= 1, --items >= --batch and --batches >= 1")
    err = Console(stderr=True)
    rows = run_bench(sizes, batch, items, batches, flights, log=lambda m: err.print(m))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    else:
        Console().print(rows_table(rows))
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(format_markdown(rows))
        err.print(f"wrote {docs}")


def _int_list(text: str, what: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} takes comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise UserError(f"{what} takes positive integers, got {text!r}")
    return out


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
    app.add_typer(session_app, name="session")
    # until server/bench.py moves to spidercache/bench/server.py (`spidercache bench server`)
    server_app.command("bench")(bench_server)
