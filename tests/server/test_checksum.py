"""A value changed behind the server's back is a miss and a counted error, never wrong data (item 7)."""

from __future__ import annotations

import glob
import mmap
import os

import numpy as np
import pytest

from spidercache.server.client import DatasetCache


def _tamper(port: int, sid: int) -> int:
    """Another process of the same user writes into the session's slots (every 3rd byte);
    returns bytes changed."""
    changed = 0
    for path in glob.glob(f"/dev/shm/spidercache-{port}-{sid}-c*"):
        fd = os.open(path, os.O_RDWR)
        try:
            mm = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        data = np.frombuffer(mm, np.uint8)
        start = mmap.PAGESIZE  # past the generation and length words of the first slots
        data[start::3] ^= 0x5A
        changed += data[start::3].size
        del data
        mm.close()
    return changed


@pytest.mark.parametrize("use_shm", [True, False])
def test_changed_bytes_are_misses_on_every_path(fresh_server, new_session, use_shm):
    server = fresh_server("-m", "64M", "--no-spill")
    sid = new_session(server.port)
    values = [os.urandom(3000) for _ in range(50)]
    writer = DatasetCache(sid, port=server.port, pipeline="p")
    writer.put_many(range(50), values)
    assert writer.get_many(range(50)) == values
    assert _tamper(server.port, sid) > 0
    reader = DatasetCache(sid, port=server.port, pipeline="p", use_shm=use_shm)
    assert reader.shared_memory is use_shm
    got = reader.get_many(range(50))
    assert all(g is None or g == v for g, v in zip(got, values))  # never the changed bytes
    assert sum(g is None for g in got) == 50 and reader.errors == 50
    assert reader.stats()["checksum_errors"] == 50
    reader.put_many(range(50), values)  # the job writes them again and goes on
    assert reader.get_many(range(50)) == values


def test_a_value_moved_to_another_id_fails_too(cache_server, new_session):
    writer = DatasetCache(new_session(cache_server.port), port=cache_server.port, pipeline="p")
    writer.put_many([1, 2], [b"one" * 10, b"two" * 10])
    # a client that sees the stored bytes (value + trailer) copies id 1's under id 2
    raw = DatasetCache(writer.session_id, port=cache_server.port, pipeline="p#xxh3", checksum=False)
    raw.put_many([2], raw.get_many([1]))
    assert writer.get_many([1, 2]) == [b"one" * 10, None] and writer.errors == 1


def test_views_are_checked(cache_server, new_session):
    sid = new_session(cache_server.port)
    cache = DatasetCache(sid, port=cache_server.port, pipeline="p")
    cache.put_many([3], [b"abc" * 100])
    views = cache.views([3, 4])
    assert bytes(views.arrays[0]) == b"abc" * 100 and views.arrays[1] is None and views.valid()[0]
    _tamper(cache_server.port, sid)
    assert cache.views([3]).arrays == [None] and cache.errors == 1
