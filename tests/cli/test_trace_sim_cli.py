"""CLI tests for `spidercache trace gen`, `spidercache sim` and `spidercache bench sim`.

Every command runs as a real process (`python -m spidercache ...`), the way a
user runs it, so exit codes, stderr and the absence of tracebacks are what a
user would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

ROW_KEYS = {
    "policy",
    "cache_size",
    "unit",
    "capacity",
    "requests",
    "hits",
    "hit_ratio",
    "byte_hit_ratio",
    "seconds",
    "sim_seconds",
    "requests_per_second",
    "state_bytes",
}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "spidercache", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def plain_lru_hits(keys, capacity: int) -> int:
    """An obviously-correct LRU, to check the simulator end to end."""
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for k in map(int, keys):
        if k in cache:
            hits += 1
            cache.move_to_end(k)
        else:
            if len(cache) >= capacity:
                cache.popitem(last=False)
            cache[k] = None
    return hits


@pytest.fixture(scope="module")
def zipf_trace(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trace") / "zipf.npy"
    r = run_cli(
        "trace",
        "gen",
        "zipf",
        "--alpha",
        "0.8",
        "--keys",
        "500",
        "--requests",
        "20000",
        "--seed",
        "3",
        "-o",
        out,
    )
    assert r.returncode == 0, r.stderr
    return out


def test_trace_gen_writes_the_requested_trace(zipf_trace: Path) -> None:
    keys = np.load(zipf_trace)
    assert keys.shape == (20000,)
    assert keys.dtype == np.int64
    assert keys.min() >= 0 and keys.max() < 500
    # Same seed, same trace; another seed, another trace.
    again = zipf_trace.with_name("again.npy")
    other = zipf_trace.with_name("other.npy")
    assert (
        run_cli(
            "trace",
            "gen",
            "zipf",
            "--alpha",
            "0.8",
            "--keys",
            "500",
            "--requests",
            "20000",
            "--seed",
            "3",
            "-o",
            again,
        ).returncode
        == 0
    )
    assert (
        run_cli(
            "trace",
            "gen",
            "zipf",
            "--alpha",
            "0.8",
            "--keys",
            "500",
            "--requests",
            "20000",
            "--seed",
            "4",
            "-o",
            other,
        ).returncode
        == 0
    )
    assert np.array_equal(np.load(again), keys)
    assert not np.array_equal(np.load(other), keys)


def test_sim_table_lists_every_row(zipf_trace: Path) -> None:
    r = run_cli("sim", zipf_trace, "--policy", "lru", "--cache-size", "0.1,50")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("│ lru")]
    assert len(lines) == 2
    assert "50" in lines[1]


def test_sim_json_schema_and_hits(zipf_trace: Path) -> None:
    r = run_cli("sim", zipf_trace, "--policy", "lru", "--cache-size", "0.1,50", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 2
    keys = np.load(zipf_trace)
    n_distinct = np.unique(keys).size
    for row, capacity in zip(rows, [round(0.1 * n_distinct), 50]):
        assert set(row) == ROW_KEYS
        assert row["policy"] == "lru"
        assert row["capacity"] == capacity
        assert row["requests"] == keys.size
        assert row["hits"] == plain_lru_hits(keys, capacity)
        assert row["hit_ratio"] == pytest.approx(row["hits"] / keys.size)
        assert row["seconds"] > row["sim_seconds"] > 0  # the row's share of the remap is on top
        assert row["requests_per_second"] == pytest.approx(keys.size / row["seconds"])
        assert row["byte_hit_ratio"] is None and row["unit"] == "objects"


def test_sim_reads_text_traces(tmp_path: Path) -> None:
    keys = [5, 7, 5, 9, 7, 5, 11, 5]
    path = tmp_path / "recmg.txt"
    path.write_text("\n".join(map(str, keys[:4])) + "\n\n" + "\n".join(map(str, keys[4:])) + "\n")
    r = run_cli("sim", path, "--policy", "lru", "--cache-size", "2", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["requests"] == len(keys)
    assert row["hits"] == plain_lru_hits(keys, 2)


def test_sim_reads_csv_by_name_and_index(tmp_path: Path) -> None:
    keys = [3, 1, 3, 2, 1, 3, 3, 4]
    path = tmp_path / "trace.csv"
    path.write_text("time,key,size\n" + "".join(f"{i},{k},100\n" for i, k in enumerate(keys)))
    for column in ("key", "1"):
        r = run_cli("sim", path, "--column", column, "--policy", "lru", "--cache-size", "2", "--json")
        assert r.returncode == 0, r.stderr
        (row,) = json.loads(r.stdout)
        assert row["requests"] == len(keys)
        assert row["hits"] == plain_lru_hits(keys, 2)


def _bad_files(tmp: Path) -> dict[str, Path]:
    (tmp / "empty.txt").write_text("")
    (tmp / "blank.txt").write_text("\n\n")
    (tmp / "bad.txt").write_text("1\n2\nthree\n4\n")
    (tmp / "two.txt").write_text("1\n2 3\n")
    (tmp / "bad.csv").write_text("t,key\n0,1\n1,x\n")
    (tmp / "ok.csv").write_text("t,key\n0,1\n1,2\n")
    (tmp / "floats.npy").write_bytes(b"")
    np.save(tmp / "floats.npy", np.array([1.5, 2.5]))
    np.save(tmp / "empty.npy", np.array([], np.int64))
    (tmp / "blob.bin").write_bytes(bytes(range(256)))
    np.save(tmp / "ok.npy", np.array([1, 2, 1], np.int64))
    np.save(tmp / "sized.npy", np.array([1, 2, 1], np.int64))
    np.save(tmp / "sized.sizes.npy", np.array([10, 20, 10], np.int64))
    (tmp / "big.csv").write_text("t,key\n0,18446744073709551615\n1,5\n")
    (tmp / "mixed.txt").write_text("-1\n18446744073709551615\n")
    (tmp / "huge.txt").write_text("1\n18446744073709551616\n")
    (tmp / "short.vscsi").write_bytes(bytes(20))
    (tmp / "odd.oracleGeneral").write_bytes(bytes(25))
    (tmp / "bad.lis").write_text("12\n")
    return {p.name: p for p in tmp.iterdir()}


BAD_INPUTS = [
    (["sim", "{tmp}/missing.npy"], "not found"),
    (["sim", "{tmp}/empty.txt"], "empty"),
    (["sim", "{tmp}/blank.txt"], "empty"),
    (["sim", "{tmp}/empty.npy"], "empty"),
    (["sim", "{tmp}/bad.txt"], "line 3"),
    (["sim", "{tmp}/two.txt"], "line 2"),
    (["sim", "{tmp}/bad.csv", "--column", "key"], "line 3"),
    (["sim", "{tmp}/ok.csv"], "--column"),
    (["sim", "{tmp}/ok.csv", "--column", "nope"], "nope"),
    (["sim", "{tmp}/floats.npy"], "integers"),
    (["sim", "{tmp}/blob.bin"], "unknown trace format"),
    (["sim", "{tmp}/ok.npy", "--cache-size", "0"], "cache size"),
    (["sim", "{tmp}/ok.npy", "--cache-size", "0.1,-3"], "cache size"),
    (["sim", "{tmp}/ok.npy", "--cache-size", "big"], "cache size"),
    (["sim", "{tmp}/ok.npy", "--policy", "lru,belady2"], "unknown policy"),
    (["trace", "gen", "zipf", "--keys", "0", "-o", "{tmp}/z.npy"], "keys"),
    (["trace", "gen", "zipf", "--requests", "-1", "-o", "{tmp}/z.npy"], "requests"),
    (["trace", "gen", "zipf", "--alpha", "-1", "-o", "{tmp}/z.npy"], "alpha"),
    (["trace", "gen", "zipf", "-o", "{tmp}/no/such/dir/z.npy"], "does not exist"),
    (["bench", "sim", "--requests", "0", "--no-write-docs"], "requests"),
    (["sim", "{tmp}/big.csv", "--column", "key", "--cache-size", "abc"], "cache size"),
    (["sim", "{tmp}/ok.npy", "--cache-size", "1MiB"], "sizes"),
    (["sim", "{tmp}/ok.npy", "--cache-size", "0.1,1MiB"], "mix"),
    (["sim", "{tmp}/ok.npy", "--cache-size", "4Xb"], "unit"),
    (["sim", "{tmp}/mixed.txt"], "negative"),
    (["sim", "{tmp}/huge.txt"], "64 bits"),
    (["sim", "{tmp}/ok.npy", "--format", "parquet"], "format"),
    (["sim", "{tmp}/short.vscsi"], "vscsi"),
    (["sim", "{tmp}/odd.oracleGeneral"], "24-byte"),
    (["sim", "{tmp}/bad.lis"], "line 1"),
    (["sim", "{tmp}/ok.npy", "--workers", "-1"], "workers"),
    (["trace", "gen", "zipf", "--keys", "abc", "-o", "{tmp}/z.npy"], "keys"),
    (
        [
            "bench",
            "sim",
            "--trace",
            "{tmp}/ok.npy",
            "--policy",
            "lru",
            "--cache-size",
            "0",
            "--no-write-docs",
        ],
        "cache size",
    ),
]


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bad")
    _bad_files(tmp)
    return tmp


@pytest.mark.parametrize("args,needle", BAD_INPUTS, ids=[" ".join(a[:2]) + f" [{n}]" for a, n in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(bad_dir: Path, args: list[str], needle: str) -> None:
    r = run_cli(*[a.format(tmp=bad_dir) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    assert needle in lines[0]


def test_every_policy_runs_byte_sized(bad_dir: Path) -> None:
    # (once refused for LFU, ARC, S3-FIFO and OPT; a policy without a byte-sized form still is,
    # see tests/sim/test_sized_policies.py)
    r = run_cli(
        "sim",
        bad_dir / "sized.npy",
        "--cache-size",
        "25",
        "--bytes",
        "--json",
        "--no-keep-dense",
        "--policy",
        "lru,fifo,lfu,arc,s3fifo,opt,sieve,clock,twoq,gdsf,wtinylfu",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 11
    assert all(row["unit"] == "bytes" and row["byte_hit_ratio"] is not None for row in rows)


def test_bench_sim_small_run_writes_docs(tmp_path: Path) -> None:
    docs = tmp_path / "bench" / "sim.md"
    r = run_cli(
        "bench",
        "sim",
        "--requests",
        "30000",
        "--policy",
        "lru,fifo",
        "--cache-size",
        "0.05,0.2",
        "--repeat",
        "1",
        "--json",
        "--docs-path",
        docs,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["policy"] for row in rows] == ["lru", "lru", "fifo", "fifo", "sweep"]
    for row in rows[:-1]:
        assert row["requests"] == 30000 and "block" in row["trace"]
        # LRU and FIFO have no ties to break: both simulators must agree hit for hit
        # (libCacheSim reports 1 - miss ratio in floating point: 1e-12 is far below one request).
        assert row["abs_delta"] < 1e-12
        assert row["hit_ratio"] == pytest.approx(row["libcachesim_hit_ratio"], abs=1e-12)
        assert row["seconds"] > 0 and row["libcachesim_seconds"] > 0
        assert row["speed_ratio"] == pytest.approx(row["libcachesim_seconds"] / row["seconds"])
        assert 0 < row["state_bytes_per_key"] <= 64
    sweep = rows[-1]
    assert sweep["rows"] == 4
    assert sweep["speed_ratio"] == pytest.approx(sweep["libcachesim_seconds"] / sweep["seconds"])
    text = docs.read_text()
    assert "spidercache bench sim --requests 30000" in text
    assert text.count("\n| lru |") == 2 and "| sweep (all rows) |" in text


def test_bench_sim_with_byte_capacities_matches_byte_hit_ratios(tmp_path: Path) -> None:
    r = run_cli(
        "bench",
        "sim",
        "--requests",
        "30000",
        "--policy",
        "lru",
        "--cache-size",
        "64KiB,1MiB",
        "--repeat",
        "1",
        "--json",
        "--no-write-docs",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    for row in rows[:-1]:
        assert row["unit"] == "bytes"
        assert row["hit_ratio"] == pytest.approx(row["libcachesim_hit_ratio"], abs=1e-12)
        assert row["byte_hit_ratio"] == pytest.approx(row["libcachesim_byte_hit_ratio"], abs=1e-12)


def test_sim_byte_capacities_and_unsigned_csv(tmp_path: Path) -> None:
    path = tmp_path / "sized.csv"
    rows = [(2**64 - 1, 300), (5, 100), (2**64 - 1, 300), (9, 250), (5, 100), (2**64 - 1, 300)]
    path.write_text("time,obj_id,obj_size\n" + "".join(f"{i},{k},{z}\n" for i, (k, z) in enumerate(rows)))
    r = run_cli(
        "sim",
        path,
        "--column",
        "obj_id",
        "--size-column",
        "obj_size",
        "--policy",
        "lru",
        "--cache-size",
        "400,1e30",
        "--bytes",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    small, huge = json.loads(r.stdout)
    # 400 bytes: big (300) in; 5 (100) in: full; big hits; 9 (250) evicts 5 then big; 5 in (350);
    # big (300) evicts 9: one hit, 300 bytes of 1,350
    assert small["hits"] == 1 and small["unit"] == "bytes"
    assert small["byte_hit_ratio"] == pytest.approx(300 / 1350)
    assert huge["hits"] == 3 and huge["byte_hit_ratio"] == pytest.approx(700 / 1350)  # everything fits
    r = run_cli(
        "trace", "convert", path, "--column", "obj_id", "--size-column", "obj_size", "-o", tmp_path / "c.npy"
    )
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "c.npy").view(np.uint64)[0] == 2**64 - 1
    assert np.load(tmp_path / "c.sizes.npy").tolist() == [z for _, z in rows]
