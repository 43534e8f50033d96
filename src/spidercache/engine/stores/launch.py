"""Start real servers on free loopback ports: redis-server (alone or as a
Redis Cluster) and memcached (one, or a pool for a ``with`` block).

One launcher for everything that needs a live store server: the tests'
fixtures (through ``spidercache.testing``), ``spidercache bench server`` (which
starts its own redis-server), and the map/reduce and weights commands
(throw-away memcached when the user names no ``--servers``: the real Debian
``memcached`` binary, the same one a user would run). ``server/launch.py``
starts the cache server with the same ``Process`` handle. Every process started
here is stopped by the same handle; nothing is found or killed by name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ...errors import UserError

HOST = "127.0.0.1"
START_TIMEOUT = 30.0


def free_port(also_free_offset: int | None = None) -> int:
    """A loopback port nobody listens on (and ``port + also_free_offset`` free
    too: a Redis Cluster node also listens on its port + 10000, the cluster bus)."""
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


def _answers(port: int, request: bytes | None = None, expect: bytes = b"", timeout: float = 0.5) -> bool:
    """Whether something on ``port`` accepts a connection (and answers ``request`` with ``expect``)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            if request is None:
                return True
            s.sendall(request)
            return s.recv(256).startswith(expect)
    except OSError:
        return False


@dataclass
class Process:
    """One running server process we started (and only we stop)."""

    kind: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    log: Path
    args: list[str] = field(default_factory=list)
    ready: Callable[[], bool] = field(default=lambda: True, repr=False)
    scheme: str = "tcp"
    env: dict[str, str] | None = field(default=None, repr=False)
    host: str = HOST

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        """``host:port``, the form the CLI's ``--servers`` takes."""
        return f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> tuple[str, int]:
        """``(host, port)``, the form the store classes take."""
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as in a crash (and reap it, so it is not left a zombie)."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.kind == "cache server":
            # a cache server killed with SIGKILL leaves its shared-memory segments behind
            for path in glob.glob(f"/dev/shm/spidercache-{self.port}-*"):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def restart(self) -> None:
        """Start the server again with the same arguments on the same port."""
        self.stop()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(
                    f"{self.kind} exited at start (code {self.proc.returncode}): {self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.kind} on port {self.port} did not answer within {START_TIMEOUT:.0f} s")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _launch(
    kind: str,
    port: int,
    args: list[str],
    workdir: Path,
    log: Path,
    ready: Callable[[], bool],
    scheme: str = "tcp",
    env: dict[str, str] | None = None,
) -> Process:
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
        )
    proc = Process(kind, port, popen, workdir, log, args, ready, scheme, env)
    proc.wait_ready()
    return proc


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"{name} is not installed (apt-get install {package})")
    return path


def _workdir(workdir: Path | None, prefix: str) -> Path:
    path = Path(workdir or tempfile.mkdtemp(prefix=prefix))
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_redis(workdir: Path | None = None, *, cluster: bool = False) -> Process:
    """A redis-server without persistence on a free loopback port (cluster-enabled with ``cluster``)."""
    binary = _binary("redis-server", "redis-server")
    workdir = _workdir(workdir, "spidercache-redis-")
    port = free_port(10000 if cluster else None)
    log = workdir / "redis.log"
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--pidfile",
        str(workdir / "redis.pid"),
        "--daemonize",
        "no",
        "--logfile",
        str(log),
        "--protected-mode",
        "no",
    ]
    if cluster:
        args += [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(workdir / "nodes.conf"),
            "--cluster-node-timeout",
            "2000",
        ]
    return _launch(
        "redis-server",
        port,
        args,
        workdir,
        log,
        lambda: _answers(port, b"PING\r\n", b"+PONG"),
        scheme="redis",
    )


def start_memcached(
    memory_mb: int = 256,
    item_size: str = "1m",
    workdir: Path | None = None,
    *,
    threads: int = 2,
    max_connections: int = 1024,
) -> Process:
    """A memcached on a free loopback port (the real Debian binary a user runs)."""
    binary = _binary("memcached", "memcached")
    workdir = _workdir(workdir, "spidercache-memcached-")
    port = free_port()
    log = workdir / "memcached.log"
    # memcached refuses to run as root unless told which user to be.
    user = ["-u", "root"] if os.geteuid() == 0 else []
    args = [
        binary,
        *user,
        "-l",
        HOST,
        "-p",
        str(port),
        "-U",
        "0",
        "-m",
        str(memory_mb),
        "-I",
        item_size,
        "-t",
        str(threads),
        "-c",
        str(max_connections),
    ]
    return _launch(
        "memcached",
        port,
        args,
        workdir,
        log,
        lambda: _answers(port, b"version\r\n", b"VERSION"),
        scheme="memcached",
    )


@dataclass
class ServerGroup:
    """Several servers used together (a memcached pool, a Redis Cluster)."""

    members: list[Process] = field(default_factory=list)
    scheme: str = "memcached"

    @property
    def servers(self) -> list[tuple[str, int]]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        return f"{self.scheme}://" + ",".join(m.address for m in self.members)

    def stop(self) -> None:
        for m in self.members:
            m.stop()


def start_redis_cluster(workdir: Path | None = None, masters: int = 3) -> ServerGroup:
    """``masters`` cluster-enabled redis-servers joined with ``redis-cli --cluster create`` (no replicas)."""
    cli = _binary("redis-cli", "redis-tools")
    workdir = _workdir(workdir, "spidercache-redis-cluster-")
    group = ServerGroup(scheme="redis-cluster")
    try:
        for i in range(masters):
            group.members.append(start_redis(workdir / f"node{i}", cluster=True))
        create = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[m.address for m in group.members],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if create.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {create.stdout[-1500:]} {create.stderr[-500:]}"
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            states = [
                subprocess.run(
                    [cli, "-h", h, "-p", str(p), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                for h, p in group.servers
            ]
            if all("cluster_state:ok" in s for s in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)
    except BaseException:
        group.stop()
        raise
    return group


def rss_bytes(pid: int) -> int:
    """Resident set of a process (anonymous + file + shared memory pages it touched)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


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
