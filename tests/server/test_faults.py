"""Faults and bad input, with real processes: killed clients and servers, garbage requests."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spidercache.errors import StoreUnavailable, UserError
from spidercache.server.admin import AdminClient, ping
from spidercache.server.client import DatasetCache
from spidercache.server.limits import SERVICE_NAME
from spidercache.server.pipeline import CachedMappable


def _pattern(i: int, n: int) -> bytes:
    """A value whose every byte depends on its id: a torn or foreign value is detectable."""
    return (i.to_bytes(8, "little") * (n // 8 + 1))[:n]


def test_client_killed_mid_put_leaves_nothing_half_written(fresh_server, new_session, tmp_path):
    server = fresh_server("-m", "512M", "--no-spill", "--max-message-mb", "128")  # 60 MB messages, whole
    sid = new_session(server.port)
    marker = tmp_path / "sending"
    script = textwrap.dedent(f"""
        import numpy as np, pathlib
        from spidercache.server.client import DatasetCache
        def pattern(i, n): return (i.to_bytes(8, "little") * (n // 8 + 1))[:n]
        c = DatasetCache({sid}, port={server.port}, pipeline="p", use_shm=False)
        n = 200_000
        for round in range(1000):
            ids = np.arange(round * 300, round * 300 + 300)
            vals = [pattern(int(i), n) for i in ids]
            pathlib.Path({str(marker)!r}).write_text(str(round))
            c.put_many(ids, vals)   # 60 MB messages: the kill lands inside one
    """)
    client = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not marker.exists() or marker.read_text() < "1":
        assert client.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.15)
    client.send_signal(signal.SIGKILL)
    client.wait()
    assert ping("127.0.0.1", server.port) is not None  # the server is healthy
    reader = DatasetCache(sid, port=server.port, pipeline="p")
    rounds = int(marker.read_text()) + 1
    ids = np.arange(rounds * 300)
    got = reader.get_many(ids)
    assert any(v is not None for v in got)
    for i, v in zip(ids.tolist(), got):
        assert v is None or v == _pattern(i, 200_000)
    # whole batches: a message is applied completely or not at all
    per_round = [sum(v is not None for v in got[r * 300 : (r + 1) * 300]) for r in range(rounds)]
    assert set(per_round) <= {0, 300}


def test_server_killed_gives_store_unavailable_and_jobs_fall_back(fresh_server, new_session):
    server = fresh_server("-m", "64M", "--no-spill")
    sid = new_session(server.port)
    shm = DatasetCache(sid, port=server.port, pipeline="p")
    remote = DatasetCache(sid, port=server.port, pipeline="p", use_shm=False)
    assert shm.shared_memory
    shm.put_many(range(10), [b"v"] * 10)
    source = [np.arange(3) + i for i in range(10)]
    server.kill()
    for cache in (shm, remote):
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{server.port} is unavailable"):
            cache.get_many([1, 2])
        with pytest.raises(StoreUnavailable):
            cache.put_many([1], [b"x"])
    # a pipeline over the dead server goes on from its source
    job = CachedMappable(source, remote)
    got = job.get_batch(range(10))
    assert all(np.array_equal(g, s) for g, s in zip(got, source)) and job.unavailable == 10


def test_wrong_token(fresh_server, new_session):
    server = fresh_server("-m", "64M", "--no-spill", token="s3cret-token")
    with pytest.raises(UserError, match="wrong or missing token"):
        AdminClient("127.0.0.1", server.port, token="nope").status()
    with pytest.raises(UserError, match="wrong or missing token"):
        AdminClient("127.0.0.1", server.port, token=None).new_session()
    sid = new_session(server.port, token="s3cret-token")
    cache = DatasetCache(sid, port=server.port, pipeline="p", token="s3cret-token")
    cache.put_many([1], [b"ok"])
    assert cache.get_many([1]) == [b"ok"]
    with pytest.raises(UserError, match="wrong or missing token"):
        DatasetCache(sid, port=server.port, pipeline="p", token="guess")


_METHODS = [
    "Get",
    "Put",
    "Delete",
    "Seal",
    "Attach",
    "Report",
    "GetSessionStats",
    "DestroySession",
    "NewSession",
]


def test_garbage_oversized_and_out_of_order_requests(fresh_server, new_session):
    server = fresh_server("-m", "64M", "--no-spill", "--max-message-mb", "1")
    sid = new_session(server.port)
    cache = DatasetCache(sid, port=server.port, pipeline="p", max_message_bytes=4 << 20)
    kept = {i: _pattern(i, 1000) for i in range(50)}
    cache.put_many(list(kept), list(kept.values()))
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    raw = {
        m: channel.unary_unary(f"/{SERVICE_NAME}/{m}", request_serializer=None, response_deserializer=None)
        for m in _METHODS
    }
    from spidercache.server import cache_pb2 as pb

    # out of order: reads and writes on a session no pipeline attached to; seal before anything
    fresh = new_session(server.port)
    for method, msg in [
        ("Get", pb.GetRequest(session_id=fresh, ids=b"\0" * 8)),
        ("Put", pb.PutRequest(session_id=fresh, ids=b"\0" * 8, lengths=b"\0" * 8)),
        ("Seal", pb.SealRequest(session_id=sid, pipeline="p", n_items=-5)),
        ("Get", pb.GetRequest(session_id=sid, pipeline="other", ids=b"\0" * 8)),
        (
            "Put",
            pb.PutRequest(
                session_id=sid,
                pipeline="p",
                ids=b"\1" * 16,
                lengths=np.array([1, 2], "<i8").tobytes(),
                data=b"ab",
            ),
        ),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            raw[method](msg.SerializeToString(), timeout=5)
        assert err.value.code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.NOT_FOUND,
        )
    # oversized: over the server's 1 MB cap, refused as a full server refuses (it raised UserError
    # until the tenth session, which stopped a job's get_or_load); an id of its own, so that the
    # kept values stay as they were (a refused write deletes the older value of its id)
    assert cache.put_many([999], [b"x" * (2 << 20)]).tolist() == [False]
    assert cache.get_many([999]) == [None]

    # the fuzzer's well-formed messages go to a session of their own, so that garbage is all
    # the kept session ever sees
    target = new_session(server.port)
    DatasetCache(target, port=server.port, pipeline="p", use_shm=False).put_many([1, 2], [b"a", b"b"])

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        method=st.sampled_from(_METHODS),
        body=st.binary(max_size=300),
        fields=st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=40)), max_size=4),
    )
    def fuzz(method, body, fields):
        # random bytes, and well-framed messages with random field contents
        framed = b"".join(bytes([(f << 3) | 2, len(v)]) + v for f, v in fields)
        for payload in (
            body,
            framed,
            pb.GetRequest(session_id=target, pipeline="p", ids=body).SerializeToString(),
        ):
            if method in ("DestroySession", "NewSession"):
                payload = body  # keep the session under test; NewSession with garbage is still exercised
            try:
                raw[method](payload, timeout=5)
            except grpc.RpcError as exc:
                assert exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN), exc

    fuzz()
    assert ping("127.0.0.1", server.port) is not None
    assert cache.get_many(list(kept)) == list(kept.values())  # the cached data is intact
