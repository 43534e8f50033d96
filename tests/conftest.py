"""Real servers for the tests: redis-server, a Redis Cluster and memcached.

Each fixture starts the Debian binary on a free loopback port, with its own
directory (and pidfile) under pytest's tmp area, waits until it answers, and
stops it afterwards. No mocks, no fakeredis. A fixture skips (never fails) only
when the binary is missing; ``make test`` installs both, so CI runs them.

Session-scoped fixtures are shared: tests that use them should write under a
prefix of their own (``key_prefix`` gives one). Tests that kill a server use
the function-scoped ``*_fn`` variants.

Yielded objects have ``.host``, ``.port``, ``.url``, ``.kill()`` (SIGKILL, for
"server gone mid-use") and ``.alive``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
_START_TIMEOUT = 15.0


def _free_port(also_free_offset: int | None = None) -> int:
    """A loopback port nobody listens on (and port+offset, for the cluster bus)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if also_free_offset is None:
            return port
        other = port + also_free_offset
        if other >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, other))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port found")


def _ask(port: int, request: bytes, expect: bytes, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(request)
            return s.recv(256).startswith(expect)
    except OSError:
        return False


@dataclass
class ServerProcess:
    """One running server process we started (and only we stop)."""

    kind: str
    host: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    log: Path
    scheme: str = "redis"
    args: list[str] = field(default_factory=list)
    probe: tuple[bytes, bytes] = (b"PING\r\n", b"+PONG")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-use, as in a crash."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Start the server again on the same port (empty: nothing is persisted)."""
        self.stop()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        self.wait_ready(*self.probe)

    def stop(self) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_ready(self, probe: bytes, expect: bytes) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.kind} exited at start (code {self.proc.returncode}): "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            if _ask(self.port, probe, expect):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.kind} on port {self.port} did not answer in {_START_TIMEOUT}s")


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (make test installs it with apt-get)")
    return path


def start_redis(workdir: Path, *, cluster: bool = False) -> ServerProcess:
    binary = _need("redis-server")
    port = _free_port(10000 if cluster else None)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--pidfile", str(workdir / "redis.pid"), "--daemonize", "no",
            "--logfile", str(log), "--protected-mode", "no"]
    if cluster:
        args += ["--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
                 "--cluster-node-timeout", "2000"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = ServerProcess("redis-server", HOST, port, proc, workdir, log, args=args)
    server.wait_ready(*server.probe)
    return server


def start_memcached(workdir: Path, *, memory_mb: int = 64) -> ServerProcess:
    binary = _need("memcached")
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "memcached.log"
    args = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", str(memory_mb), "-t", "1", "-c", "256"]
    if os.geteuid() == 0:
        args += ["-u", "root"]  # memcached refuses to run as root without naming a user
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    (workdir / "memcached.pid").write_text(f"{proc.pid}\n")
    server = ServerProcess("memcached", HOST, port, proc, workdir, log, scheme="memcached", args=args,
                           probe=(b"version\r\n", b"VERSION"))
    server.wait_ready(*server.probe)
    return server


@dataclass
class ServerGroup:
    """Several servers used together (a memcached pool, a Redis Cluster)."""

    members: list[ServerProcess] = field(default_factory=list)
    scheme: str = "memcached"

    @property
    def servers(self) -> list[tuple[str, int]]:
        return [m.address for m in self.members]

    @property
    def url(self) -> str:
        return f"{self.scheme}://" + ",".join(f"{h}:{p}" for h, p in self.servers)

    def stop(self) -> None:
        for m in self.members:
            m.stop()


def start_redis_cluster(workdir: Path, masters: int = 3) -> ServerGroup:
    cli = _need("redis-cli")
    group = ServerGroup(scheme="redis-cluster")
    try:
        for i in range(masters):
            group.members.append(start_redis(workdir / f"node{i}", cluster=True))
        create = subprocess.run(
            [cli, "--cluster", "create", *[f"{h}:{p}" for h, p in group.servers],
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60)
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout[-1500:]} {create.stderr[-500:]}")
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            states = [subprocess.run([cli, "-h", h, "-p", str(p), "cluster", "info"], capture_output=True,
                                     text=True, timeout=10).stdout for h, p in group.servers]
            if all("cluster_state:ok" in s for s in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)
    except BaseException:
        group.stop()
        raise
    return group


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


@pytest.fixture
def key_prefix(request) -> str:
    """A prefix no other test uses, for keys in shared servers."""
    return f"t{uuid.uuid4().hex[:10]}"
