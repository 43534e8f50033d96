"""DatasetCache against a real server process: shared memory, gRPC, pipelines, modes."""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.engine import codec
from spidercache.errors import UserError
from spidercache.server.client import DatasetCache
from spidercache.server.pipeline import CachedMappable, CachedStream, fingerprint


def _values(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(n)]


@pytest.mark.parametrize("use_shm", [True, False])
def test_round_trip(cache_server, use_shm, new_session):
    sid = new_session(cache_server.port)
    cache = DatasetCache(sid, port=cache_server.port, pipeline="p", use_shm=use_shm, num_connections=2)
    assert cache.shared_memory is use_shm
    values = _values(300, 3072) + [b"", b"x" * 200_000]
    ids = np.arange(302)
    assert cache.put_many(ids, values).all()
    query = np.array([301, 0, 5000, 300, 17, 17])
    assert cache.get_many(query) == [values[301], values[0], None, b"", values[17], values[17]]
    batch = cache.get_batch(query)
    assert batch.lengths.tolist() == [200_000, 3072, -1, 0, 3072, 3072]
    assert batch.value(1).tobytes() == values[0]
    # prefetching reads give the same answers in order
    batches = [np.arange(s, s + 50) for s in range(0, 300, 50)]
    assert [v for b in cache.iter_batches(batches) for v in b] == values[:300]
    cache.delete_many([0, 1])
    assert cache.get_many([0, 1, 2]) == [None, None, values[2]]
    cache.close()


def test_big_gets_split_into_sub_calls_give_the_same_answers(cache_server, new_session, monkeypatch):
    from spidercache.server import client_rpc as client_mod

    monkeypatch.setattr(client_mod, "SPLIT_REPLY_BYTES", 20_000)  # split every batch of a few values
    sid = new_session(cache_server.port)
    cache = DatasetCache(sid, port=cache_server.port, pipeline="p", use_shm=False, num_connections=4)
    values = _values(40, 3000) + [b"y" * 9000]
    assert cache.put_many(np.arange(41), values).all()
    query = np.array([3, 40, 999, 7, 3, 0, 39, 12, 1000, 5])
    expect = [values[i] if i <= 40 else None for i in query.tolist()]
    assert cache.get_many(query) == expect  # first call learns the row width
    assert cache._n_parts(query) > 1
    assert cache.get_many(query) == expect
    batch = cache.get_batch(query)
    assert batch.lengths.tolist() == [len(v) if v is not None else -1 for v in expect]
    assert [None if batch.value(i) is None else batch.value(i).tobytes() for i in range(len(query))] == expect
    assert all(
        batch.rows[batch.row_index[i], : len(v)].tobytes() == v for i, v in enumerate(expect) if v is not None
    )
    batches = [np.arange(s, s + 10) for s in range(0, 40, 10)]
    assert [v for b in cache.iter_batches(batches) for v in b] == values[:40]
    cache.close()


def test_small_gets_use_few_connections_and_read_the_same_answers(cache_server, new_session, monkeypatch):
    from spidercache.server import client_rpc as client_mod

    monkeypatch.setattr(client_mod, "SMALL_REPLY_BYTES", 50_000)
    sid = new_session(cache_server.port)
    cache = DatasetCache(sid, port=cache_server.port, pipeline="p", use_shm=False, num_connections=6)
    values = _values(64, 3000)
    assert cache.put_many(np.arange(64), values).all()
    assert cache.get_many(np.arange(4)) == values[:4]  # learns the row width
    assert cache._get_kind(4) == "SmallGet" and cache._get_kind(64) == "Get"
    small = {id(cache._method("SmallGet")) for _ in range(12)}
    assert small == {id(m) for m in cache._raw_get[: client_mod.SMALL_REPLY_CONNECTIONS]}
    batches = [np.arange(s, s + 4) for s in range(0, 64, 4)] + [np.arange(64)[::-1]]
    got = list(cache.iter_batches(batches))
    assert [v for b in got[:-1] for v in b] == values and got[-1] == values[::-1]
    cache.close()


def test_zero_copy_views(cache_server, new_session):
    sid = new_session(cache_server.port)
    cache = DatasetCache(sid, port=cache_server.port, pipeline="p")
    cache.put_many([1, 2], [b"a" * 1000, b"b" * 1000])
    views = cache.views([1, 3, 2])
    assert views.arrays[0].tobytes() == b"a" * 1000 and views.arrays[1] is None
    assert views.valid().tolist() == [True, False, True]
    cache.put_many([1], [b"c" * 1000])  # rewritten: the old view no longer validates
    assert views.valid().tolist() == [False, False, True]
    cache.close()


def test_different_pipeline_is_refused_identical_shares(cache_server, new_session):
    sid = new_session(cache_server.port)
    a = DatasetCache(sid, port=cache_server.port, pipeline=fingerprint("mnist", ["decode"]))
    a.put_many([7], [b"seven"])
    b = DatasetCache(sid, port=cache_server.port, pipeline=fingerprint("mnist", ["decode"]))
    assert b.get_many([7]) == [b"seven"]
    with pytest.raises(UserError) as err:
        DatasetCache(sid, port=cache_server.port, pipeline=fingerprint("mnist", ["decode", "flip"]))
    assert str(err.value) == f"session {sid} holds a cache for a different pipeline"
    a.close(), b.close()


def test_unknown_and_destroyed_session(cache_server, new_session):
    from spidercache.server.admin import AdminClient

    with pytest.raises(UserError, match="unknown session 12345"):
        DatasetCache(12345, port=cache_server.port)
    sid = new_session(cache_server.port)
    cache = DatasetCache(sid, port=cache_server.port, pipeline="p", use_shm=False)
    cache.put_many([1], [b"x"])
    with AdminClient("127.0.0.1", cache_server.port) as admin:
        admin.destroy_session(sid)
    with pytest.raises(UserError, match=f"unknown session {sid}"):
        cache.get_many([1])


def test_mappable_lookup_and_merge(cache_server, new_session):
    sid = new_session(cache_server.port)
    data = [np.full(784, i, np.uint8) for i in range(100)]
    loads = []

    class Source:
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            loads.append(i)
            return data[i]

    ds = CachedMappable(Source(), DatasetCache(sid, port=cache_server.port, pipeline=fingerprint("src")))
    for _epoch in range(2):
        got = ds.get_batch(range(100))
        assert all(np.array_equal(g, d) for g, d in zip(got, data))
    assert len(loads) == 100  # the second epoch was all hits
    assert ds.hits == 100 and ds.misses == 100


def test_streaming_builds_then_reads(cache_server, new_session):
    sid = new_session(cache_server.port)
    reads = []

    def source():
        for i in range(70):
            reads.append(i)
            yield {"x": i}

    stream = CachedStream(source, DatasetCache(sid, port=cache_server.port, pipeline="s"), batch_size=16)
    assert list(stream) == [{"x": i} for i in range(70)]
    assert list(stream) == [{"x": i} for i in range(70)]
    assert len(reads) == 70 and stream.epochs_from_cache == 1


def test_streaming_without_room_keeps_reading_the_source(cache_server, new_session):
    from spidercache.server.admin import AdminClient

    with AdminClient("127.0.0.1", cache_server.port) as admin:
        sid = admin.new_session(64 << 10)["session_id"]  # room for ~16 of the 70 items
    stream = CachedStream(
        lambda: (np.full(3000, i, np.uint8) for i in range(70)),
        DatasetCache(sid, port=cache_server.port, pipeline="s"),
        batch_size=16,
    )
    for _ in range(2):
        assert [int(a[0]) for a in stream] == list(range(70))
    assert stream.epochs_from_source == 2


def test_stats_reach_the_server(cache_server, new_session):
    sid = new_session(cache_server.port)
    cache = DatasetCache(sid, port=cache_server.port, pipeline="p")
    cache.put_many(range(10), [codec.encode(np.arange(i)) for i in range(10)])
    cache.get_many(range(20))
    st = cache.stats()
    assert st["hits"] == 10 and st["misses"] == 10 and st["items_in_memory"] == 10 and st["clients"] == 1


def test_no_session_id_makes_a_session_of_its_own(cache_server):
    from spidercache.server.admin import AdminClient

    cache = DatasetCache(port=cache_server.port, size=8, pipeline="p")  # MindSpore: "the only channel"
    cache.put_many([1], [b"mine"])
    with AdminClient("127.0.0.1", cache_server.port) as admin:
        assert admin.session_stats(cache.session_id)["memory_budget"] == 8 << 20
        cache.close()  # nobody else knows the id: it goes with the cache
        assert cache.session_id not in [s["session_id"] for s in admin.list_sessions()]


def test_spill_comes_from_the_session(cache_server, new_session):
    sid = new_session(cache_server.port)  # created without spill
    with pytest.raises(UserError, match=f"session {sid} was created without spill"):
        DatasetCache(sid, port=cache_server.port, pipeline="p", spilling=True)
    spilling = new_session(cache_server.port, spill=True)
    cache = DatasetCache(spilling, port=cache_server.port, pipeline="p")
    assert cache.spill is True
