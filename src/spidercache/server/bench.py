"""`spidercache bench server`: the cache server against redis-server, same data, same run.

For each value size the benchmark stores the same ``items`` random values in a
redis-server it starts itself (pipelined SET) and in a cache server it starts
itself (``put_many``), then reads the same random batches from each:

* ``redis``: redis-py with hiredis, one MGET per batch; with N in flight, N
  threads each with its own connection share the batches;
* ``grpc``: ``DatasetCache.get_many`` over gRPC (shared memory off); with N in
  flight, ``iter_batches`` keeps N calls outstanding over up to 12 connections;
* ``shm``: the shared-memory path, ``get_batch`` (api ``batch``: one gather into
  an array, what a collate step consumes) and ``get_many`` (api ``list``: one
  bytes object per value, the shape MGET returns).

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
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..engine.stores.launch import rss_bytes, start_redis
from .launch import start_cache_server

MB = 1 << 20
TARGET_BYTES_PER_ROUND = 256 * MB


def _values(n: int, size: int, seed: int) -> tuple[np.ndarray, list[bytes]]:
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    return block, [block[i].tobytes() for i in range(n)]


def _time(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_bench(sizes: list[int], batch: int, items: int, batches: int, flights: list[int],
              repeats: int = 7, log: Callable[[str], None] = print, extras: bool = True) -> list[dict]:
    import redis

    from .admin import AdminClient
    from .client import DatasetCache

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="spidercache-bench-") as tmp:
        tmp = Path(tmp)
        redis_proc = start_redis(tmp / "redis")
        try:
            for size in sizes:
                n_items = max(batch, min(items, (512 * MB) // size))
                n_batches = max(5, min(batches, TARGET_BYTES_PER_ROUND // (batch * size)))
                budget = 2 * n_items * size + 64 * MB
                server = start_cache_server(tmp / f"home-{size}", "-m", f"{budget >> 20}M", "--no-spill",
                                            "-w", "8")
                try:
                    if size == sizes[0]:
                        rows += _bench_ping(redis, redis_proc.port, server.port, repeats, log)
                    rows += _bench_size(redis, redis_proc.port, server.port, size, batch, n_items, n_batches,
                                        flights, repeats, log, AdminClient, DatasetCache)
                finally:
                    server.stop()
            if extras:
                rows.append(_bench_memory(tmp, log))
                rows.append(_bench_epoch(tmp, log))
        finally:
            redis_proc.stop()
    return rows


def _bench_ping(redis, redis_port: int, port: int, repeats: int, log, calls: int = 300) -> list[dict]:
    """The floor under every batched figure: one call with no work behind it.

    gRPC: the cache server's ``Ping`` over the same kind of connection the
    benchmark's reads use; Redis: ``PING``. Same rounds, taking turns.
    """
    from . import cache_pb2 as pb
    from .admin import open_channel
    from .service import SERVICE_NAME

    channel = open_channel("127.0.0.1", port, separate=True)
    ping = channel.unary_unary(f"/{SERVICE_NAME}/Ping", request_serializer=pb.Empty.SerializeToString,
                               response_deserializer=pb.PingReply.FromString)
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
        rows.append(dict(transport=name, api="ping", value_bytes=0, batch=1, in_flight=1,
                         items_per_second=round(rate[name], 1), mb_per_second=0.0,
                         ratio_vs_redis=round(rate[name] / rate["redis"], 3), mean_us=round(mean, 1), p50_us=round(p50, 1)))
        log(f"{name:5s} ping  empty call: mean {mean:7.1f} us, p50 {p50:7.1f} us "
            f"({rate[name] / rate['redis']:.2f}x redis calls/s)")
    return rows


def _bench_size(redis, redis_port, port, size, batch, n_items, n_batches, flights, repeats, log,
                AdminClient, DatasetCache) -> list[dict]:
    block, values = _values(n_items, size, seed=size)
    rng = np.random.default_rng(1)
    id_batches = [rng.integers(0, n_items, batch).astype(np.int64) for _ in range(n_batches)]
    keys = [f"bench:{i}".encode() for i in range(n_items)]
    key_batches = [[keys[i] for i in b.tolist()] for b in id_batches]

    r = redis.Redis(host="127.0.0.1", port=redis_port)
    r.flushall()
    for start in range(0, n_items, 512):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n_items, start + 512)):
            pipe.set(keys[i], values[i])
        pipe.execute()

    with AdminClient("127.0.0.1", port) as admin:
        session = admin.new_session()["session_id"]
    grpc_client = DatasetCache(session, port=port, pipeline="bench", use_shm=False, num_connections=12)
    shm_client = DatasetCache(session, port=port, pipeline="bench")
    for start in range(0, n_items, 1024):
        ids = np.arange(start, min(n_items, start + 1024))
        assert grpc_client.put_many(ids, values[start: start + ids.size]).all()

    # correctness before speed
    first, first_keys = id_batches[0], key_batches[0]
    expect = [values[i] for i in first.tolist()]
    assert r.mget(first_keys) == expect
    assert grpc_client.get_many(first) == expect
    assert shm_client.get_many(first) == expect
    b = shm_client.get_batch(first)
    assert np.array_equal(b.rows[:, :size], block[first])
    assert shm_client.shared_memory

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

    cases = [("redis", "mget", redis_run, flights), ("grpc", "list", grpc_run, flights),
             ("shm", "batch", shm_batch_run, [1]), ("shm", "list", shm_list_run, [1])]
    for _, _, fn, fl in cases:  # warm up (connections, first calls)
        for n in fl:
            fn(n)
    timings: dict[tuple, list[float]] = {}
    for _ in range(repeats):
        for transport, api, fn, fl in cases:
            for n in fl:
                timings.setdefault((transport, api, n), []).append(_time(lambda: fn(n)))

    rows = []
    total_items = n_batches * batch
    redis_ips = {n: total_items / statistics.median(timings[("redis", "mget", n)]) for n in flights}
    for (transport, api, n), ts in timings.items():
        ips = total_items / statistics.median(ts)
        ref = redis_ips.get(n, redis_ips[1]) if transport != "shm" else redis_ips[1]
        row = dict(transport=transport, api=api, value_bytes=size, batch=batch, in_flight=n,
                   items_per_second=round(ips, 1), mb_per_second=round(ips * size / MB, 1),
                   ratio_vs_redis=round(ips / ref, 3))
        rows.append(row)
        log(f"{transport:5s} {api:5s} {size:>7d} B  in_flight {n:2d}: {ips:12,.0f} items/s  "
            f"{ips * size / MB:9,.1f} MB/s  {ips / ref:6.2f}x redis")
    grpc_client.close()
    shm_client.close()
    r.close()
    for clients in pools.values():
        for c in clients:
            c.close()
    return rows


def _bench_memory(tmp: Path, log, budget_mb: int = 1024, value_bytes: int = 3072) -> dict:
    """Peak server RSS while a writer puts 2x the budget (no spill: the rest is refused)."""
    from .admin import AdminClient
    from .client import DatasetCache

    server = start_cache_server(tmp / "home-rss", "-m", f"{budget_mb}M", "--no-spill")
    peak = [rss_bytes(server.pid)]
    baseline = peak[0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            try:
                peak[0] = max(peak[0], rss_bytes(server.pid))
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with AdminClient("127.0.0.1", server.port) as admin:
            sid = admin.new_session()["session_id"]
        client = DatasetCache(sid, port=server.port, pipeline="rss", use_shm=False)
        per = 1024
        block = np.random.default_rng(0).integers(0, 256, size=(per, value_bytes), dtype=np.uint8)
        vals = [block[i].tobytes() for i in range(per)]
        n_total = 2 * budget_mb * MB // value_bytes
        stored = 0
        for start in range(0, n_total, per):
            stored += int(client.put_many(np.arange(start, start + per), vals).sum())
        with AdminClient("127.0.0.1", server.port) as admin:
            st = admin.status()
        client.close()
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], rss_bytes(server.pid))
        server.stop()
    budget = budget_mb * MB
    row = dict(transport="grpc", api="rss", value_bytes=value_bytes, budget_bytes=budget,
               written_bytes=n_total * value_bytes, stored_items=stored, memory_used=st["memory_used"],
               baseline_rss_bytes=baseline, peak_rss_bytes=peak[0], peak_rss_over_budget=round(peak[0] / budget, 3))
    log(f"rss: budget {budget_mb} MB, wrote {n_total * value_bytes / MB:,.0f} MB, stored {stored} items, "
        f"server RSS baseline {baseline / MB:,.0f} MB, peak {peak[0] / MB:,.0f} MB = {peak[0] / budget:.3f}x budget")
    return row


def _bench_epoch(tmp: Path, log, n: int = 600, value_bytes: int = 784, read_ms: float = 5.0,
                 batch: int = 64) -> dict:
    """One epoch of 784 B samples: through 5 ms storage (epoch 1 fills the cache)
    against the next epoch through the server. A plain loop, not the training-data path."""
    from .admin import AdminClient
    from .client import DatasetCache

    server = start_cache_server(tmp / "home-epoch", "-m", "64M", "--no-spill")
    try:
        with AdminClient("127.0.0.1", server.port) as admin:
            sid = admin.new_session()["session_id"]
        block = np.random.default_rng(2).integers(0, 256, size=(n, value_bytes), dtype=np.uint8)

        def storage_read(i: int) -> bytes:
            time.sleep(read_ms / 1000)  # the slow storage: one read per sample
            return block[i].tobytes()

        cache = DatasetCache(sid, port=server.port, pipeline="fashion-mnist-like")
        order = np.random.default_rng(3).permutation(n)

        def epoch() -> int:
            hits = 0
            for start in range(0, n, batch):
                ids = order[start: start + batch]
                got = cache.get_many(ids)
                miss = [k for k, v in enumerate(got) if v is None]
                hits += len(ids) - len(miss)
                if miss:
                    loaded = [storage_read(int(ids[k])) for k in miss]
                    cache.put_many(ids[miss], loaded)
                    for k, v in zip(miss, loaded):
                        got[k] = v
                for i, v in zip(ids.tolist(), got):
                    assert v == block[i].tobytes()
            return hits

        t_cold = _time(lambda: epoch())
        hits_box = [0]
        t_warm = _time(lambda: hits_box.__setitem__(0, epoch()))
        cache.close()
    finally:
        server.stop()
    row = dict(transport="shm", api="epoch", value_bytes=value_bytes, items=n, storage_read_ms=read_ms,
               storage_epoch_seconds=round(t_cold, 3), cached_epoch_seconds=round(t_warm, 4),
               cached_hits=hits_box[0], speedup=round(t_cold / t_warm, 1))
    log(f"epoch: {n} samples of {value_bytes} B, 5 ms storage {t_cold:.2f} s, cached through the server "
        f"{t_warm:.3f} s ({hits_box[0]} hits) = {t_cold / t_warm:,.1f}x faster")
    return row


def rows_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="cache server vs redis-server")
    for col in ("transport", "api", "value_bytes", "batch", "in_flight", "items/s", "MB/s", "x redis"):
        table.add_column(col, justify="right")
    for r in rows:
        if "items_per_second" not in r:
            continue
        table.add_row(r["transport"], r["api"], str(r["value_bytes"]), str(r["batch"]), str(r["in_flight"]),
                      f"{r['items_per_second']:,.0f}", f"{r['mb_per_second']:,.1f}", f"{r['ratio_vs_redis']:.2f}")
    return table


def format_markdown(rows: list[dict]) -> str:
    lines = ["| transport | api | value bytes | batch | in flight | items/s | MB/s | x redis |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "items_per_second" in r:
            lines.append(f"| {r['transport']} | {r['api']} | {r['value_bytes']} | {r['batch']} | {r['in_flight']} | "
                         f"{r['items_per_second']:,.0f} | {r['mb_per_second']:,.1f} | {r['ratio_vs_redis']:.2f} |")
    for r in rows:
        if r.get("api") == "rss":
            lines.append(f"\nServer RSS: budget {r['budget_bytes'] / MB:,.0f} MB, wrote {r['written_bytes'] / MB:,.0f} MB; "
                         f"peak RSS {r['peak_rss_bytes'] / MB:,.0f} MB = {r['peak_rss_over_budget']:.3f}x budget.")
        if r.get("api") == "epoch":
            lines.append(f"\nCached epoch ({r['items']} x {r['value_bytes']} B): 5 ms storage {r['storage_epoch_seconds']} s, "
                         f"through the server {r['cached_epoch_seconds']} s = {r['speedup']}x.")
    return "\n".join(lines) + "\n"
