"""Measuring ``gati serve`` over loopback gRPC: per-request RPC overhead, and concurrent clients.

``rpc_overhead`` times one client's requests and splits the round trip into
the server's model time and the rest; ``concurrent_load`` starts a server
(batch-1, or batching with a window) and ``clients`` threads that each send
requests back to back on their own channel, and reports throughput, p50/p99
latency and the mean batch the server formed.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from .batching import Batcher
from .runtime import GatiRuntime
from .serve import GatiClient, GatiServicer, start_server


def rpc_overhead(runtime: GatiRuntime, images: np.ndarray, requests: int = 300) -> dict:
    """Loopback gRPC: mean round trip minus the server's model time, per request.

    Also, in the same rounds: the round trip minus the server's whole handler
    (decode + model + reply), and the round trip of ``Info`` (an RPC with no
    work behind it), the floor that grpcio itself sets on this machine.
    """
    server, port = start_server(GatiServicer(runtime), port=0)
    client = GatiClient(f"127.0.0.1:{port}")
    try:
        for i in range(10):
            client.predict(images[i % len(images)])
            client.info()
        rt, sv, hd, floor = [], [], [], []
        for i in range(requests):
            r = client.predict(images[i % len(images)])
            rt.append(r.roundtrip_ms)
            sv.append(r.server_ms)
            hd.append(r.handler_ms)
            t = time.perf_counter()
            client.info()
            floor.append((time.perf_counter() - t) * 1000)
    finally:
        client.close()
        server.stop(0)
    over = np.asarray(rt) - np.asarray(sv)
    over_handler = np.asarray(rt) - np.asarray(hd)
    return {
        "requests": requests,
        "roundtrip_mean_ms": float(np.mean(rt)),
        "server_model_mean_ms": float(np.mean(sv)),
        "overhead_mean_ms": float(over.mean()),
        "overhead_p50_ms": float(np.median(over)),
        "overhead_p99_ms": float(np.percentile(over, 99)),
        "overhead_vs_handler_mean_ms": float(over_handler.mean()),
        "overhead_vs_handler_p50_ms": float(np.median(over_handler)),
        "empty_rpc_mean_ms": float(np.mean(floor)),
        "empty_rpc_p50_ms": float(np.median(floor)),
        "load_average": os.getloadavg()[0],
    }


def concurrent_load(
    runtime: GatiRuntime,
    images: np.ndarray,
    clients: int = 8,
    requests_per_client: int = 100,
    window_ms: float = 0.0,
    max_batch: int = 32,
    batching: bool | None = None,
    workers: int | None = None,
) -> dict:
    """Throughput and latency of ``clients`` concurrent clients against a loopback server.

    ``window_ms = 0`` and ``batching`` unset: every request runs alone (batch-1
    serving, the gRPC worker threads each calling the runtime). Otherwise a
    ``Batcher`` with that window gathers concurrent requests into one call,
    with ``workers`` batches in flight at once (default: one per core, at most 4).
    """
    workers = workers or min(4, os.cpu_count() or 1)
    batching = window_ms > 0 if batching is None else batching
    batcher = Batcher(runtime, window_ms, max_batch, workers=workers) if batching else None
    server, port = start_server(GatiServicer(runtime, batcher=batcher), port=0, workers=max(16, clients * 2))
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start_gate = threading.Barrier(clients + 1)

    def client_loop(c: int) -> None:
        client = GatiClient(f"127.0.0.1:{port}")
        try:
            client.predict(images[c % len(images)])  # connect before the clock starts
            start_gate.wait()
            for i in range(requests_per_client):
                lat[c].append(
                    client.predict(images[(c * requests_per_client + i) % len(images)]).roundtrip_ms
                )
        except Exception as exc:  # reported in the result, not lost in a thread
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.stop(0)
    if batcher is not None:
        batcher.close()
    all_ms = np.concatenate([np.asarray(x) for x in lat if x]) if any(lat) else np.zeros(1)
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]}")
    return {
        "mode": "batched" if batching else "batch-1",
        "window_ms": window_ms if batching else 0.0,
        "clients": clients,
        "requests": int(all_ms.size),
        "seconds": wall,
        "throughput_rps": all_ms.size / wall,
        "p50_ms": float(np.percentile(all_ms, 50)),
        "p99_ms": float(np.percentile(all_ms, 99)),
        "mean_ms": float(all_ms.mean()),
        "mean_batch": batcher.mean_batch if batcher is not None else 1.0,
        "batch_workers": workers if batcher is not None else 0,
        "load_average": os.getloadavg()[0],
    }
