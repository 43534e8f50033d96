"""LHD and Cacheus against libCacheSim (PyPI ``libcachesim``) and plain-Python references.

Both draw random numbers. libCacheSim's generator is per thread, starts at a
fixed state and is shared by every cache run in that thread, so its *first*
run in a fresh process is reproducible: libCacheSim runs here each in its own
process, and our policies, built with their default seed, start from the same
state. LHD then equals libCacheSim miss for miss (byte misses too); Cacheus
within the bound below (see ``spidercache.engine.policies.cacheus``).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ref_lhd import RefLHD

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
