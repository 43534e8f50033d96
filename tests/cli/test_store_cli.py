"""`spidercache store check` against real servers, and the errors a user can cause."""

import socket
import subprocess
import sys


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "spidercache", "store", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert needle in lines[0]


def test_check_redis_and_memcached_and_lmdb(redis_server, memcached_server, tmp_path):
    for spec in (
        f"redis://{redis_server.host}:{redis_server.port}/check",
        f"memcached://{memcached_server.host}:{memcached_server.port}",
        f"lmdb:{tmp_path / 'db'}",
        "memory:8",
    ):
        proc = run_cli(spec)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("ok:") and "checksum verified" in proc.stdout


def test_addresses_that_do_not_answer():
    port = free_port()
    assert_one_line_error(run_cli(f"redis://127.0.0.1:{port}"), str(port))
    assert_one_line_error(run_cli(f"memcached://127.0.0.1:{port}"), str(port))


def test_malformed_specs():
    assert_one_line_error(run_cli("floppy:/dev/fd0"), "unknown store")
    assert_one_line_error(run_cli("memory:-3"), "positive")
    assert_one_line_error(run_cli("redis://"), "bad store spec")


def test_a_probe_the_store_refuses_is_named_as_refused():
    # a 1 MB memory store refuses a 2 MB value: that is not a store that lost it
    assert_one_line_error(run_cli("memory:1", "--value-bytes", "2000000"), "refused the 2,000,048-byte")
