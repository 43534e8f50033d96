"""Traces as users bring them: names, encodings, zero-size requests, byte units (tenth session's tests)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from spidercache.errors import UserError
from spidercache.sim.formats import write_oracle_general
from spidercache.sim.simulate import simulate
from spidercache.sim.traces import load_trace, write_trace


def test_an_npy_named_oracle_general_is_read_as_npy(tmp_path):
    keys = np.arange(48, dtype=np.int64) % 7  # 48 x 8 bytes: also a whole number of 24-byte records
    write_trace(tmp_path / "cloud.oracleGeneral.npy", keys)
    assert np.array_equal(load_trace(tmp_path / "cloud.oracleGeneral.npy").keys, keys)


def test_zero_size_requests_are_skipped_as_libcachesim_skips_them(tmp_path):
    lcs = pytest.importorskip("libcachesim")
    rng = np.random.default_rng(0)
    keys = (rng.zipf(1.2, 3000) % 500).astype(np.int64)
    sizes = rng.integers(1, 4000, keys.size)
    sizes[rng.random(keys.size) < 0.06] = 0
    write_oracle_general(tmp_path / "z.oracleGeneral", keys, sizes)
    for cap in (20_000, 100_000):
        row = simulate(keys, ["lru"], [cap], sizes=sizes, by_bytes=True)[0]
        reader = lcs.TraceReader(str(tmp_path / "z.oracleGeneral"), lcs.TraceType.ORACLE_GENERAL_TRACE)
        miss, byte_miss = lcs.LRU(cap).process_trace(reader)
        assert row["requests"] == int((sizes > 0).sum())
        assert 1 - row["hit_ratio"] == pytest.approx(miss, abs=1e-12)
        assert 1 - row["byte_hit_ratio"] == pytest.approx(byte_miss, abs=1e-12)


def test_a_size_with_a_unit_is_bytes_even_at_one():
    keys, sizes = np.array([1, 2, 1, 2]), np.array([1, 1, 1, 1])
    assert simulate(keys, ["lru"], ["1B"], sizes=sizes)[0]["capacity"] == 1
    assert simulate(keys, ["lru"], ["1"], sizes=sizes, by_bytes=True)[0]["capacity"] == 2  # a fraction


def test_csv_with_a_byte_order_mark_keeps_its_first_row_and_non_utf8_is_one_error(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf11,100\r\n12,100\r\n11,100\r\n")
    trace = load_trace(bom, column=0, size_column=1)
    assert trace.keys.tolist() == [11, 12, 11] and trace.sizes.tolist() == [100, 100, 100]
    named = tmp_path / "named.csv"
    named.write_bytes(b"\xef\xbb\xbfobj_id,size\n5,1\n")
    assert load_trace(named, column="obj_id").keys.tolist() == [5]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,size\n1,\xff\n")
    with pytest.raises(UserError, match="not UTF-8"):
        load_trace(latin, column="id", size_column="size")


def test_two_keys_on_a_line_are_refused_even_beside_a_blank_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"1 2\n\n3\n")
    with pytest.raises(UserError, match="line 1"):
        load_trace(path)
    path.write_bytes(b"1\n\n 2 \r\n3\n")
    assert load_trace(path).keys.tolist() == [1, 2, 3]


def test_trace_gen_with_a_negative_seed_is_one_error_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "spidercache", "trace", "gen", "zipf", "--keys", "5", "--requests", "10",
         "--seed", "-1", "-o", str(tmp_path / "s.npy")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: --seed must be at least 0, got -1"]
