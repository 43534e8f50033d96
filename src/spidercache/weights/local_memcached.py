"""Start throw-away memcached servers on free loopback ports.

The map/reduce command and the weights benchmark use this when the user names
no ``--servers``: they start the real Debian ``memcached`` binary, the same one
a user would run, and stop it when the job ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from typing import Iterator

from ..errors import UserError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"memcached on port {port} exited at start (status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise UserError(f"memcached on port {port} did not start listening within {timeout:.0f} s")


class MemcachedProcess:
    """One memcached server; ``address`` is ``"127.0.0.1:PORT"``."""

    def __init__(self, memory_mb: int = 256, item_size: str = "1m", port: int | None = None) -> None:
        binary = shutil.which("memcached") or ("/usr/bin/memcached" if os.path.exists("/usr/bin/memcached") else None)
        if binary is None:
            raise UserError("memcached is not installed (Debian package 'memcached')")
        self.port = port or free_port()
        # memcached refuses to run as root unless told which user to be.
        user = ["-u", "root"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [binary, *user, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
             "-m", str(memory_mb), "-I", item_size, "-t", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_listening(self.port, self.proc)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crashed node would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def memcached_pool(n: int = 2, memory_mb: int = 256, item_size: str = "1m") -> Iterator[list[MemcachedProcess]]:
    """``n`` memcached servers for the duration of a ``with`` block."""
    servers: list[MemcachedProcess] = []
    try:
        for _ in range(n):
            servers.append(MemcachedProcess(memory_mb=memory_mb, item_size=item_size))
        yield servers
    finally:
        for server in servers:
            server.stop()
