"""The servers the tests' fixtures start (tests/conftest.py): one import for them all.

The launchers themselves live where the package needs them too:
``engine/stores/launch.py`` (redis-server, Redis Cluster, memcached) and
``server/launch.py`` (the cache server). Only tests import ``spidercache.testing``.
"""

from __future__ import annotations

from ..engine.stores.launch import (
    HOST,
    Process,
    ServerGroup,
    free_port,
    memcached_pool,
    rss_bytes,
    start_memcached,
    start_redis,
    start_redis_cluster,
)
from ..server.launch import start_cache_server

__all__ = [
    "HOST",
    "Process",
    "ServerGroup",
    "free_port",
    "memcached_pool",
    "rss_bytes",
    "start_cache_server",
    "start_memcached",
    "start_redis",
    "start_redis_cluster",
]
