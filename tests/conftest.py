"""Real servers for the tests: redis-server, a Redis Cluster and memcached.

Each fixture starts the Debian binary on a free loopback port, with its own
directory (and pidfile) under pytest's tmp area, waits until it answers, and
stops it afterwards. No mocks, no fakeredis. A fixture skips (never fails) only
when the binary is missing; ``make test`` installs both, so CI runs them.

Session-scoped fixtures are shared: tests that use them should write under a
prefix of their own (``key_prefix`` gives one). Tests that kill a server use
the function-scoped ``*_fn`` variants.

Yielded objects (``spidercache.testing.servers.Process``) have ``.host``, ``.port``,
``.url``, ``.endpoint`` (host, port), ``.kill()`` (SIGKILL, for
"server gone mid-use") and ``.alive``.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from spidercache.testing import servers
from spidercache.testing.servers import Process, ServerGroup


def _need(*binaries: str) -> None:
    for binary in binaries:
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (make test installs it with apt-get)")


def start_redis(workdir: Path) -> Process:
    _need("redis-server")
    return servers.start_redis(workdir)


def start_redis_cluster(workdir: Path) -> ServerGroup:
    _need("redis-server", "redis-cli")
    return servers.start_redis_cluster(workdir)


def start_memcached(workdir: Path) -> Process:
    _need("memcached")
    # small and single-threaded: many tests run side by side on a 2-core box
    return servers.start_memcached(memory_mb=64, workdir=workdir, threads=1, max_connections=256)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_server_fn(tmp_path):
    """A Redis server of the test's own (it may kill it)."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    group = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield group
    group.stop()


@pytest.fixture
def redis_cluster_fn(tmp_path):
    """A Redis Cluster of the test's own (it may kill a node); about 2 s to start."""
    group = start_redis_cluster(tmp_path / "redis-cluster")
    yield group
    group.stop()


@pytest.fixture(scope="session")
def memcached_server(tmp_path_factory):
    server = start_memcached(tmp_path_factory.mktemp("memcached"))
    yield server
    server.stop()


@pytest.fixture
def memcached_server_fn(tmp_path):
    """A memcached server of the test's own (it may kill it)."""
    server = start_memcached(tmp_path / "memcached")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_pool(tmp_path_factory):
    """Two memcached servers, for tests of hashing and chunking across servers."""
    base = tmp_path_factory.mktemp("memcached-pool")
    group = ServerGroup()
    try:
        for i in range(2):
            group.members.append(start_memcached(base / f"m{i}"))
        yield group
    finally:
        group.stop()


@pytest.fixture
def memcached_pool_fn(tmp_path):
    """Two memcached servers of the test's own (it may kill one)."""
    group = ServerGroup()
    try:
        for i in range(2):
            group.members.append(start_memcached(tmp_path / f"m{i}"))
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="module")
def cache_server(tmp_path_factory):
    """One cache server (256 MB, spill allowed) shared by a module's tests; each test makes its own
    session."""
    home = tmp_path_factory.mktemp("cache-home")
    proc = servers.start_cache_server(home, "-m", "256M", "-s", str(home / "spill"))
    yield proc
    proc.stop()


@pytest.fixture
def key_prefix(request) -> str:
    """A prefix no other test uses, for keys in shared servers."""
    return f"t{uuid.uuid4().hex[:10]}"
