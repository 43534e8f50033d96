"""libCacheSim's ``test/test_evictionAlgo.c`` rerun on a trace of the same shape (its own cannot be shipped).

libCacheSim checks its eviction algorithms on ``cloudPhysicsIO.oracleGeneral.bin``
(a VMware block trace: 113,872 requests, 4,368,040,448 bytes requested), at the
8 byte capacities ``128 MiB, 256 MiB, ... 1 GiB`` (``CACHE_SIZE`` 1 GiB in steps
of ``STEP_SIZE`` 128 MiB, ``test/common.h``), hash power 20, and asserts four
counts per capacity: requests, misses, bytes requested and bytes missed. That
trace is binary, is not in the pip package and cannot be fetched here.

What this test takes from it: the request count, the capacities, the counts
compared (misses and byte misses, exactly), the format (oracleGeneral: packed
``u32 time, u64 id, u32 size, i64 next access``, the next access being the
position of the object's next request, -1 for none, which libCacheSim's Belady
reads) and the policies (LRU, FIFO, LFU, ARC and Belady of its list; also
CLOCK, SIEVE and GDSF, which it lists too). It generates a block-like trace of
that shape (113,872 requests, ~49,700 block addresses of one size each as in the
oracleGeneral conversion, 512-byte multiples from 4 KiB to 512 KiB, ~4.4 GB
requested; a Zipf hot set, random cold blocks, sequential 64 KiB scans partly
read again), writes that FILE, reads it with libCacheSim's reader (pip
``libcachesim``, ``TraceReader`` with ``ORACLE_GENERAL_TRACE``) and with ours,
checks both read the same requests, and runs both at the 8 capacities.

What it does not compare: libCacheSim's published numbers (``miss_cnt_true``
etc.), which belong to its trace; the Cacheus, LHD and LeCaR rows, which draw
random numbers (``test_lhd_cacheus.py`` runs those one fresh process each).
About 10-20 s on 2 loaded cores.
"""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.engine.ids import remap_trace
from spidercache.engine.nextuse import NEVER, next_use_positions
from spidercache.sim.formats import write_oracle_general
from spidercache.sim.simulate import simulate
from spidercache.sim.traces import load_trace

lcs = pytest.importorskip("libcachesim")

N_REQ = 113_872  # g_req_cnt_true
MIB = 1 << 20
CAPACITIES = [k * 128 * MIB for k in range(1, 9)]  # CACHE_SIZE / STEP_SIZE sizes
HASHPOWER = 20
POLICIES = {"lru": "LRU", "fifo": "FIFO", "lfu": "LFU", "arc": "ARC", "opt": "Belady"}
ALSO = {"clock": "Clock", "sieve": "Sieve", "gdsf": "GDSF"}


def cloudphysics_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(block address per request, bytes per request): one size per block."""
    rng = np.random.default_rng(seed)
    n_hot = 14_000
    hot_lbn = rng.choice(1 << 27, n_hot, replace=False).astype(np.int64) * 8
    cdf = np.cumsum(np.arange(1, n_hot + 1, dtype=np.float64) ** -0.8)
    kind = rng.random(N_REQ)
    keys = np.empty(N_REQ, np.int64)
    hot = kind < 0.62
    keys[hot] = hot_lbn[np.searchsorted(cdf / cdf[-1], rng.random(int(hot.sum())))]
    cold = (kind >= 0.62) & (kind < 0.80)
    keys[cold] = (1 << 30) + rng.integers(0, 1 << 27, int(cold.sum())) * 8
    scan = np.flatnonzero(kind >= 0.80)  # runs of 16 consecutive 64 KiB extents, 35 % read again
    starts = np.repeat((1 << 31) + rng.integers(0, 1 << 20, scan.size // 16 + 1) * 1024, 16)
    keys[scan] = starts[: scan.size] + (np.arange(scan.size) % 16) * 128
    again = rng.random(scan.size) < 0.35
    keys[scan[again]] = keys[scan[rng.integers(0, scan.size, int(again.sum()))]]
    blocks, inv = np.unique(keys, return_inverse=True)
    sectors = np.array([8, 16, 32, 64, 128, 256, 512, 1024])
    per_block = 512 * rng.choice(sectors, blocks.size, p=[0.34, 0.18, 0.15, 0.14, 0.10, 0.06, 0.025, 0.005])
    per_block[blocks >= 1 << 31] = 64 << 10
    return keys, per_block[inv]


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    keys, sizes = cloudphysics_like()
    nxt = next_use_positions(remap_trace(keys)[0])
    path = tmp_path_factory.mktemp("lcs") / "cloudPhysicsLike.oracleGeneral.bin"
    write_oracle_general(path, keys, sizes, np.where(nxt == NEVER, -1, nxt))
    return path, keys, sizes, nxt


def test_both_readers_read_the_same_requests(trace_file):
    path, keys, sizes, nxt = trace_file
    ours = load_trace(path)
    assert np.array_equal(ours.keys, keys) and np.array_equal(ours.sizes, sizes)
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    assert reader.n_total_req == N_REQ
    theirs = np.array([(r.obj_id, r.obj_size, r.next_access_vtime) for r in reader], np.int64)
    assert np.array_equal(theirs[:, 0], keys) and np.array_equal(theirs[:, 1], sizes)
    assert np.array_equal(theirs[:, 2], np.where(nxt == NEVER, np.iinfo(np.int64).max, nxt))
    assert len(np.unique(keys)) > 45_000 and 4.0e9 < sizes.sum() < 4.8e9  # the shape said above


@pytest.mark.parametrize("policy", [*POLICIES, *ALSO])
def test_misses_and_byte_misses_equal_libcachesim_at_its_8_capacities(trace_file, policy):
    path, _, _, _ = trace_file
    trace = load_trace(path)
    total = int(trace.sizes.sum())
    rows = simulate(trace.keys, [policy], CAPACITIES, sizes=trace.sizes, by_bytes=True)
    ours, theirs = [], []
    for row, cap in zip(rows, CAPACITIES):
        assert row["capacity"] == cap and row["requests"] == N_REQ
        ours.append((N_REQ - row["hits"], total - round(row["byte_hit_ratio"] * total)))
        reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
        cache = getattr(lcs, {**POLICIES, **ALSO}[policy])(cap, hashpower=HASHPOWER)
        miss, byte_miss = cache.process_trace(reader)
        theirs.append((round(miss * N_REQ), round(byte_miss * total)))
    assert ours == theirs
    assert ours[0][0] > ours[-1][0]  # the capacities matter on this trace
