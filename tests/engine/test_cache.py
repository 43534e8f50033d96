"""Cache = policy + store + statistics: right values always, honest counts, and a job that never stops."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from spidercache.engine.cache import Cache
from spidercache.engine.codec import decode, encode
from spidercache.engine.policies import make_policy
from spidercache.engine.stores import LMDBStore, MemcachedStore, MemoryStore, RedisStore
from spidercache.engine.stores.lmdb_store import _lmdb_key


def value_of(key: int) -> np.ndarray:
    """The one true value of a key (what a dataset would return)."""
    return np.arange(8, dtype=np.int64) + int(key) * 1000


class CountingLoader:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, keys: np.ndarray):
        self.calls.append(keys.tolist())
        return [value_of(k) for k in keys.tolist()]

    @property
    def loaded(self) -> int:
        return sum(len(c) for c in self.calls)


def assert_right(values, keys) -> None:
    for v, k in zip(values, np.asarray(keys).tolist()):
        assert v is not None
        np.testing.assert_array_equal(v, value_of(k))


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "arc", "s3fifo"])
def test_values_are_right_and_counts_match_the_policy(policy):
    rng = np.random.default_rng(0)
    cache = Cache(make_policy(policy, 20), MemoryStore())
    loader = CountingLoader()
    for _ in range(40):
        keys = rng.zipf(1.3, size=16) * 7919  # arbitrary ints, repeats inside batches
        assert_right(cache.get_or_load(keys, loader), keys)
    st, pst = cache.stats(), cache.policy.stats()
    assert st.requests == pst.requests == 640
    assert st.hits == pst.hits and st.misses == st.requests - st.hits
    assert st.errors == st.lost == st.store_unavailable == 0
    # each missing key is loaded at most once per batch (a repeat that the policy missed
    # again, e.g. not admitted, reuses the first load)
    assert st.loaded == loader.loaded <= st.misses
    # the store holds exactly the resident keys, under their original (not remapped) keys
    assert sorted(cache.store.keys()) == sorted(cache._remapper.keys(cache.policy.resident_ids()).tolist())
    # admitted-then-evicted inside one batch never reaches the store
    assert st.evictions <= pst.evictions and st.admissions <= pst.admissions
    assert st.admissions - st.evictions == cache.policy.size
    assert st.bytes_read > 0 and st.bytes_written > 0


def test_loader_sees_each_missing_key_once_in_first_appearance_order():
    cache = Cache(make_policy("lru", 10), MemoryStore())
    loader = CountingLoader()
    assert_right(cache.get_or_load([5, 3, 5, 9, 3], loader), [5, 3, 5, 9, 3])
    assert loader.calls == [[5, 3, 9]]
    assert_right(cache.get_or_load([9, 4, 5], loader), [9, 4, 5])
    assert loader.calls[-1] == [4]
    st = cache.stats()
    assert (st.requests, st.hits, st.admissions) == (8, 4, 4)  # 5 and 3 repeat in batch 1; 9, 5 in batch 2


def test_evictions_delete_values_from_the_store():
    cache = Cache(make_policy("fifo", 3), MemoryStore())
    cache.get_or_load(np.arange(5), CountingLoader())
    assert sorted(cache.store.keys()) == [2, 3, 4]  # 0 and 1 came and went within the batch
    cache.get_or_load(np.arange(5, 10), CountingLoader())
    assert sorted(cache.store.keys()) == [7, 8, 9]
    assert cache.stats().evictions == 3 and cache.stats().admissions == 6


def test_a_flipped_byte_is_an_error_and_a_miss_never_wrong_data():
    cache = Cache(make_policy("lru", 10), MemoryStore())
    loader = CountingLoader()
    cache.get_or_load([1, 2, 3], loader)
    damaged = bytearray(cache.store._data[2])
    damaged[-1] ^= 0x40
    cache.store._data[2] = bytes(damaged)
    values = cache.get_or_load([1, 2, 3], loader)
    assert_right(values, [1, 2, 3])
    st = cache.stats()
    assert st.errors == 1 and st.hits == 2 and loader.calls[-1] == [2]
    np.testing.assert_array_equal(decode(cache.store.get(2)), value_of(2))  # damaged bytes replaced
    assert_right(cache.get_or_load([2], loader), [2])
    assert cache.stats().hits == 3 and len(loader.calls) == 2
    # without a loader, the damaged value is a plain miss (None), never the damaged data
    damaged = bytearray(cache.store._data[2])
    damaged[40] ^= 0x01
    cache.store._data[2] = bytes(damaged)
    values = cache.get_many([2, 1])
    assert values[0] is None
    assert_right(values[1:], [1])
    assert cache.stats().errors == 2


def test_a_value_the_store_lost_is_counted_and_reloaded(tmp_path):
    cache = Cache(make_policy("lru", 10), LMDBStore(tmp_path / "db"))
    loader = CountingLoader()
    cache.get_or_load([10, 20], loader)
    cache.store.delete(20)  # gone behind the cache's back
    assert_right(cache.get_or_load([10, 20], loader), [10, 20])
    st = cache.stats()
    assert st.lost == 1 and st.hits == 1 and loader.calls[-1] == [20]
    cache.close()


def test_store_byte_budget_refusals_are_counted_and_leave_the_policy():
    one = len(encode(value_of(0)))
    cache = Cache(make_policy("lru", 10), MemoryStore(budget_bytes=2 * one))
    loader = CountingLoader()
    assert_right(cache.get_or_load([1, 2, 3, 4], loader), [1, 2, 3, 4])
    st = cache.stats()
    assert st.admissions == 2 and st.rejected == 2
    assert cache.policy.size == 2 and len(cache.store) == 2
    assert_right(cache.get_or_load([1, 2, 3, 4], loader), [1, 2, 3, 4])
    assert cache.stats().lost == 0  # refused values are not resident, so never "lost"


def test_split_get_many_then_put_many():
    cache = Cache(make_policy("lru", 4), MemoryStore())
    keys = [100, 200, 100]
    assert cache.get_many(keys) == [None, None, None]
    assert cache.put_many([100, 200], [value_of(100), value_of(200)]) == 2
    assert cache.put_many([100], [value_of(100)]) == 0  # already stored
    assert_right(cache.get_many(keys), keys)
    # admitted but never put: a miss (counted as lost), not an error, and it leaves the policy
    cache.get_many([300])
    assert cache.get_many([300]) == [None]
    assert cache.stats().lost == 1 and cache.stats().errors == 0


def test_dense_ids_are_used_directly_and_opt_works_on_a_trace():
    from spidercache.engine.nextuse import next_use_positions

    trace = np.random.default_rng(3).integers(0, 30, 400)
    nxt = next_use_positions(trace)
    opt = make_policy("opt", 8, next_use=nxt)
    cache = Cache(opt, MemoryStore(), dense_ids=True)
    loader = CountingLoader()
    for start in range(0, trace.size, 50):
        batch = trace[start : start + 50]
        assert_right(cache.get_or_load(batch, loader), batch)
    assert cache.stats().hits == opt.stats().hits > 0
    assert set(cache.store.keys()) == set(opt.resident_ids().tolist())


def test_invalidate_forgets_a_key_everywhere():
    cache = Cache(make_policy("lru", 4), MemoryStore())
    cache.get_or_load([1, 2], CountingLoader())
    cache.invalidate([1])
    assert 1 not in cache.store and cache.policy.size == 1


def test_existing_eviction_callback_still_runs():
    seen = []
    policy = make_policy("lru", 2, on_evict=seen.append)
    cache = Cache(policy, MemoryStore(), dense_ids=True)
    cache.get_or_load([0, 1, 2, 3], CountingLoader())
    assert sorted(np.concatenate(seen).tolist()) == [0, 1]


def test_compressed_values_in_a_persistent_store_survive_a_new_cache(tmp_path):
    path = tmp_path / "db"
    cache = Cache(make_policy("lru", 10), LMDBStore(path), compress=True)
    cache.get_or_load([7, 8], CountingLoader())
    cache.close()
    store = LMDBStore(path)
    with store.env.begin() as txn:
        raw = txn.get(_lmdb_key(7))
    np.testing.assert_array_equal(decode(raw), value_of(7))
    # a new cache starts cold (its policy is empty) but never serves wrong data
    cache = Cache(make_policy("lru", 10), store)
    assert_right(cache.get_or_load([7, 8], CountingLoader()), [7, 8])
    cache.close()


def test_threads_share_a_cache_and_always_get_the_right_values():
    cache = Cache(make_policy("arc", 50), MemoryStore())
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(60):
                keys = rng.integers(0, 200, 24)
                assert_right(cache.get_or_load(keys, CountingLoader()), keys)
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.stats().requests == 4 * 60 * 24 and cache.stats().errors == 0


# ------------------------------------------------ the store goes away
def test_redis_killed_mid_use_the_job_keeps_going_and_the_cache_comes_back(redis_server_fn):
    store = RedisStore(redis_server_fn.host, redis_server_fn.port, prefix="job")
    cache = Cache(make_policy("lru", 100), store, retry_after=3600)
    loader = CountingLoader()
    keys = np.arange(20)
    cache.get_or_load(keys, loader)
    assert_right(cache.get_or_load(keys, loader), keys)
    assert cache.stats().hits == 20

    redis_server_fn.kill()
    for _ in range(3):
        assert_right(cache.get_or_load(keys, loader), keys)  # served by the loader
    st = cache.stats()
    assert st.store_unavailable == 1  # one failure, then it backs off instead of hammering
    assert st.bypassed == 40 and cache.store_down
    assert "Redis" in cache.last_error

    # the server comes back (empty); once the back-off expires the cache uses it again
    redis_server_fn.restart()
    cache.stores[0].backoff.down_until = 0.0  # the back-off elapsing, without sleeping in a test
    assert_right(cache.get_or_load(keys, loader), keys)
    assert_right(cache.get_or_load(keys, loader), keys)
    st2 = cache.stats()
    assert not cache.store_down
    assert st2.lost == 20  # resident ids whose values died with the server: misses, then reloaded
    assert st2.admissions > st.admissions and st2.hits == st.hits + 20
    cache.close()


def test_memcached_server_killed_mid_use_the_job_keeps_going(memcached_pool_fn):
    store = MemcachedStore(memcached_pool_fn.servers, prefix="job")
    cache = Cache(make_policy("s3fifo", 100), store, retry_after=0.0)
    loader = CountingLoader()
    keys = np.arange(40)
    cache.get_or_load(keys, loader)
    memcached_pool_fn.members[0].kill()
    for _ in range(3):
        assert_right(cache.get_or_load(keys, loader), keys)
    st = cache.stats()
    assert st.store_unavailable >= 3  # retry_after=0: it tries the store every time, and counts each failure
    assert st.errors == 0
    cache.close()


def test_decode_many_checks_every_value_like_decode():
    import torch

    from spidercache.engine import codec

    ts = [torch.full((2, 3), float(i)) for i in range(6)]
    bufs = [codec.encode(t) for t in ts] + [codec.encode(np.arange(3)), codec.encode({"a": 1})]
    bad_one = bytearray(bufs[3])
    bad_one[-1] ^= 0xFF  # a flipped payload bit inside a run of equal headers
    bufs[3] = bytes(bad_one)
    bufs.insert(5, codec.encode(torch.zeros(4, dtype=torch.int64)))  # another header breaks the run
    out, bad = codec.decode_many(bufs)
    assert bad == [3] and out[3] is None
    for k, i in ((0, 0), (1, 1), (2, 2), (4, 4), (6, 5)):
        assert torch.equal(out[k], ts[i])
    assert torch.equal(out[5], torch.zeros(4, dtype=torch.int64))
    assert np.array_equal(out[7], np.arange(3)) and out[8] == {"a": 1}
    truncated = bufs[0][:-1]
    assert codec.decode_many([bufs[0], truncated])[1] == [1]


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "arc", "s3fifo", "clock", "sieve"])
def test_decide_gives_a_plan_a_store_can_follow(policy):
    """From an engine policy's access: admitted = resident after the batch and not before, evicted =
    resident before and not after; a store that writes the one and drops the other holds the residents."""
    from spidercache.engine.plan import decide

    rng = np.random.default_rng(1)
    p = make_policy(policy, 16)
    stored: set[int] = set()
    for _ in range(60):
        ids = rng.integers(0, 60, 24)
        before = set(p.resident_ids().tolist())
        lk = decide(p, ids)
        after = set(p.resident_ids().tolist())
        assert set(lk.evicted.tolist()) == before - after and lk.evicted.size == len(before - after)
        assert set(ids[lk.admit].tolist()) == after - before
        assert not lk.substituted.any() and np.array_equal(lk.served, ids)
        stored = (stored | set(ids[lk.admit].tolist())) - set(lk.evicted.tolist())
        assert stored == after


def test_a_loader_that_gives_none_is_not_counted_as_a_store_losing_values():
    c = Cache(make_policy("lru", 10), MemoryStore())
    calls = []
    for _ in range(3):
        got = c.get_or_load(
            [1, 2], lambda ks: calls.append(ks.tolist()) or [None if k == 1 else b"v" for k in ks]
        )
        assert got == [None, b"v"]
    st = c.stats()
    assert st.lost == 0 and st.admissions == 1 and st.hits == 2  # 2 is cached; 1 has no value to cache
    assert calls == [[1, 2], [1], [1]]
