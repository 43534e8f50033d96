"""`spidercache server` / `spidercache session` as users run them (real daemons)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from spidercache.testing.servers import free_port


def run(home, *args, check=True):
    env = dict(os.environ, SPIDERCACHE_HOME=str(home))
    env.pop("SPIDERCACHE_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "spidercache", *args], capture_output=True, text=True,
                          env=env, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def daemon(tmp_path):
    """Start commands through the CLI; stop whatever is still up at the end."""
    ports = []

    def start(*args):
        port = free_port()
        ports.append(port)
        out = run(tmp_path, "server", "start", "-p", str(port), "-m", "64M", *args)
        return port, out

    yield start
    for port in ports:
        run(tmp_path, "server", "stop", "-p", str(port), check=False)


def test_admin_commands_round_trip(tmp_path, daemon):
    port, out = daemon()
    assert f"cache server running on 127.0.0.1:{port}" in out.stdout
    p = ["-p", str(port)]
    sid = int(run(tmp_path, "session", "new", "-m", "16M", "--spill", *p).stdout.strip())
    assert 0 < sid < 1 << 32
    rows = json.loads(run(tmp_path, "session", "list", "--json", *p).stdout)
    assert [r["session_id"] for r in rows] == [sid] and rows[0]["memory_budget"] == 16 << 20
    stats = json.loads(run(tmp_path, "session", "stats", str(sid), "--json", *p).stdout)
    assert stats["spill"] is True and stats["hits"] == 0
    status = json.loads(run(tmp_path, "server", "status", "--json", *p).stdout)
    assert status["memory_budget"] == 64 << 20 and len(status["sessions"]) == 1
    assert "sessions 1" in run(tmp_path, "server", "status", *p).stdout
    run(tmp_path, "session", "destroy", str(sid), *p)
    gone = run(tmp_path, "session", "stats", str(sid), *p, check=False)
    assert gone.returncode == 2 and gone.stderr.strip() == f"error: unknown session {sid} (never created, or destroyed)"
    assert "stopped" in run(tmp_path, "server", "stop", *p).stdout
    down = run(tmp_path, "server", "status", *p, check=False)
    assert down.returncode == 2 and "no cache server answers" in down.stderr
    assert "Traceback" not in down.stderr


def test_stale_pidfile_and_lock_after_kill_do_not_block_restart(tmp_path, daemon):
    port, _ = daemon()
    pid = int((tmp_path / f"server-{port}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / f"server-{port}.pid").exists()  # stale pidfile left behind
    out = run(tmp_path, "server", "start", "-p", str(port), "-m", "64M")
    assert "cache server running" in out.stdout
    assert int((tmp_path / f"server-{port}.pid").read_text()) != pid


def test_port_in_use_and_second_server(tmp_path, daemon):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        out = run(tmp_path, "server", "start", "-p", str(busy), check=False)
        assert out.returncode == 2
        assert out.stderr.strip() == f"error: cannot listen on 127.0.0.1:{busy}: the port is in use (or the address is not this machine's)"
    port, _ = daemon()
    again = run(tmp_path, "server", "start", "-p", str(port), check=False)
    assert again.returncode == 2 and "already running" in again.stderr


@pytest.mark.parametrize("args,message", [
    (["--host", "0.0.0.0"], "binding 0.0.0.0 exposes the cache beyond this machine: give --token SECRET"),
    (["-m", "lots"], "cannot read memory size 'lots'; write e.g. 512M or 2G"),
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["-p", "70000"], "port must lie in 1..65535, got 70000"),
])
def test_bad_start_arguments(tmp_path, args, message):
    out = run(tmp_path, "server", "start", *args, check=False)
    assert out.returncode == 2 and out.stderr.startswith(f"error: {message}") and "Traceback" not in out.stderr


def test_persist_survives_kill_9(tmp_path, daemon):
    from spidercache.server.client import DatasetCache

    port, _ = daemon("--persist")
    sid = int(run(tmp_path, "session", "new", "-p", str(port)).stdout)
    cache = DatasetCache(sid, port=port, pipeline="p")
    cache.put_many(range(5), [b"v%d" % i for i in range(5)])
    cache.close()
    os.kill(int((tmp_path / f"server-{port}.pid").read_text()), signal.SIGKILL)
    time.sleep(0.3)
    run(tmp_path, "server", "start", "-p", str(port), "-m", "64M", "--persist")
    again = DatasetCache(sid, port=port, pipeline="p")
    assert again.get_many(range(6)) == [b"v%d" % i for i in range(5)] + [None]
    again.close()
