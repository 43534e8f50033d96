"""The contract every store passes, with real servers (tests/conftest.py, the cache server's fixture).

Stores: in-process memory, LMDB, memory over LMDB (spill), Redis, Redis Cluster,
memcached, the training cache's shared-memory slot store, and the cache
server's client (gRPC only, and with shared memory).
Each store's own promises (byte budgets, server failures, key layout) are in
tests/engine/test_stores.py and tests/server/.
"""

from __future__ import annotations

import numpy as np
import pytest
import redis
import torch

from spidercache.engine.codec import decode, encode
from spidercache.engine.stores import LMDBStore, MemcachedStore, MemoryStore, RedisStore, SpillStore
from spidercache.engine.stores.lmdb_store import _lmdb_key
from spidercache.engine.stores.shm import ShmSlotStore
from spidercache.errors import CorruptValue, UserError
from spidercache.server.admin import AdminClient
from spidercache.server.client import DatasetCache

STORE_KINDS = [
    "memory",
    "lmdb",
    "spill",
    "redis",
    "redis-cluster",
    "memcached",
    "shm",
    "server",
    "server-shm",
]


class PlannedSlots(ShmSlotStore):
    """The training cache's slot store, with the deciding process's part done before each put:
    the ids get slots (``allocator``, as the planner does), then the store's own ``put_many``."""

    def __init__(self) -> None:
        super().__init__(1 << 20, 64, 8192, shared=False)
        self.planner = self.allocator(0)

    def put_many(self, keys, values):
        fits = [k for k in keys if isinstance(k, (int, np.integer)) and 0 <= k < self.n_ids]
        self.planner.assign(np.array(fits, np.int64))
        return super().put_many(keys, values)


@pytest.fixture(params=STORE_KINDS)
def store(request, tmp_path, key_prefix):
    kind = request.param
    if kind == "memory":
        s = MemoryStore(64 << 20)
    elif kind == "lmdb":
        s = LMDBStore(tmp_path / "db", map_size=1 << 24)
    elif kind == "spill":
        # a tiny memory tier so that the batches below overflow onto disk
        s = SpillStore(MemoryStore(4096), LMDBStore(tmp_path / "spill", map_size=1 << 24))
    elif kind == "redis":
        server = request.getfixturevalue("redis_server")
        s = RedisStore(server.host, server.port, prefix=key_prefix)
    elif kind == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        s = RedisStore(prefix=key_prefix, cluster=True, startup_nodes=cluster.servers)
    elif kind == "memcached":
        pool = request.getfixturevalue("memcached_pool")
        s = MemcachedStore(pool.servers, prefix=key_prefix)
    elif kind == "shm":
        s = PlannedSlots()
    else:  # the cache server's client, over gRPC only or with same-host shared memory
        server = request.getfixturevalue("cache_server")
        with AdminClient(server.host, server.port) as admin:
            sid = admin.new_session(0, False)["session_id"]
        s = DatasetCache(
            sid, port=server.port, pipeline=key_prefix, use_shm=kind == "server-shm", num_connections=2
        )
    yield s
    s.close()


def _values():
    return [
        encode(b"raw bytes"),
        encode(np.arange(1000, dtype=np.float32).reshape(10, 100)),
        encode(torch.arange(12, dtype=torch.int64).reshape(3, 4)),
        encode({"result": [1, 2, 3], "ok": True}),
        encode(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8)),
    ]


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


# ------------------------------------------------------------ the contract
def _ids_only(store) -> bool:
    """The cache server's sessions and the slot store hold dense sample ids (a table per id), not
    arbitrary keys."""
    return isinstance(store, (DatasetCache, ShmSlotStore))


def test_round_trip_of_every_kind(store):
    values = _values()
    keys = [3, 10**6 if _ids_only(store) else 10**12, 0, 77, 5]
    assert store.put_many(keys, values).all()
    got = store.get_many(keys)
    assert [bytes(g) for g in got] == values
    for g, v in zip(got, values):
        assert _same(decode(g), decode(v))


def test_missing_keys_are_none_and_batches_keep_order(store):
    store.put_many(np.array([1, 2], np.int64), [encode(b"one"), encode(b"two")])
    got = store.get_many([2, 99, 1, 2])
    assert got[1] is None
    assert [decode(got[i]) for i in (0, 2, 3)] == [b"two", b"one", b"two"]
    assert 1 in store and 99 not in store
    assert store.get_many([]) == []


def test_delete_and_overwrite(store):
    store.put_many([1, 2, 3], [encode(b"a"), encode(b"b"), encode(b"c")])
    store.delete_many([2, 404])
    assert store.get(2) is None
    store.put(1, encode(b"A"))
    assert decode(store.get(1)) == b"A" and decode(store.get(3)) == b"c"


def test_string_and_int_keys_do_not_collide(store):
    if _ids_only(store):  # refused, never folded onto the id 7
        for bad in ("7", 2**32, -1):
            with pytest.raises(UserError):
                store.put_many([bad], [encode(b"str")])
        assert store.get(7) is None
        return
    store.put_many([7, "7", "name with spaces é"], [encode(b"int"), encode(b"str"), encode(b"uni")])
    assert [decode(v) for v in store.get_many([7, "7", "name with spaces é"])] == [b"int", b"str", b"uni"]


def test_put_many_needs_one_value_per_key(store):
    with pytest.raises(ValueError):
        store.put_many([1, 2], [encode(b"x")])


def test_flipped_byte_in_a_stored_value_is_caught(store, request):
    key = 42
    store.put(key, encode(np.arange(64, dtype=np.int64)))
    _flip_stored_byte(store, key, offset=-5, request=request)
    damaged = store.get(key)
    assert damaged is not None
    with pytest.raises(CorruptValue):
        decode(damaged)


def _flip_stored_byte(store, key, offset, request):
    """Damage a value in place, behind the store's back, the way a bad disk or a bad peer would."""
    if isinstance(store, DatasetCache):
        pytest.skip("the cache server's memory is another process's: nothing to flip from here")
    if isinstance(store, SpillStore):
        tier = store.memory if key in store.memory else store.disk
        return _flip_stored_byte(tier, key, offset, request)
    if isinstance(store, ShmSlotStore):
        slot = store.table[key]
        store.data[slot, store.length[slot] + offset] ^= 0x10
    elif isinstance(store, MemoryStore):
        buf = bytearray(store._data[key])
        buf[offset] ^= 0x10
        store._data[key] = bytes(buf)
    elif isinstance(store, LMDBStore):
        with store.env.begin(write=True) as txn:
            buf = bytearray(txn.get(_lmdb_key(key)))
            buf[offset] ^= 0x10
            txn.put(_lmdb_key(key), bytes(buf))
    elif isinstance(store, RedisStore):
        if store.cluster:
            raw = redis.cluster.RedisCluster(
                startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in store.startup_nodes]
            )
        else:
            raw = redis.Redis(store.host, store.port)
        rkey = store._key(key)
        buf = bytearray(raw.get(rkey))
        buf[offset] ^= 0x10
        raw.set(rkey, bytes(buf))
        raw.close()
    elif isinstance(store, MemcachedStore):
        ek = store._entry_key(key)
        item = bytearray(store._client.get(ek))
        assert item[:1] == b"V"
        item[offset] ^= 0x10
        store._client.set(ek, bytes(item), noreply=False)
    else:  # pragma: no cover
        raise AssertionError(type(store))
