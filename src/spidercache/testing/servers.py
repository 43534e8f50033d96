"""Start real servers on free loopback ports: redis-server, memcached and the cache server.

Used by ``spidercache bench server`` (which must start its own redis-server)
and by the tests. Every process started here is stopped by the same handle;
nothing is found or killed by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

HOST = "127.0.0.1"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Process:
    kind: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        """``host:port``, the form the CLI's ``--servers`` takes."""
        return f"{HOST}:{self.port}"

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
            import glob

            for path in glob.glob(f"/dev/shm/spidercache-{self.port}-*"):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait(proc: Process, ready) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"{proc.kind} exited at start (code {proc.proc.returncode}): {proc.log_tail()}")
        if ready():
            return
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.kind} on port {proc.port} did not answer within {START_TIMEOUT:.0f} s")


def start_redis(workdir: Path | None = None) -> Process:
    """A redis-server without persistence on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise UserError("redis-server is not installed (apt-get install redis-server)")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="spidercache-redis-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "redis.log"
    args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no", "--logfile", str(log), "--protected-mode", "no"]
    proc = Process("redis-server", port, subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                                            stderr=subprocess.STDOUT), workdir, log, args)

    def ready() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    _wait(proc, ready)
    return proc


def _answers_tcp(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_memcached(memory_mb: int = 256, item_size: str = "1m", workdir: Path | None = None) -> Process:
    """A memcached on a free loopback port (the real Debian binary a user runs)."""
    binary = shutil.which("memcached")
    if binary is None:
        raise UserError("memcached is not installed (apt-get install memcached)")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="spidercache-memcached-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "memcached.log"
    # memcached refuses to run as root unless told which user to be.
    user = ["-u", "root"] if os.geteuid() == 0 else []
    args = [binary, *user, "-l", HOST, "-p", str(port), "-U", "0", "-m", str(memory_mb),
            "-I", item_size, "-t", "2"]
    with open(log, "ab") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    proc = Process("memcached", port, popen, workdir, log, args)
    _wait(proc, lambda: _answers_tcp(port))
    return proc


def start_cache_server(home: Path | None = None, *args: str, port: int | None = None,
                       token: str | None = None) -> Process:
    """The cache server (``python -m spidercache.server``) as a child process on a free port.

    ``home`` becomes $SPIDERCACHE_HOME (pidfile, lock, log, default spill dir).
    """
    from ..server.admin import ping

    home = Path(home or tempfile.mkdtemp(prefix="spidercache-home-"))
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = dict(os.environ, SPIDERCACHE_HOME=str(home))
    if token:
        env["SPIDERCACHE_TOKEN"] = token
    argv = [sys.executable, "-m", "spidercache.server", "-p", str(port), *args]
    log = home / f"foreground-{port}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    proc = Process("cache server", port, popen, home, log, argv)
    _wait(proc, lambda: ping(HOST, port, token, timeout=0.5) is not None)
    return proc


def rss_bytes(pid: int) -> int:
    """Resident set of a process (anonymous + file + shared memory pages it touched)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
