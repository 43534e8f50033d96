"""Cache-server fixtures: real server processes on free loopback ports."""

from __future__ import annotations

import pytest

from spidercache.server.admin import AdminClient
from spidercache.testing.servers import start_cache_server


@pytest.fixture
def fresh_server(tmp_path):
    """A server of the test's own (for tests that kill or restart it)."""
    started = []

    def start(*args: str, port: int | None = None, token: str | None = None, home=None):
        proc = start_cache_server(home or tmp_path / "home", *args, port=port, token=token)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def new_session():
    """new_session(port, memory_bytes=0, spill=False, token=None) -> a fresh session id."""

    def make(port: int, memory_bytes: int = 0, spill: bool = False, token: str | None = None) -> int:
        with AdminClient("127.0.0.1", port, token) as admin:
            return admin.new_session(memory_bytes, spill)["session_id"]

    return make
