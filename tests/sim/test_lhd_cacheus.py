"""LHD and Cacheus against libCacheSim (PyPI ``libcachesim``) and plain-Python references.

Both draw random numbers. libCacheSim's generator is per thread, starts at a
fixed state and is shared by every cache run in that thread, so its *first*
run in a fresh process is reproducible: libCacheSim runs here each in its own
process, and our policies, built with their default seed, start from the same
state. Both then equal libCacheSim miss for miss, byte misses too (Cacheus's
adaptive SR-LRU split was found by comparing libCacheSim's hits request by
request: see ``spidercache.engine.policies.cacheus``).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ref_cacheus import RefCacheus
from ref_lhd import RefLHD
from test_sized_policies import held_sizes

from spidercache.engine.policies import make_policy
from spidercache.sim.formats import write_oracle_general

lcs = pytest.importorskip("libcachesim")


def _zipf(seed: int, n_keys: int, n_req: int, alpha: float = 0.9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, n_keys + 1) ** alpha)
    keys = np.searchsorted(cdf / cdf[-1], rng.random(n_req)).astype(np.int64)
    keys[::11] = n_keys + np.arange(keys[::11].size) % (2 * n_keys)  # a scan over cold keys
    return keys


def _sizes(keys: np.ndarray, seed: int, changed: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = (rng.integers(1, 64, int(keys.max()) + 1) * 512)[keys]
    if changed:  # some requests name another size than the object's first
        mask = rng.random(keys.size) < changed
        sizes[mask] = rng.integers(1, 64, int(mask.sum())) * 512
    return sizes


def _fresh_libcachesim(path, policy: str, capacity: int) -> tuple[float, float]:
    """(miss ratio, byte miss ratio) of libCacheSim's first run of ``policy`` in a new process."""
    code = (
        "import libcachesim as l, sys\n"
        "r = l.TraceReader(sys.argv[1], l.TraceType.ORACLE_GENERAL_TRACE)\n"
        "print(*getattr(l, sys.argv[2])(int(sys.argv[3]), hashpower=20).process_trace(r))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), policy, str(capacity)],
        capture_output=True,
        text=True,
        check=True,
    )
    miss, byte_miss = out.stdout.split()
    return float(miss), float(byte_miss)


def _ours(policy: str, keys, capacity: int, sizes=None) -> tuple[int, int]:
    """(misses, byte misses) of our policy."""
    p = make_policy(policy, capacity, by_bytes=sizes is not None)
    hits = p.access(keys, sizes=sizes)
    z = np.ones(keys.size, np.int64) if sizes is None else sizes
    return int(keys.size - hits.sum()), int(z.sum() - z[hits].sum())


@pytest.mark.parametrize("sized", [False, True])
def test_lhd_equals_plain_python_reference_hit_for_hit(sized):
    keys = _zipf(1, 3000, 25_000)
    sizes = _sizes(keys, 2, changed=0.05) if sized else None
    for cap in (1, 7, 300) if not sized else (4096, 150_000, 2_000_000):
        p = make_policy("lhd", cap, by_bytes=sized)
        ref = RefLHD(cap)
        ours = p.access(keys, sizes=sizes)
        z = np.ones(keys.size, np.int64) if sizes is None else sizes
        theirs = np.array([ref.access(int(k), int(s)) for k, s in zip(keys, z)])
        assert np.array_equal(ours, theirs), (cap, int((ours != theirs).sum()))
        assert p.used_bytes == ref.used and p.size == len(ref.tags)


@pytest.mark.parametrize("sized", [False, True])
def test_lhd_misses_equal_libcachesim(tmp_path, sized):
    keys = _zipf(3, 4000, 60_000)
    sizes = _sizes(keys, 4, changed=0.05) if sized else None
    path = tmp_path / "t.oracleGeneral"
    write_oracle_general(path, keys, sizes)
    total = keys.size if sizes is None else int(sizes.sum())
    for cap in (40, 300, 2000) if not sized else (20_000, 1 << 20, 8 << 20):
        miss, byte_miss = _fresh_libcachesim(path, "LHD", cap)
        assert _ours("lhd", keys, cap, sizes) == (round(miss * keys.size), round(byte_miss * total)), cap


@pytest.mark.parametrize("sized", [False, True])
def test_lhd_reconfigurations_equal_libcachesim(tmp_path, sized):
    # 2.2 M accesses: two re-estimations of the density table (every 2^20 accesses)
    keys = _zipf(5, 100_000, 2_200_000, alpha=0.8)
    sizes = _sizes(keys, 6) if sized else None
    path = tmp_path / "long.oracleGeneral"
    write_oracle_general(path, keys, sizes)
    cap = 4000 if not sized else 4000 * 16_000
    miss, byte_miss = _fresh_libcachesim(path, "LHD", cap)
    total = keys.size if sizes is None else int(sizes.sum())
    assert _ours("lhd", keys, cap, sizes) == (round(miss * keys.size), round(byte_miss * total))


def test_lhd_seed_changes_the_draws_not_the_rules():
    keys = _zipf(7, 3000, 30_000)
    a = make_policy("lhd", 200).access(keys)
    b = make_policy("lhd", 200, seed=12345).access(keys)
    assert not np.array_equal(a, b)
    assert abs(a.mean() - b.mean()) < 0.01


@pytest.mark.parametrize("sized", [False, True])
def test_cacheus_equals_plain_python_reference_hit_for_hit(sized):
    keys = _zipf(3, 4000, 30_000)
    sizes = _sizes(keys, 4, changed=0.05) if sized else None
    for cap in (2, 40, 300, 2000) if not sized else (20_000, 1 << 20, 8 << 20):
        p = make_policy("cacheus", cap, by_bytes=sized)
        ref = RefCacheus(cap)
        ours = p.access(keys, sizes=sizes)
        z = np.ones(keys.size, np.int64) if sizes is None else sizes
        theirs = np.array([ref.access(int(k), int(s)) for k, s in zip(keys, z)])
        assert np.array_equal(ours, theirs), (cap, int((ours != theirs).sum()))
        assert p.used_bytes == ref.used() and p.size == len(ref.R.d) + len(ref.SR.d)


def test_cacheus_tiny_and_zero_byte_objects_equal_the_reference():
    # SR grows to "bytes held - 1", which with zero-byte objects can be -1 (libCacheSim: unsigned)
    rng = np.random.default_rng(23)
    keys = rng.integers(0, 40, 4000)
    sizes = rng.integers(0, 4, 40)[keys] * rng.integers(0, 2, keys.size)
    for cap in (1, 2, 5, 13):
        p = make_policy("cacheus", cap, by_bytes=True)
        ref = RefCacheus(cap)
        theirs = np.array([ref.access(int(k), int(z)) for k, z in zip(keys, sizes)])
        assert np.array_equal(p.access(keys, sizes=sizes), theirs), cap
        assert p.used_bytes == ref.used() and p.size == len(ref.R.d) + len(ref.SR.d)


@pytest.mark.parametrize("seed,alpha", [(3, 0.9), (8, 1.1), (9, 0.7)])
@pytest.mark.parametrize("sizing", ["count", "sized", "changed"])
def test_cacheus_misses_equal_libcachesim(tmp_path, seed, alpha, sizing):
    # "changed": 5 % of the requests name another size than the object's (a hit keeps the old one)
    keys = _zipf(seed, 4000, 60_000, alpha)
    sizes = None if sizing == "count" else _sizes(keys, seed + 1, changed=0.05 * (sizing == "changed"))
    path = tmp_path / "t.oracleGeneral"
    write_oracle_general(path, keys, sizes)
    total = keys.size if sizes is None else int(sizes.sum())
    # odd capacities too: R and SR start at capacity // 2 each
    for cap in (7, 301, 2000) if sizes is None else (20_000, 1 << 20, (8 << 20) + 1):
        miss, byte_miss = _fresh_libcachesim(path, "Cacheus", cap)
        assert _ours("cacheus", keys, cap, sizes) == (round(miss * keys.size), round(byte_miss * total)), cap


def test_lhd_allocates_per_key_not_per_byte():
    keys = _zipf(11, 300, 5_000)
    small = make_policy("lhd", 1 << 12, int(keys.max()) + 1, by_bytes=True)
    large = make_policy("lhd", 1 << 40, int(keys.max()) + 1, by_bytes=True)
    for p in (small, large):
        p.access(keys, sizes=np.full(keys.size, 4096, np.int64))
    assert large.state_bytes() == small.state_bytes()


@pytest.mark.parametrize("name", ["lhd", "cacheus"])
@pytest.mark.parametrize("fixed_sizes", [False, True])
def test_tiny_caches_and_zero_byte_objects_keep_the_books(name, fixed_sizes):
    # (sizes that change from request to request: LHD's bytes held follow, and may pass the capacity
    # until the next miss evicts, as in libCacheSim; Cacheus keeps the inserted sizes)
    rng = np.random.default_rng(17)
    per_key = rng.integers(0, 20, 30)
    for cap in (1, 7, 40, 300):
        pol = make_policy(name, cap, by_bytes=True)
        for step in range(30):
            ids = rng.integers(0, 30, int(rng.integers(1, 40)))
            pol.access(ids, sizes=per_key[ids] if fixed_sizes else rng.integers(0, 20, ids.size))
            resident = pol.resident_ids()
            assert pol.size == resident.size
            assert pol.used_bytes == int(held_sizes(pol)[resident].sum())
            assert pol.used_bytes <= pol.capacity or (not fixed_sizes and name == "lhd")
            if step % 5 == 4:
                pol.remove(rng.integers(0, 30, 3))
            if step % 7 == 6:
                pol.resize(int(rng.integers(1, 2 * cap + 2)))
                assert pol.used_bytes <= pol.capacity
