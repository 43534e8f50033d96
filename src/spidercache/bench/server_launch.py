"""Servers ``spidercache bench server`` starts for itself: redis-server without
persistence, and the cache server as users start it (a daemon, through
``server/daemon.py``). Every process started here is stopped by its handle.

redis-server comes from the package's one launcher (``engine/stores/launch.py``);
the cache server is started as a daemon, as ``spidercache server start`` does, not
as the tests' foreground child.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..engine.stores.launch import Process, free_port, start_redis
from ..errors import UserError


class _Process:
    """A server this benchmark started (and only it stops)."""

    def __init__(self, port: int, pid: int, stop: Callable[[], None]) -> None:
        self.port, self.pid, self.stop = port, pid, stop


def _start_redis(workdir: Path) -> Process:
    """redis-server without persistence on a free loopback port (the package's one launcher)."""
    try:
        return start_redis(workdir)
    except RuntimeError as exc:  # it did not answer: say so in one line
        raise UserError(str(exc)) from None


def _start_cache_server(**settings) -> _Process:
    """The cache server as users start it (``spidercache server start``: a daemon)."""
    from ..server.daemon import server_settings, start_server, stop_server

    port = free_port()
    config, options = server_settings(port=port, **settings)
    pid = start_server(config, options, "warning")
    return _Process(port, pid, lambda: stop_server("127.0.0.1", port, None))
