"""Starting, finding and stopping the server process (``spidercache server ...``).

Per port the server keeps three files in the state directory
(``$SPIDERCACHE_HOME`` or ``~/.cache/spidercache``): ``server-PORT.lock``,
``server-PORT.pid`` and ``server-PORT.log``. The lock is an ``flock`` held for
the server's whole life: the kernel drops it when the process dies, even by
kill -9, so a stale pidfile or lock never blocks the next start. Shared-memory
segments a killed server left behind are removed by the next server on that
port, once it holds the lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..checks import at_least, between
from ..errors import UserError
from .admin import resolve_token
from .limits import (
    DEFAULT_HOST,
    DEFAULT_MAX_MESSAGE,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PORT,
    MAX_MESSAGE_MB,
    check_log_level,
    check_memory,
    check_port,
    check_spill_dir,
    parse_memory,
)
from .memory import tune_allocator
from .service import ServeOptions, check_bind, serve
from .sessions import ServerConfig
from .shm import retire_segments

START_TIMEOUT = 30.0


def state_dir() -> Path:
    path = Path(os.environ.get("SPIDERCACHE_HOME") or Path.home() / ".cache" / "spidercache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(port: int) -> tuple[Path, Path, Path]:
    d = state_dir()
    return d / f"server-{port}.lock", d / f"server-{port}.pid", d / f"server-{port}.log"


def read_pid(port: int) -> int | None:
    try:
        return int(_paths(port)[1].read_text().strip())
    except (OSError, ValueError):
        return None


def shm_prefix(port: int) -> str:
    return f"spidercache-{port}"


def run_foreground(config: ServerConfig, options: ServeOptions) -> None:
    """Hold the port's lock, clear leftovers of a killed server, serve until stopped."""
    check_bind(options.host, options.token)
    tune_allocator()  # this process is the server now (see memory.py)
    lock_path, pid_path, _ = _paths(options.port)
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        pid = read_pid(options.port)
        raise UserError(
            f"a cache server already runs on port {options.port}" + (f" (pid {pid})" if pid else "")
        ) from None
    try:
        config.shm_prefix = shm_prefix(options.port)
        retire_segments(config.shm_prefix)  # a killed server's; its clients see them destroyed
        if config.spill_dir:
            config.spill_dir = check_spill_dir(config.spill_dir)

        def ready() -> None:
            tmp = pid_path.with_suffix(".tmp")
            tmp.write_text(f"{os.getpid()}\n")
            os.replace(tmp, pid_path)

        serve(config, options, on_ready=ready)
    finally:
        try:
            if read_pid(options.port) == os.getpid():
                pid_path.unlink()
        except OSError:
            pass
        os.close(lock_fd)


def server_settings(
    *,
    memory: str | int = "1G",
    spill_dir: str | None = None,
    no_spill: bool = False,
    workers: int = 8,
    host: str = DEFAULT_HOST,
    port: int | str = DEFAULT_PORT,
    persist: bool = False,
    policy: str | None = None,
    token: str | None = None,
    max_message_mb: int | None = None,
    max_sessions: int | None = None,
    log_level: str = "info",
) -> tuple[ServerConfig, ServeOptions]:
    """Check a server's start options (every front-end: ``spidercache server
    start``, ``ms_cache_server``, ``cache_admin``, ``python -m spidercache.server``)
    and turn them into its settings. ``spill_dir`` None: the state directory's
    ``spill-PORT``; ``no_spill``: none."""
    port = check_port(port)
    budget = check_memory(memory if isinstance(memory, int) else parse_memory(memory))
    if max_message_mb is None:
        max_message_mb = default_message_mb(budget)
    at_least(1, flag=True, workers=workers, max_sessions=max_sessions)
    between(1, MAX_MESSAGE_MB, flag=True, max_message_mb=max_message_mb)
    check_log_level(log_level)
    if no_spill and spill_dir is not None:
        raise UserError("give either --spill-dir or --no-spill, not both")
    if no_spill and persist:
        raise UserError("--persist keeps values in the spill directory; it cannot go with --no-spill")
    if policy:
        from ..engine.policies import make_policy

        make_policy(policy, 1)  # an unknown name: one line now, not in the daemon's log
    token = resolve_token(token)
    check_bind(host, token)
    spill = None if no_spill else check_spill_dir(str(spill_dir or state_dir() / f"spill-{port}"))
    config = ServerConfig(
        memory_bytes=budget,
        spill_dir=spill,
        persist=persist,
        policy=policy,
        max_sessions=max_sessions or DEFAULT_MAX_SESSIONS,
    )
    options = ServeOptions(
        host=host, port=port, workers=workers, token=token, max_message_bytes=max_message_mb << 20
    )
    return config, options


def default_message_mb(budget: int) -> int:
    """The message cap a budget gets unless one is given: 1/64 of it, 4 to 128 MB.
    Every message in flight is held twice (gRPC's buffer, then Python's bytes):
    measured on a 256 MB server with the old fixed 128 MB cap, four clients
    putting 60 MB batches took it to 789 MB (3.1x); the cap keeps requests in
    flight within the process's I/O allowance (docs/bench/server.md)."""
    return int(min(DEFAULT_MAX_MESSAGE >> 20, max(4, (budget >> 20) // 64)))


def server_argv(config: ServerConfig, options: ServeOptions, log_level: str = "info") -> list[str]:
    """The ``python -m spidercache.server`` command line for these settings (no token: it goes
    through the environment, where ``ps`` does not show it)."""
    budget = config.memory_bytes
    argv = [
        "-m",
        str(budget >> 20) if budget % (1 << 20) == 0 else f"{budget >> 10}K",
        "-w",
        str(options.workers),
        "--host",
        options.host,
        "-p",
        str(options.port),
        "--max-message-mb",
        str(options.max_message_bytes >> 20),
        "--max-sessions",
        str(config.max_sessions),
        "--log-level",
        log_level,
    ]
    argv += ["--no-spill"] if config.spill_dir is None else ["-s", config.spill_dir]
    if config.persist:
        argv.append("--persist")
    if config.policy:
        argv += ["--policy", config.policy]
    return argv


def start_server(config: ServerConfig, options: ServeOptions, log_level: str = "info") -> int:
    """Start the server as a daemon with these settings; returns its pid once it answers."""
    return start_daemon(server_argv(config, options, log_level), options.host, options.port, options.token)


def start_daemon(argv: list[str], host: str, port: int, token: str | None) -> int:
    """Start ``python -m spidercache.server ARGV`` detached; return its pid
    once it answers. The child's one-line error (port in use, ...) is raised here."""
    from .admin import ping

    check_bind(host, token)
    if ping(host, port, token, timeout=1.0) is not None:
        raise UserError(f"a cache server is already running on {host}:{port}")
    _, _, log_path = _paths(port)
    env = dict(os.environ)
    if token:
        env["SPIDERCACHE_TOKEN"] = token  # not on the command line, where ps shows it
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spidercache.server", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(
                _last_error(log_path)
                or f"the cache server exited with status {proc.returncode}; see {log_path}"
            )
        if ping(host, port, token, timeout=0.5) is not None:
            return proc.pid
        time.sleep(0.1)
    proc.terminate()
    raise UserError(f"the cache server did not answer within {START_TIMEOUT:.0f} s; see {log_path}")


def _last_error(log_path: Path) -> str | None:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines[-50:]):
        if line.startswith("error: "):
            return line[len("error: ") :]
    return None


def stop_server(host: str, port: int, token: str | None, timeout: float = 15.0) -> int | None:
    """Ask the server to stop (falls back to SIGTERM on the pidfile's process);
    returns the pid that stopped, raises UserError when none runs."""
    from .admin import ping, shutdown

    info = ping(host, port, token, timeout=2.0)
    pid = info["pid"] if info else None
    if info is not None:
        shutdown(host, port, token)
    else:
        pid = read_pid(port)
        if pid is None or not _alive(pid) or not _lock_held(port):
            raise UserError(f"no cache server is running on {host}:{port}")
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gone = pid is None or (not _alive(pid) and not _lock_held(port))
        if gone and ping(host, port, token, timeout=0.3) is None:
            return pid
        time.sleep(0.1)
    raise UserError(f"the cache server on {host}:{port} did not stop within {timeout:.0f} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _lock_held(port: int) -> bool:
    lock_path = _paths(port)[0]
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=check_log_level(level),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
