"""`spidercache bench server`: the cache server against redis-server, same data, same run.

``run(**options) -> list[dict]`` is the benchmark (the runner's table points at it).

For each value size the benchmark stores the same ``items`` random values in a
redis-server it starts itself (pipelined SET) and in a cache server it starts
itself (``put_many``), then reads the same random batches from each:

* ``redis``: redis-py with hiredis, one MGET per batch; with N in flight, N
  threads each with its own connection share the batches;
* ``grpc``: ``DatasetCache.get_many`` over gRPC (shared memory off); with N in
  flight, ``iter_batches`` keeps N calls outstanding over up to 12 connections;
* ``shm``: the shared-memory path, ``get_batch`` (api ``batch``: one checked
  gather into an array, what a collate step consumes) and ``get_many`` (api
  ``list``: one bytes object per value, the shape MGET returns); ``batch-nosum``
  reads values stored without checksums, ``batch-twopass`` the same values as
  ``batch`` the way they were read before the fused pass (copy the batch, then
  hash it).

Before them, the floor under every figure: an empty call (the server's
``Ping`` against Redis ``PING``), api ``ping``, with mean and median microseconds.
Every transport's first batch is checked against the expected values before it
is timed. The machine is shared and noisy, so the transports take turns in
short rounds (each round runs every case once over the same batches) and each
figure is the median over ``repeats`` rounds.
Two more parts: server RSS while a writer puts 2x the budget, and one cached
epoch of Fashion-MNIST-sized samples (784 B) through the server against the
same epoch through storage that takes 5 ms per read.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..checks import at_least
from ..engine.stores.slots import SLOT_SIZES, slot_class
from ..errors import UserError
from .runner import parse_numbers
from .server_launch import _start_cache_server, _start_redis

MB = 1 << 20
TITLE = "Cache server (gRPC, shared memory) against redis-server MGET, same data, same run"
TARGET_BYTES_PER_ROUND = 256 * MB


def _values(n: int, size: int, seed: int) -> tuple[np.ndarray, list[bytes]]:
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    return block, [block[i].tobytes() for i in range(n)]


def _time(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(
    value_bytes: str = "3072,153600",
    batch: int = 256,
    items: int = 4096,
    batches: int = 200,
    in_flight: str = "1,20",
    repeats: int = 7,
    extras: bool = True,
) -> list[dict]:
    """The rows of the benchmark (progress lines go to stderr)."""
    sizes = parse_numbers("--value-bytes", str(value_bytes), int)
    flights = parse_numbers("--in-flight", str(in_flight), int)
    at_least(1, flag=True, value_bytes=min(sizes), in_flight=min(flights), batch=batch, batches=batches)
    at_least(1, flag=True, repeats=repeats)
    if items < batch:
        raise UserError(f"--items must be at least --batch ({batch}), got {items}")
    return run_bench(sizes, batch, items, batches, flights, repeats, extras=extras)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_bench(
    sizes: list[int],
    batch: int,
    items: int,
    batches: int,
    flights: list[int],
    repeats: int = 7,
    log: Callable[[str], None] = _log,
    extras: bool = True,
) -> list[dict]:
    import redis

    from ..server.admin import AdminClient
    from ..server.client import DatasetCache

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="spidercache-bench-") as tmp:
        tmp = Path(tmp)
        redis_proc = _start_redis(tmp / "redis")
        try:
            for size in sizes:
                n_items = max(batch, min(items, (512 * MB) // size))
                n_batches = max(5, min(batches, TARGET_BYTES_PER_ROUND // (batch * size)))
                # two copies (with and without checksums) in whole slots, plus the process itself
                slot = int(SLOT_SIZES[slot_class(np.array([size + 8]))[0]])
                budget = 2 * n_items * slot + 192 * MB
                server = _start_cache_server(memory=f"{budget >> 20}M", no_spill=True, workers=8)
                try:
                    if size == sizes[0]:
                        rows += _bench_ping(redis, redis_proc.port, server.port, repeats, log)
                    rows += _bench_size(
                        redis,
                        redis_proc.port,
                        server.port,
                        size,
                        batch,
                        n_items,
                        n_batches,
                        flights,
                        repeats,
                        log,
                        AdminClient,
                        DatasetCache,
                    )
                finally:
                    server.stop()
            if extras:
                from .server_memory import (
                    bench_epoch,
                    bench_memory,
                    bench_put_burst,
                    bench_sessions,
                    bench_spill_rss,
                )

                rows.append(bench_memory(log))
                rows.append(bench_put_burst(log))
                rows.append(bench_spill_rss(log))
                rows.append(bench_sessions(log))
                rows.append(bench_epoch(log))
        finally:
            redis_proc.stop()
    return rows


def _bench_ping(redis, redis_port: int, port: int, repeats: int, log, calls: int = 300) -> list[dict]:
    """The floor under every batched figure: one call with no work behind it.

    gRPC: the cache server's ``Ping`` over the same kind of connection the
    benchmark's reads use; Redis: ``PING``. Same rounds, taking turns.
    """
    from ..server import cache_pb2 as pb
    from ..server.admin import open_channel
    from ..server.limits import SERVICE_NAME

    channel = open_channel("127.0.0.1", port, separate=True)
    ping = channel.unary_unary(
        f"/{SERVICE_NAME}/Ping",
        request_serializer=pb.Empty.SerializeToString,
        response_deserializer=pb.PingReply.FromString,
    )
    r = redis.Redis(host="127.0.0.1", port=redis_port)
    calls_by = {"grpc": lambda: ping(pb.Empty(), timeout=10), "redis": r.ping}
    for fn in calls_by.values():
        for _ in range(50):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls_by}
    rounds: dict[str, list[float]] = {k: [] for k in calls_by}
    for _ in range(repeats):
        for name, fn in calls_by.items():
            start = time.perf_counter()
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
            rounds[name].append(time.perf_counter() - start)
    channel.close()
    r.close()
    rows = []
    rate = {name: calls / statistics.median(ts) for name, ts in rounds.items()}  # like the batched rows
    for name, ts in times.items():
        mean, p50 = statistics.mean(ts) * 1e6, statistics.median(ts) * 1e6
        rows.append(
            dict(
                transport=name,
                api="ping",
                value_bytes=0,
                batch=1,
                in_flight=1,
                items_per_second=round(rate[name], 1),
                mb_per_second=0.0,
                ratio_vs_redis=round(rate[name] / rate["redis"], 4),
                mean_us=round(mean, 1),
                p50_us=round(p50, 1),
            )
        )
        log(
            f"{name:5s} ping  empty call: mean {mean:7.1f} us, p50 {p50:7.1f} us "
            f"({rate[name] / rate['redis']:.2f}x redis calls/s)"
        )
    return rows


def _fill(r, port, keys, values, block, first, first_keys, AdminClient, DatasetCache) -> tuple:
    """Store the values in Redis and in two sessions of the cache server (with and
    without checksums); check the first batch on every transport before any timing."""
    n_items, size = len(values), block.shape[1]
    r.flushall()
    for start in range(0, n_items, 512):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n_items, start + 512)):
            pipe.set(keys[i], values[i])
        pipe.execute()
    with AdminClient("127.0.0.1", port) as admin:
        session, raw_session = (admin.new_session()["session_id"] for _ in range(2))
    grpc_client = DatasetCache(session, port=port, pipeline="bench", use_shm=False, num_connections=12)
    shm_client = DatasetCache(session, port=port, pipeline="bench")
    # the same values without checksums, in a session of their own: what the checksum costs
    raw_client = DatasetCache(raw_session, port=port, pipeline="bench", checksum=False)
    for start in range(0, n_items, 1024):
        ids = np.arange(start, min(n_items, start + 1024))
        assert grpc_client.put_many(ids, values[start : start + ids.size]).all()
        assert raw_client.put_many(ids, values[start : start + ids.size]).all()
    expect = [values[i] for i in first.tolist()]
    assert r.mget(first_keys) == expect
    assert grpc_client.get_many(first) == expect
    assert shm_client.get_many(first) == expect
    assert np.array_equal(shm_client.get_batch(first).rows[:, :size], block[first])
    assert shm_client.shared_memory and raw_client.get_many(first) == expect
    return grpc_client, shm_client, raw_client


def _bench_size(
    redis, redis_port, port, size, batch, n_items, n_batches, flights, repeats, log, AdminClient, DatasetCache
) -> list[dict]:
    block, values = _values(n_items, size, seed=size)
    rng = np.random.default_rng(1)
    id_batches = [rng.integers(0, n_items, batch).astype(np.int64) for _ in range(n_batches)]
    keys = [f"bench:{i}".encode() for i in range(n_items)]
    key_batches = [[keys[i] for i in b.tolist()] for b in id_batches]

    from ..server.batch import Batch, check_batch_sums

    r = redis.Redis(host="127.0.0.1", port=redis_port)
    grpc_client, shm_client, raw_client = _fill(
        r, port, keys, values, block, id_batches[0], key_batches[0], AdminClient, DatasetCache
    )
    first = Batch(*shm_client._reader.read(id_batches[0]), np.arange(batch))
    assert check_batch_sums(id_batches[0], first) == 0
    assert first.to_list() == [values[i] for i in id_batches[0].tolist()]

    pools: dict[int, list] = {}

    def redis_run(n: int) -> None:
        if n == 1:
            for kb in key_batches:
                r.mget(kb)
            return
        clients = pools.setdefault(n, [redis.Redis(host="127.0.0.1", port=redis_port) for _ in range(n)])

        def worker(k: int) -> None:
            c = clients[k]
            for kb in key_batches[k::n]:
                c.mget(kb)

        with ThreadPoolExecutor(n) as ex:
            list(ex.map(worker, range(n)))

    def grpc_run(n: int) -> None:
        if n == 1:
            for ids in id_batches:
                grpc_client.get_many(ids)
            return
        grpc_client.prefetch_size = n
        for _ in grpc_client.iter_batches(id_batches):
            pass

    def shm_batch_run(n: int) -> None:
        for ids in id_batches:
            shm_client.get_batch(ids)

    def shm_list_run(n: int) -> None:
        for ids in id_batches:
            shm_client.get_many(ids)

    def shm_raw_run(n: int) -> None:
        for ids in id_batches:
            raw_client.get_batch(ids)

    def shm_twopass_run(n: int) -> None:  # the read before the fused pass: copy all, then hash all
        reader = shm_client._reader
        for ids in id_batches:
            lengths, rows = reader.read(ids)
            check_batch_sums(ids, Batch(lengths, rows, np.arange(ids.size)))

    cases = [
        ("redis", "mget", redis_run, flights),
        ("grpc", "list", grpc_run, flights),
        ("shm", "batch", shm_batch_run, [1]),
        ("shm", "list", shm_list_run, [1]),
        ("shm", "batch-nosum", shm_raw_run, [1]),
        ("shm", "batch-twopass", shm_twopass_run, [1]),
    ]
    rows = _time_cases(cases, flights, repeats, size, batch, n_batches, log)
    grpc_client.close()
    shm_client.close()
    raw_client.close()
    r.close()
    for clients in pools.values():
        for c in clients:
            c.close()
    return rows


def _time_cases(cases, flights, repeats, size, batch, n_batches, log) -> list[dict]:
    """Every case once per round, ``repeats`` rounds; each figure is the median round.
    ``shm`` rows are compared with Redis at one call in flight, the others at theirs."""
    for _, _, fn, fl in cases:  # warm up (connections, first calls)
        for n in fl:
            fn(n)
    timings: dict[tuple, list[float]] = {}
    for _ in range(repeats):
        for transport, api, fn, fl in cases:
            for n in fl:
                timings.setdefault((transport, api, n), []).append(_time(lambda fn=fn, n=n: fn(n)))
    rows = []
    total_items = n_batches * batch
    redis_ips = {n: total_items / statistics.median(timings[("redis", "mget", n)]) for n in flights}
    for (transport, api, n), ts in timings.items():
        ips = total_items / statistics.median(ts)
        ref = redis_ips.get(n, redis_ips[1]) if transport != "shm" else redis_ips[1]
        rows.append(
            dict(
                transport=transport,
                api=api,
                value_bytes=size,
                batch=batch,
                in_flight=n,
                items_per_second=round(ips, 1),
                mb_per_second=round(ips * size / MB, 1),
                ratio_vs_redis=round(ips / ref, 4),
            )
        )
        log(
            f"{transport:5s} {api:5s} {size:>7d} B  in_flight {n:2d}: {ips:12,.0f} items/s  "
            f"{ips * size / MB:9,.1f} MB/s  {ips / ref:6.2f}x redis"
        )
    return rows


def table(rows: list[dict]):
    """The runner's table: one row per measurement (bench/server_report.py)."""
    from .server_report import rows_table

    return rows_table(rows)
