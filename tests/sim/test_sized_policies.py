"""Byte-sized LFU, ARC, S3-FIFO and OPT: the paths libCacheSim's runs never take.

(Their misses and byte misses equal libCacheSim's, see ``test_libcachesim``.)
With every object of size 1 a byte-sized policy is the object-count one, hit for
hit; ``remove`` and ``resize`` keep the byte count equal to what is resident.
"""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.engine.policies import POLICIES, make_policy
from spidercache.engine.policies.lru import LRU
from spidercache.engine.policies.opt import next_use_positions
from spidercache.errors import UserError
from spidercache.sim.simulate import simulate

SIZED = ["lfu", "arc", "s3fifo", "opt", "lhd", "cacheus"]


def _trace(seed: int, n: int = 20_000, keys: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hot = rng.zipf(1.3, n) % keys
    hot[::7] = keys + rng.integers(0, 3 * keys, hot[::7].size)  # some cold traffic
    return hot.astype(np.int64)


def _make(name, cap, ids, **kw):
    extra = {"next_use": next_use_positions(ids)} if name == "opt" else {}
    return make_policy(name, cap, int(ids.max()) + 1, **extra, **kw)


@pytest.mark.parametrize("name", SIZED)
@pytest.mark.parametrize("cap", [20, 150, 900])
def test_unit_sizes_equal_the_object_count_policy(name, cap):
    ids = _trace(cap)
    count = _make(name, cap, ids).access(ids)
    sized = _make(name, cap, ids, by_bytes=True).access(ids, sizes=np.ones(ids.size, np.int64))
    assert np.array_equal(count, sized)


def held_sizes(pol) -> np.ndarray:
    """Each id's size as the policy holds it (Cacheus keeps SR-LRU's copy)."""
    return pol._asz if pol.name == "cacheus" else pol._osize


# LHD and Cacheus take the request's size on some hits (as libCacheSim does), so the bytes they
# hold follow the sizes last given: they get one size per object, and the capacity holds
TAKE_NEW_SIZE = ("lhd", "cacheus")


@pytest.mark.parametrize(
    "name", ["lru", "fifo", "lfu", "arc", "s3fifo", "twoq", "gdsf", "wtinylfu", "lecar", *TAKE_NEW_SIZE]
)
def test_removals_and_resizes_keep_the_byte_count(name):
    rng = np.random.default_rng(5)
    ids_all = _trace(9, n=6_000, keys=200)
    sizes_all = rng.integers(1, 400, ids_all.size)
    if name in TAKE_NEW_SIZE:
        sizes_all = rng.integers(1, 400, int(ids_all.max()) + 1)[ids_all]
    pol = make_policy(name, 20_000, by_bytes=True)
    for step, lo in enumerate(range(0, ids_all.size, 300)):
        ids, sizes = ids_all[lo : lo + 300], sizes_all[lo : lo + 300]
        hits = pol.access(ids, sizes=sizes)
        assert hits.size == ids.size
        resident = pol.resident_ids()
        assert pol.used_bytes == int(held_sizes(pol)[resident].sum()) <= pol.capacity
        assert pol.size == resident.size
        gone = np.unique(rng.integers(0, 200, 5))
        was = pol.contains(gone)
        assert pol.remove(gone) == int(was.sum())
        assert not pol.contains(gone).any()
        if step % 4 == 3:
            pol.resize(int(rng.integers(2_000, 40_000)))
        resident = pol.resident_ids()
        assert pol.used_bytes == int(held_sizes(pol)[resident].sum()) <= pol.capacity


def test_opt_sized_evicts_farthest_until_the_newcomer_fits():
    ids = np.array([0, 1, 2, 0, 1, 2, 3, 0], np.int64)
    sizes = np.array([4, 4, 4, 4, 4, 4, 8, 4], np.int64)
    pol = _make("opt", 12, ids, by_bytes=True)
    # 0,1,2 fill 12 bytes; 3 (8 bytes) evicts 1 and 2 (next used never), keeping 0
    assert pol.access(ids, sizes=sizes).tolist() == [
        False,
        False,
        False,
        True,
        True,
        True,
        False,
        True,
    ]


class _CountOnly(LRU):
    name = "countonly"
    supports_sizes = False


def test_a_policy_without_a_byte_sized_form_is_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(
        POLICIES, _CountOnly.name, f"{__name__}:_CountOnly"
    )  # the registry is lazy: "module:attr"
    keys = np.array([1, 2, 1, 3], np.int64)
    with pytest.raises(UserError, match="does not run with object sizes"):
        simulate(keys, ["lru", "countonly"], ["1KiB"], sizes=np.full(4, 10, np.int64))
    assert simulate(keys, ["countonly"], [2])[0]["hits"] == 1


@pytest.mark.parametrize(
    "name", ["lru", "fifo", "lfu", "arc", "s3fifo", "twoq", "gdsf", "wtinylfu", "lecar", "cacheus"]
)
def test_a_large_byte_capacity_allocates_per_key_not_per_byte(name):
    # (S3-FIFO's object-count rings and W-TinyLFU's filter were once sized by the capacity in bytes)
    ids = _trace(11, n=5_000, keys=300)
    n = int(ids.max()) + 1
    pol = make_policy(name, 1 << 30, n, by_bytes=True)
    pol.access(ids, sizes=np.full(ids.size, 4096, np.int64))
    assert pol.state_bytes() / n <= 64


def test_wtinylfu_hash_is_xxh64():
    xxhash = pytest.importorskip("xxhash")
    from spidercache.engine.policies.wtinylfu import SEED_A, SEED_B, xxh64_u64

    for key in (0, 1, 12345, 2**63 + 5, 2**64 - 1, 987654321987):
        for seed in (SEED_A, SEED_B):
            want = xxhash.xxh64_intdigest(int(key).to_bytes(8, "little"), seed=seed)
            assert int(xxh64_u64(np.uint64(key), seed)) == want


@pytest.mark.parametrize(
    "name", ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "clock", "twoq", "gdsf", "wtinylfu", "lecar"]
)
def test_tiny_caches_and_zero_byte_objects_keep_the_books(name):
    # (GDSF divided by a 0-byte size and ARC by a 0-byte ghost list before)
    rng = np.random.default_rng(hash(name) % 2**32)
    for cap in (1, 7, 40, 300):
        pol = make_policy(name, cap, by_bytes=True)
        for step in range(30):
            ids = rng.integers(0, 30, int(rng.integers(1, 40)))
            pol.access(ids, sizes=rng.integers(0, 20, ids.size))
            resident = pol.resident_ids()
            assert pol.size == resident.size
            assert pol.used_bytes == int(pol._osize[resident].sum()) <= pol.capacity
            if step % 5 == 4:
                pol.remove(rng.integers(0, 30, 3))
            if step % 7 == 6:
                pol.resize(int(rng.integers(1, 2 * cap + 2)))
