"""MindSpore's own command lines for the cache server, beside ``spidercache server`` / ``session``.

* ``ms_cache_server start [-m MEM] [-d SPILL_PATH] [-nospill] [-h HOST] [-p PORT]``,
  ``ms_cache_server stop [-h HOST] [-p PORT]`` and
  ``ms_cache_server session [-m MEM] [-h HOST] [-p PORT]`` (prints the new session id);
* ``cache_admin --start / --stop / -g / -d ID / --list_sessions / --server_info`` with
  ``-h HOST -p PORT -w WORKERS -s SPILL_DIR -l LOGLEVEL -m MEMORY_CAP_RATIO`` as
  MindSpore documents them: ``-m`` is a fraction of this machine's RAM (0 < r <= 1),
  ``-l`` 0..3 is DEBUG, INFO, WARNING, ERROR. ``-g`` makes a session that may spill
  when the server has a spill directory (MindSpore lets ``DatasetCache(spilling=True)``
  decide later; here the session decides, see ``server/client.py``).

In both, ``-h`` is the host, as in MindSpore; ``--help`` is help. Each is a thin
layer over the same functions as ``spidercache server``: ``server.daemon`` and
``server.admin``. Errors end in one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import UserError

LOG_LEVELS = ["debug", "info", "warning", "error"]


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are UserError (one line), and whose help is --help only."""

    def __init__(self, **kw) -> None:
        super().__init__(add_help=False, **kw)
        self.add_argument("--help", action="help", help="Show this message and exit.")

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--hostname", default="127.0.0.1", help="Server address (default 127.0.0.1).")
    p.add_argument("-p", "--port", default="50052", help="Server port (default 50052).")


def _start(host: str, port: str, **settings) -> str:
    from ..server.daemon import server_settings, start_server

    log_level = settings.pop("log_level", "info")
    config, options = server_settings(host=host, port=port, log_level=log_level, **settings)
    pid = start_server(config, options, log_level)
    return f"cache server started on {options.host}:{options.port} (pid {pid})"


def _stop(host: str, port: str) -> str:
    from ..server.daemon import stop_server
    from ..server.limits import check_port

    stop_server(host, check_port(port), None)
    return f"cache server on {host}:{port} stopped"


def _admin(host: str, port: str, call: str, *args):
    from .server import admin_call

    return admin_call(host, port, call, *args, hint="")


def _run(main, argv: list[str] | None) -> int:
    try:
        out = main(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if out:
        print(out, flush=True)
    return 0


# ---------------------------------------------------------------- ms_cache_server
def _ms_cache_server(argv: list[str]) -> str:
    p = _Parser(prog="ms_cache_server", description="MindSpore's cache server command line.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    start = sub.add_parser("start", help="Start the cache server.")
    start.add_argument("-m", "--memory", default="1G", help="Memory budget (MB, or 512M, 2G).")
    start.add_argument("-d", "--spill-path", default=None, help="Spill directory.")
    start.add_argument("-nospill", "--nospill", action="store_true", help="Sessions may not spill.")
    _common(start)
    stop = sub.add_parser("stop", help="Stop the cache server.")
    _common(stop)
    session = sub.add_parser("session", help="Create a session and print its id.")
    session.add_argument(
        "-m", "--memory", default=None, help="Budget of the session (default: the server's)."
    )
    session.add_argument("--spill", action="store_true", help="The session may spill.")
    _common(session)
    a = p.parse_args(argv)
    if a.command == "start":
        return _start(a.hostname, a.port, memory=a.memory, spill_dir=a.spill_path, no_spill=a.nospill)
    if a.command == "stop":
        return _stop(a.hostname, a.port)
    from ..server.limits import parse_memory

    budget = parse_memory(a.memory) if a.memory else 0
    return str(_admin(a.hostname, a.port, "new_session", budget, a.spill)["session_id"])


def ms_cache_server(argv: list[str] | None = None) -> int:
    """Console entry point ``ms_cache_server``."""
    return _run(_ms_cache_server, argv)


# -------------------------------------------------------------------- cache_admin
def _cache_admin(argv: list[str]) -> str:
    p = _Parser(prog="cache_admin", description="MindSpore's cache_admin.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--start", action="store_true", help="Start the cache server.")
    what.add_argument("--stop", action="store_true", help="Stop the cache server.")
    what.add_argument("-g", "--generate_session", action="store_true", help="Create a session, print its id.")
    what.add_argument("-d", "--destroy_session", metavar="SESSION_ID", help="Destroy a session.")
    what.add_argument("--list_sessions", action="store_true", help="List the sessions.")
    what.add_argument("--server_info", action="store_true", help="The server's settings and usage.")
    _common(p)
    p.add_argument("-w", "--workers", type=int, default=8, help="Threads serving calls (default 8).")
    p.add_argument("-s", "--spilldir", default=None, help="Spill directory (default: the state directory).")
    p.add_argument("-l", "--loglevel", type=int, default=1, choices=range(4), help="0 DEBUG .. 3 ERROR.")
    p.add_argument(
        "-m",
        "--memory_cap_ratio",
        type=float,
        default=None,
        help="Fraction of this machine's RAM for the cache (0 < r <= 1; default 1 GB).",
    )
    a = p.parse_args(argv)
    if a.start:
        memory = "1G"
        if a.memory_cap_ratio is not None:
            from ..server.limits import physical_memory

            if not 0 < a.memory_cap_ratio <= 1:
                raise UserError(f"-m/--memory_cap_ratio must lie in (0, 1], got {a.memory_cap_ratio}")
            memory = int(a.memory_cap_ratio * physical_memory())
        return _start(
            a.hostname,
            a.port,
            memory=memory,
            spill_dir=a.spilldir,
            workers=a.workers,
            log_level=LOG_LEVELS[a.loglevel],
        )
    if a.stop:
        return _stop(a.hostname, a.port)
    if a.generate_session:
        info = _admin(a.hostname, a.port, "status")
        return str(_admin(a.hostname, a.port, "new_session", 0, bool(info["spill_dir"]))["session_id"])
    if a.destroy_session is not None:
        from ..server.limits import check_session_id

        sid = check_session_id(a.destroy_session)
        _admin(a.hostname, a.port, "destroy_session", sid)
        return f"session {sid} destroyed"
    if a.list_sessions:
        rows = _admin(a.hostname, a.port, "list_sessions")
        return (
            "\n".join(
                f"{r['session_id']}\t{r['items_in_memory']} in memory\t{r['items_spilled']} spilled"
                for r in rows
            )
            or "no sessions"
        )
    return json.dumps(_admin(a.hostname, a.port, "status"), indent=2)


def cache_admin(argv: list[str] | None = None) -> int:
    """Console entry point ``cache_admin``."""
    return _run(_cache_admin, argv)


if __name__ == "__main__":  # python -m spidercache.cli.mindspore {ms_cache_server|cache_admin} ...
    tool = {"ms_cache_server": ms_cache_server, "cache_admin": cache_admin}.get(
        sys.argv[1] if len(sys.argv) > 1 else ""
    )
    if tool is None:
        print(
            "error: usage: python -m spidercache.cli.mindspore {ms_cache_server|cache_admin} ARGS",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(tool(sys.argv[2:]))
