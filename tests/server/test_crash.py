"""A dead or restarted server: bounded time to StoreUnavailable, never stale values (issue 15, item 1)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from spidercache.errors import StoreUnavailable
from spidercache.server.client import DatasetCache
from spidercache.server.limits import PING_TIMEOUT_SECONDS, STALE_AFTER_SECONDS

BOUND = STALE_AFTER_SECONDS + PING_TIMEOUT_SECONDS  # documented in docs/server.md
VALUES = [bytes([i]) * 1000 for i in range(100)]


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0]


def _reads_until_unavailable(cache: DatasetCache, limit: float) -> tuple[float, int]:
    """Read every 20 ms until StoreUnavailable; (seconds it took, values served meanwhile)."""
    start = time.monotonic()
    served = 0
    while True:
        try:
            got = cache.get_many(range(100))
        except StoreUnavailable:
            return time.monotonic() - start, served
        assert all(g is None or g == v for g, v in zip(got, VALUES))
        served += sum(g is not None for g in got)
        assert time.monotonic() - start < limit, f"still reading a dead server after {limit} s"
        time.sleep(0.02)


def test_zombie_server_is_noticed_within_the_bound(fresh_server, new_session):
    server = fresh_server("-m", "64M", "--no-spill")
    cache = DatasetCache(new_session(server.port), port=server.port, pipeline="p")
    cache.put_many(range(100), VALUES)
    assert cache.shared_memory and cache.get_many(range(100)) == VALUES
    os.kill(server.pid, signal.SIGKILL)  # nobody reaps it: a zombie, as in a container without an init
    time.sleep(0.3)
    assert _state(server.pid) == "Z"  # os.kill(pid, 0) still succeeds on it
    took, _ = _reads_until_unavailable(cache, BOUND + 2.0)
    assert took <= BOUND + 1.0
    with pytest.raises(StoreUnavailable):  # and it stays so
        cache.get_many([1])
    server.proc.wait()


def test_restart_without_persist_never_serves_the_old_session(fresh_server, new_session, tmp_path):
    home = tmp_path / "home"
    server = fresh_server("-m", "64M", "-s", str(tmp_path / "spill"), home=home)
    cache = DatasetCache(new_session(server.port), port=server.port, pipeline="p")
    cache.put_many(range(100), VALUES)
    assert cache.shared_memory and cache.get_many(range(100)) == VALUES
    server.kill()
    again = fresh_server("-m", "64M", "-s", str(tmp_path / "spill"), port=server.port, home=home)
    # the new server marked the old segments destroyed: the very next read is refused
    with pytest.raises(StoreUnavailable, match="destroyed, or its server was restarted"):
        cache.get_many(range(100))
    for _ in range(3):  # the session is gone: no re-attach, no values, no user error
        with pytest.raises(StoreUnavailable, match="no longer exists"):
            cache.get_many(range(100))
    assert again.alive


def test_restart_with_persist_reattaches_to_the_existing_session(fresh_server, new_session, tmp_path):
    home, spill = tmp_path / "home", str(tmp_path / "spill")
    server = fresh_server("-m", "64M", "-s", spill, "--persist", home=home)
    cache = DatasetCache(new_session(server.port), port=server.port, pipeline="p")
    cache.put_many(range(100), VALUES)
    server.kill()
    fresh_server("-m", "64M", "-s", spill, "--persist", port=server.port, home=home)
    with pytest.raises(StoreUnavailable):
        cache.get_many(range(100))  # the old mapping is refused once
    assert cache.get_many(range(100)) == VALUES  # then it attaches again to the same session
    assert cache.shared_memory


def test_frozen_server_is_noticed_within_the_bound(fresh_server, new_session):
    server = fresh_server("-m", "64M", "--no-spill")
    cache = DatasetCache(new_session(server.port), port=server.port, pipeline="p", timeout=2.0)
    cache.put_many(range(100), VALUES)
    os.kill(server.pid, signal.SIGSTOP)  # alive to os.kill(pid, 0), but no heartbeat and no answer
    try:
        took, _ = _reads_until_unavailable(cache, BOUND + 2.0)
        assert took <= BOUND + 1.0
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert np.all([v == w for v, w in zip(cache.get_many(range(100)), VALUES)])  # it recovers
