"""Each store's own promises (byte budgets, server failures, key layout).

The contract they all pass is tests/contracts/test_store_contract.py."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient

from spidercache.engine.codec import decode, encode
from spidercache.engine.stores import (
    LMDBStore,
    MemcachedStore,
    MemoryStore,
    RedisStore,
    SpillStore,
    open_store,
)
from spidercache.errors import StoreUnavailable, UserError


# --------------------------------------------------------------- memory
def test_memory_store_enforces_its_byte_budget_and_keeps_values_without_copies():
    s = MemoryStore(budget_bytes=1000)
    a, b, c = b"a" * 600, b"b" * 300, b"c" * 200
    assert s.put_many([1, 2, 3], [a, b, c]).tolist() == [True, True, False]
    assert s.nbytes() == 900 and s.free_bytes() == 100
    assert s.get(1) is a  # the very object, not a copy
    assert s.put(1, b"x" * 700)  # replacing frees the old value first
    assert s.nbytes() == 1000
    s.delete_many([2])
    assert s.put(3, c) and s.nbytes() == 900 and len(s) == 2


# ----------------------------------------------------------------- LMDB
def test_lmdb_reopened_after_close_holds_its_data(tmp_path):
    path = tmp_path / "persist"
    arr = np.arange(500, dtype=np.float64)
    s = LMDBStore(path)
    s.put_many([1, 2, "k"], [encode(arr), encode(b"two"), encode({"x": 1})])
    s.delete(2)
    s.close()
    s = LMDBStore(path)
    assert len(s) == 2
    np.testing.assert_array_equal(decode(s.get(1)), arr)
    assert s.get(2) is None and decode(s.get("k")) == {"x": 1}
    s.close()


def test_lmdb_grows_its_map_when_full(tmp_path):
    s = LMDBStore(tmp_path / "small", map_size=64 * 1024)
    values = [encode(np.full(20_000, i, np.uint8)) for i in range(20)]  # ~400 KB > 64 KB map
    assert s.put_many(list(range(20)), values).all()
    assert [bytes(v) for v in s.get_many(list(range(20)))] == values
    assert s.map_size > 64 * 1024
    s.close()


def test_lmdb_store_pickles_as_its_path(tmp_path):
    s = LMDBStore(tmp_path / "p")
    s.put(1, encode(b"shared"))
    s.close()
    clone = pickle.loads(pickle.dumps(s))
    assert decode(clone.get(1)) == b"shared"
    clone.close()


# ---------------------------------------------------------------- spill
def test_spill_puts_what_does_not_fit_on_disk_and_reads_both(tmp_path):
    s = SpillStore(MemoryStore(1000), LMDBStore(tmp_path / "spill"))
    big = [bytes([i]) * 400 for i in range(5)]
    assert s.put_many(list(range(5)), big).all()
    assert len(s.memory) == 2 and len(s.disk) == 3
    assert [bytes(v) for v in s.get_many(range(5))] == big
    # a value that grows too big for memory moves to disk; the stale memory copy goes
    assert s.put(0, b"z" * 2000)
    assert 0 not in s.memory and bytes(s.get(0)) == b"z" * 2000
    # a value that fits memory again drops its old disk copy
    s.delete_many([1])
    assert s.put(0, b"small")
    assert 0 in s.memory and 0 not in s.disk and bytes(s.get(0)) == b"small"
    s.close()


# ---------------------------------------------------------------- redis
def test_redis_keys_carry_the_prefix(redis_server, key_prefix):
    s = RedisStore(redis_server.host, redis_server.port, prefix=key_prefix)
    s.put_many([1, 2], [b"x", b"y"])
    raw = redis.Redis(redis_server.host, redis_server.port)
    assert sorted(raw.keys(f"{key_prefix}:*")) == [f"{key_prefix}:i:1".encode(), f"{key_prefix}:i:2".encode()]
    other = RedisStore(redis_server.host, redis_server.port, prefix=key_prefix + "other")
    assert other.get(1) is None  # another cache on the same server sees nothing
    assert s.clear() == 2 and s.get(1) is None
    raw.close()
    s.close()
    other.close()


def test_redis_server_killed_mid_use_raises_store_unavailable(redis_server_fn):
    s = RedisStore(redis_server_fn.host, redis_server_fn.port, prefix="k")
    s.put_many([1], [b"v"])
    redis_server_fn.kill()
    for op in (lambda: s.get_many([1]), lambda: s.put_many([2], [b"w"]), lambda: s.delete_many([1])):
        with pytest.raises(StoreUnavailable, match=str(redis_server_fn.port)):
            op()


def test_redis_bad_address_raises_store_unavailable_at_start():
    from spidercache.testing.servers import free_port as _free_port

    port = _free_port()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port} does not answer"):
        RedisStore("127.0.0.1", port)
    with pytest.raises(StoreUnavailable):
        RedisStore(cluster=True, startup_nodes=[("127.0.0.1", port)])


def test_redis_cluster_spreads_keys_over_its_masters(redis_cluster, key_prefix):
    s = RedisStore(url=redis_cluster.url + "/" + key_prefix)
    assert s.cluster and s.prefix == key_prefix
    keys = list(range(300))
    s.put_many(keys, [encode(np.int64(k)) for k in keys])
    assert [decode(v) for v in s.get_many(keys)] == keys
    counts = [redis.Redis(h, p).dbsize() for h, p in redis_cluster.servers]
    assert all(c > 0 for c in counts)
    s.delete_many(keys)
    assert all(v is None for v in s.get_many(keys))
    s.close()


def test_redis_cluster_node_killed_mid_use_raises_store_unavailable(redis_cluster_fn):
    s = RedisStore(cluster=True, startup_nodes=redis_cluster_fn.servers, prefix="k")
    keys = list(range(100))  # spread over all three masters
    s.put_many(keys, [b"v"] * 100)
    redis_cluster_fn.members[1].kill()
    for op in (lambda: s.get_many(keys), lambda: s.put_many(keys, [b"w"] * 100)):
        with pytest.raises(StoreUnavailable, match=str(redis_cluster_fn.members[1].port)):
            op()
    s.close()


# ------------------------------------------------------------ memcached
def test_memcached_splits_a_3mb_value_over_two_servers(memcached_pool, key_prefix):
    s = MemcachedStore(memcached_pool.servers, prefix=key_prefix)
    value = encode(np.random.default_rng(1).integers(0, 255, 3 * 1024 * 1024, dtype=np.uint8))
    assert s.put(9, value)
    assert bytes(s.get(9)) == value
    items = [int(MemcacheClient(addr).stats()[b"curr_items"]) for addr in memcached_pool.servers]
    assert all(n > 0 for n in items)  # the chunks landed on both servers
    s.delete(9)
    assert s.get(9) is None
    s.close()


def test_memcached_half_written_value_is_a_miss_never_half_a_value(memcached_pool, key_prefix):
    s = MemcachedStore(memcached_pool.servers, prefix=key_prefix)
    value = b"\x01" * (2 * s.chunk_size + 123)
    s.put_many([1, 2], [value, value])
    manifest = s._client.get(s._entry_key(1))
    assert manifest[:1] == b"M"
    nonce = int.from_bytes(manifest[1:9], "little")
    s._client.delete(f"{s._entry_key(1)}:{nonce:016x}:1", noreply=False)  # lose the middle chunk
    # and damage a chunk of key 2 without changing its length
    nonce2 = int.from_bytes(s._client.get(s._entry_key(2))[1:9], "little")
    ck = f"{s._entry_key(2)}:{nonce2:016x}:0"
    chunk = bytearray(s._client.get(ck))
    chunk[10] ^= 0xFF
    s._client.set(ck, bytes(chunk), noreply=False)
    assert s.get_many([1, 2]) == [None, None]
    s.close()


def test_memcached_server_killed_mid_use_raises_store_unavailable(memcached_pool_fn):
    s = MemcachedStore(memcached_pool_fn.servers, prefix="k")
    keys = list(range(50))
    s.put_many(keys, [b"v"] * 50)
    memcached_pool_fn.members[1].kill()
    for op in (lambda: s.get_many(keys), lambda: s.put_many(keys, [b"w"] * 50)):
        with pytest.raises(StoreUnavailable):
            op()
    with pytest.raises(StoreUnavailable):  # it keeps failing loudly, it is not dropped from the ring
        s.get_many(keys)
    s.close()


def test_memcached_list_kept_on_every_server_survives_one(memcached_pool_fn):
    s = MemcachedStore(memcached_pool_fn.servers, prefix="k")
    assert s.read_everywhere("nodes") == []
    assert s.append_everywhere("nodes", b"a\n") == 2
    assert s.append_everywhere("nodes", b"b\n") == 2
    assert s.read_everywhere("nodes") == [b"a\nb\n", b"a\nb\n"]
    assert bytes(s.get("nodes")) == b"a\nb\n"  # an ordinary value for the store's own reads
    memcached_pool_fn.members[0].kill()
    assert s.append_everywhere("nodes", b"c\n") == 1
    assert s.read_everywhere("nodes") == [b"a\nb\nc\n"]
    memcached_pool_fn.members[1].kill()
    with pytest.raises(StoreUnavailable):
        s.read_everywhere("nodes")
    with pytest.raises(StoreUnavailable):
        s.append_everywhere("nodes", b"d\n")
    s.close()


def test_memcached_delete_of_a_chunked_value_is_a_miss_at_once(memcached_pool, key_prefix):
    s = MemcachedStore(memcached_pool.servers, prefix=key_prefix)
    s.put_many([1, 2], [b"\x02" * (3 * s.chunk_size), b"small"])
    s.delete_many([1, 2, 404])
    assert s.get_many([1, 2]) == [None, None]
    s.close()


def test_memcached_request_after_a_noreply_delete_does_not_wait_for_a_delayed_ack(memcached_server):
    import statistics
    import time

    # A noreply command gets nothing back, so without TCP_NODELAY Nagle held the next request
    # until the server's delayed ACK: 43.7 ms every time here (0.03 ms with it).
    s = MemcachedStore([memcached_server.endpoint], prefix="nagle")
    waits = []
    for i in range(7):
        s.put_many([i], [b"v"])
        s.delete_many([i])
        t0 = time.perf_counter()
        s.get(404)
        waits.append(time.perf_counter() - t0)
    s.close()
    assert statistics.median(waits) < 0.010


def test_memcached_bad_address_raises_store_unavailable_at_start(memcached_server):
    from spidercache.testing.servers import free_port as _free_port

    port = _free_port()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port} does not answer"):
        MemcachedStore([memcached_server.endpoint, ("127.0.0.1", port)])


# ------------------------------------------------------------- open_store
def test_open_store_specs(tmp_path, redis_server, memcached_pool, redis_cluster):
    assert isinstance(open_store("memory"), MemoryStore)
    assert open_store("memory:2").budget_bytes == 2 << 20
    s = open_store(f"lmdb:{tmp_path / 'db'}")
    assert isinstance(s, LMDBStore)
    s.close()
    s = open_store(f"spill:1.5:{tmp_path / 'sp'}")
    assert isinstance(s, SpillStore) and s.memory.budget_bytes == int(1.5 * (1 << 20))
    s.close()
    r = open_store(f"redis://{redis_server.host}:{redis_server.port}/myjob")
    assert isinstance(r, RedisStore) and r.prefix == "myjob" and not r.cluster
    m = open_store(memcached_pool.url)
    assert isinstance(m, MemcachedStore) and len(m.servers) == 2
    c = open_store(redis_cluster.url)
    assert isinstance(c, RedisStore) and c.cluster
    for x in (r, m, c):
        x.close()


@pytest.mark.parametrize(
    "spec",
    [
        "ftp://x",
        "memory:-1",
        "memory:abc",
        "lmdb:",
        "spill:10",
        "spill:x:/tmp/a",
        "redis://",
        "redis://host",
        "memcached://h:notaport",
        "",
    ],
)
def test_open_store_rejects_bad_specs_with_user_error(spec):
    with pytest.raises(UserError):
        open_store(spec)
