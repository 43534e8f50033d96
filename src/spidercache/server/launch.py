"""Start the cache server (``python -m spidercache.server``) as a child process on a free port.

The same ``Process`` handle as the store servers (``engine/stores/launch.py``):
the tests' fixtures and ``spidercache bench server`` use it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..engine.stores.launch import HOST, Process, _launch, _workdir, free_port
from .admin import ping


def start_cache_server(
    home: Path | None = None, *args: str, port: int | None = None, token: str | None = None
) -> Process:
    """The cache server (``python -m spidercache.server``) as a child process on a free port.

    ``home`` becomes $SPIDERCACHE_HOME (pidfile, lock, log, default spill dir).
    """
    home = _workdir(home, "spidercache-home-")
    port = port or free_port()
    env = dict(os.environ, SPIDERCACHE_HOME=str(home))
    if token:
        env["SPIDERCACHE_TOKEN"] = token
    argv = [sys.executable, "-m", "spidercache.server", "-p", str(port), *args]
    return _launch(
        "cache server",
        port,
        argv,
        home,
        home / f"foreground-{port}.log",
        lambda: ping(HOST, port, token, timeout=0.5) is not None,
        scheme="grpc",
        env=env,
    )
