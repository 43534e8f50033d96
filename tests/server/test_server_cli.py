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
    proc = subprocess.run(
        [sys.executable, "-m", "spidercache", *args], capture_output=True, text=True, env=env, timeout=60
    )
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
    assert (
        gone.returncode == 2
        and gone.stderr.strip() == f"error: unknown session {sid} (never created, or destroyed)"
    )
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
        assert (
            out.stderr.strip() == f"error: cannot listen on 127.0.0.1:{busy}: the port is in use "
            "(or the address is not this machine's)"
        )
    port, _ = daemon()
    again = run(tmp_path, "server", "start", "-p", str(port), check=False)
    assert again.returncode == 2 and "already running" in again.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--host", "0.0.0.0"], "binding 0.0.0.0 exposes the cache beyond this machine: give --token SECRET"),
        (["-m", "lots"], "cannot read memory size 'lots'; write e.g. 512M or 2G"),
        (["--policy", "nope"], "unknown policy 'nope'"),
        (["-p", "70000"], "port must lie in 1..65535, got 70000"),
        (["-m", "100000G"], "a memory budget of 100,000.0 GB is more than this machine's"),
        (
            ["-s", "/proc/forbidden/spill"],
            "cannot use spill directory /proc/forbidden/spill: No such file or directory",
        ),
        (["--log-level", "loud"], "log level must be one of debug, info, warning, error"),
    ],
)
def test_bad_start_arguments(tmp_path, args, message):
    out = run(tmp_path, "server", "start", *args, check=False)
    assert (
        out.returncode == 2 and out.stderr.startswith(f"error: {message}") and "Traceback" not in out.stderr
    )
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["server", "status", "-p", "abc"], "port must be a number in 1..65535, got 'abc'"),
        (["session", "destroy", "-1"], "session ids are positive integers, got -1"),
        (["session", "stats", "abc"], "session ids are positive integers, got 'abc'"),
    ],
)
def test_bad_admin_arguments_are_one_line(tmp_path, args, message):
    out = run(tmp_path, *args, check=False)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {message}", out.stderr


def test_dash_h_is_help_not_host(tmp_path):
    assert "Usage: spidercache server" in run(tmp_path, "server", "-h").stdout
    for args in (["server", "status", "-h"], ["server", "start", "-h"], ["session", "list", "-h"]):
        out = run(tmp_path, *args)
        assert "--host" in out.stdout and "Usage" in out.stdout


def test_session_list_keeps_the_whole_id_in_a_pipe(tmp_path, daemon):
    port, _ = daemon()
    p = ["-p", str(port)]
    ids = [run(tmp_path, "session", "new", *p).stdout.strip() for _ in range(2)]
    env = dict(os.environ, SPIDERCACHE_HOME=str(tmp_path), COLUMNS="80")
    listed = subprocess.run(
        [sys.executable, "-m", "spidercache", "session", "list", *p],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout  # stdout is a pipe, 80 columns
    assert all(sid in listed for sid in ids), listed
    status = run(tmp_path, "server", "status", *p).stdout
    assert "process RSS" in status and "sessions 2 of 256" in status


def test_stop_returns_once_the_process_has_exited(tmp_path, daemon):
    port, _ = daemon()
    pid = int((tmp_path / f"server-{port}.pid").read_text())
    run(tmp_path, "server", "stop", "-p", str(port))
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().split(")")[-1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z")  # gone, or only waiting for its reaper


def ms(home, tool, *args, check=True):
    env = dict(os.environ, SPIDERCACHE_HOME=str(home))
    out = subprocess.run(
        [sys.executable, "-m", "spidercache.cli.mindspore", tool, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_mindspore_command_lines(tmp_path):
    port = str(free_port())
    try:
        assert (
            "started"
            in ms(
                tmp_path,
                "cache_admin",
                "--start",
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-w",
                "2",
                "-s",
                str(tmp_path / "spill"),
                "-l",
                "2",
                "-m",
                "0.01",
            ).stdout
        )
        sid = int(ms(tmp_path, "cache_admin", "-g", "-p", port).stdout)
        assert str(sid) in ms(tmp_path, "cache_admin", "--list_sessions", "-p", port).stdout
        info = json.loads(ms(tmp_path, "cache_admin", "--server_info", "-p", port).stdout)
        assert info["workers"] == 2 and info["spill_dir"] == str(tmp_path / "spill")
        bad = ms(tmp_path, "cache_admin", "-d", "-1", "-p", port, check=False)
        assert (
            bad.returncode == 2 and bad.stderr.strip() == "error: session ids are positive integers, got -1"
        )
        ms(tmp_path, "cache_admin", "-d", str(sid), "-p", port)
        assert "no sessions" in ms(tmp_path, "cache_admin", "--list_sessions", "-p", port).stdout
    finally:
        ms(tmp_path, "cache_admin", "--stop", "-p", port, check=False)
    other = str(free_port())
    try:
        ms(tmp_path, "ms_cache_server", "start", "-m", "64M", "-nospill", "-h", "127.0.0.1", "-p", other)
        sid = int(ms(tmp_path, "ms_cache_server", "session", "-p", other).stdout)
        assert sid > 0
    finally:
        assert "stopped" in ms(tmp_path, "ms_cache_server", "stop", "-p", other).stdout
    wrong = ms(tmp_path, "cache_admin", "--start", "--stop", check=False)
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: cache_admin: argument --stop")


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
