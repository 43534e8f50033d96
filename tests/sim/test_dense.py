"""The dense trace kept beside its input (``sim.dense``): reused while the input is
unchanged, rebuilt when it changes, never written with ``keep=False``; rows keep
charging the remap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from spidercache.engine.ids import remap_trace
from spidercache.sim.dense import dense_path, load_dense
from spidercache.sim.simulate import simulate
from spidercache.sim.traces import write_trace


def _trace(tmp_path, seed=0, name="t.npy", sizes=False):
    rng = np.random.default_rng(seed)
    keys = (rng.zipf(1.2, 30_000) * 7919).astype(np.int64)  # a span wider than the requests
    sz = rng.integers(1, 9, keys.size) * 512 if sizes else None
    return write_trace(tmp_path / name, keys, sz), keys, sz


def test_second_load_reuses_the_files_and_equals_a_fresh_remap(tmp_path):
    path, keys, sizes = _trace(tmp_path, sizes=True)
    first = load_dense(path)
    assert not first.cached and dense_path(path).exists()
    second = load_dense(path)
    assert second.cached
    ids, n = remap_trace(keys)
    for d in (first, second):
        assert np.array_equal(d.ids, ids) and d.ids.dtype == np.int64 and d.n == n
        assert np.array_equal(d.sizes, sizes)
        assert np.array_equal(d.id_keys[d.ids], keys)
    assert second.remap_seconds == first.remap_seconds > 0


def test_a_changed_input_is_remapped(tmp_path):
    path, _, _ = _trace(tmp_path, seed=1)
    load_dense(path)
    recorded = path.stat().st_mtime_ns
    _, keys2, _ = _trace(tmp_path, seed=2)  # same name, same length, other content
    os.utime(path, ns=(recorded, recorded))
    again = load_dense(path)  # same size and mtime: the content sample tells them apart
    assert not again.cached
    assert np.array_equal(again.ids, remap_trace(keys2)[0])
    assert load_dense(path).cached


def test_a_copy_keeping_size_and_mtime_that_differs_outside_the_samples_is_remapped(tmp_path):
    path, _, _ = _trace(tmp_path, seed=4)
    load_dense(path)
    st = path.stat()
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * (64 << 10) + 16_000  # a gap between the start and middle samples
    data[70_000] ^= 0xFF  # inside it
    (tmp_path / "copy.npy").write_bytes(bytes(data))
    os.utime(tmp_path / "copy.npy", ns=(st.st_atime_ns, st.st_mtime_ns))
    subprocess.run(["cp", "-p", str(tmp_path / "copy.npy"), str(path)], check=True)
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    again = load_dense(path)
    assert not again.cached
    assert np.array_equal(again.ids, remap_trace(np.load(path))[0])


def test_keep_false_writes_nothing_and_a_damaged_file_is_ignored(tmp_path):
    path, keys, _ = _trace(tmp_path, seed=3)
    assert not load_dense(path, keep=False).cached
    assert not dense_path(path).exists()
    load_dense(path)
    dense_path(path).write_bytes(b"not an archive")
    d = load_dense(path)
    assert not d.cached and np.array_equal(d.ids, remap_trace(keys)[0])


def test_two_writers_leave_one_whole_file(tmp_path):
    path, keys, _ = _trace(tmp_path, seed=7)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", f"from spidercache.sim.dense import load_dense; load_dense({str(path)!r})"]
        )
        for _ in range(3)
    ]
    assert all(p.wait(timeout=300) == 0 for p in runs)
    d = load_dense(path)
    assert d.cached and np.array_equal(d.ids, remap_trace(keys)[0])
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


def test_read_only_directory_runs_without_keeping(tmp_path):
    path, keys, _ = _trace(tmp_path, seed=4)
    os.chmod(tmp_path, 0o555)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores the mode: nothing to check here
            return
        d = load_dense(path)
        assert not d.cached and np.array_equal(d.ids, remap_trace(keys)[0])
    finally:
        os.chmod(tmp_path, 0o755)


def test_rows_from_a_kept_trace_charge_the_recorded_remap(tmp_path):
    path, keys, _ = _trace(tmp_path, seed=5)
    load_dense(path)
    d = load_dense(path)
    rows = simulate(d.ids, ["lru", "fifo"], [0.1], dense=(d.ids, d.n), remap_seconds=d.remap_seconds)
    fresh = simulate(keys, ["lru", "fifo"], [0.1])
    for row, ref in zip(rows, fresh):
        assert row["hits"] == ref["hits"]
        assert row["seconds"] >= row["sim_seconds"] + d.remap_seconds / 2


def test_cli_keeps_the_dense_trace_unless_told_not_to(tmp_path):
    path, _, _ = _trace(tmp_path, seed=6)
    other = tmp_path / "u.npy"
    other.write_bytes(path.read_bytes())
    run = [
        sys.executable,
        "-m",
        "spidercache",
        "sim",
        "--policy",
        "lru",
        "--cache-size",
        "50",
        "--json",
    ]
    a = subprocess.run([*run, str(path)], capture_output=True, text=True, timeout=300)
    b = subprocess.run(
        [*run, "--no-keep-dense", str(other)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert dense_path(path).exists()
    assert not dense_path(other).exists()
    assert json.loads(a.stdout)[0]["hits"] == json.loads(b.stdout)[0]["hits"]
