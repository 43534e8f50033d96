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
import glob
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import UserError
from .memory import tune_allocator
from .sessions import ServerConfig
from .service import ServeOptions, check_bind, serve
from .shm import SHM_DIR

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
        raise UserError(f"a cache server already runs on port {options.port}"
                        + (f" (pid {pid})" if pid else "")) from None
    try:
        config.shm_prefix = shm_prefix(options.port)
        for stale in glob.glob(os.path.join(SHM_DIR, config.shm_prefix + "-*")):
            try:
                os.unlink(stale)
            except OSError:
                pass
        if config.spill_dir:
            os.makedirs(config.spill_dir, exist_ok=True)

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
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(_last_error(log_path) or f"the cache server exited with status {proc.returncode}; see {log_path}")
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
            return line[len("error: "):]
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
        if (pid is None or not _alive(pid)) and ping(host, port, token, timeout=0.3) is None:
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


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
