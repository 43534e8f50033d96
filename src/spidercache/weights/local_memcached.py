"""Start throw-away memcached servers on free loopback ports.

The map/reduce command and the weights benchmark use this when the user names
no ``--servers``: they start the real Debian ``memcached`` binary, the same one
a user would run, and stop it when the job ends.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from ..testing.servers import Process, start_memcached


@contextlib.contextmanager
def memcached_pool(n: int = 2, memory_mb: int = 256, item_size: str = "1m") -> Iterator[list[Process]]:
    """``n`` memcached servers for the duration of a ``with`` block; ``.address`` is ``host:port``."""
    servers: list[Process] = []
    try:
        for _ in range(n):
            servers.append(start_memcached(memory_mb=memory_mb, item_size=item_size))
        yield servers
    finally:
        for server in servers:
            server.stop()
