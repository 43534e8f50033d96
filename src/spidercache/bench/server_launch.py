"""Servers ``spidercache bench server`` starts for itself: redis-server without
persistence, and the cache server as users start it (a daemon, through
``server/daemon.py``). Every process started here is stopped by its handle.

(The tests' launcher lives in ``spidercache.testing``, which the package does
not import; when the non-testing launcher of issue 13 lands, this module should
use it.)
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from ..errors import UserError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Process:
    """A server this benchmark started (and only it stops)."""

    def __init__(self, port: int, pid: int, stop: Callable[[], None]) -> None:
        self.port, self.pid, self.stop = port, pid, stop


def _start_redis(workdir: Path) -> _Process:
    """redis-server without persistence on a free loopback port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    try:
        proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise UserError("redis-server is not installed (Debian: apt-get install redis-server)") from None
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise UserError(f"redis-server did not start on port {port}")
        time.sleep(0.05)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return _Process(port, proc.pid, stop)


def _start_cache_server(**settings) -> _Process:
    """The cache server as users start it (``spidercache server start``: a daemon)."""
    from ..server.daemon import server_settings, start_server, stop_server

    port = _free_port()
    config, options = server_settings(port=port, **settings)
    pid = start_server(config, options, "warning")
    return _Process(port, pid, lambda: stop_server("127.0.0.1", port, None))
