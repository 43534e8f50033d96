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
import torch

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
    workers: int = 1,
    parallel: int = 1,
    threads: int = 1,
) -> dict:
    """Throughput and latency of ``clients`` concurrent clients against a loopback server.

    ``window_ms = 0`` and ``batching`` unset: every request runs alone (batch-1
    serving, the gRPC worker threads each calling the runtime, as many at once
    as there are clients). Otherwise a ``Batcher`` with that window gathers
    concurrent requests into one call, split into ``parallel`` chunks on as
    many threads (default 1: whole). ``threads``: torch
    intra-op threads during the run (restored after). ``cpu_ms_per_request``
    is the process's CPU time (server and clients) over the requests: what a
    request costs whatever share of the cores the machine gave the run.
    """
    batching = window_ms > 0 if batching is None else batching
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    batcher = Batcher(runtime, window_ms, max_batch, workers=workers, parallel=parallel) if batching else None
    server, port = start_server(GatiServicer(runtime, batcher=batcher), port=0, workers=max(16, clients * 2))
    try:
        lat, wall, cpu = _drive_clients(port, images, clients, requests_per_client)
    finally:
        server.stop(0)
        if batcher is not None:
            batcher.close()
        torch.set_num_threads(saved_threads)
    all_ms = np.concatenate([np.asarray(x) for x in lat])
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
        "cpu_ms_per_request": cpu * 1000 / all_ms.size,
        "cores_used": cpu / wall,  # the share of the machine this run got (2 = both cores of 2)
        "mean_batch": batcher.mean_batch if batcher is not None else 1.0,
        "batch_workers": workers if batcher is not None else 0,
        "parallel": parallel if batcher is not None else 0,
        "torch_threads": threads,
        "load_average": os.getloadavg()[0],
    }


def _drive_clients(
    port: int, images: np.ndarray, clients: int, per_client: int
) -> tuple[list[list[float]], float, float]:
    """Round-trip ms per client, wall seconds and process CPU seconds of ``clients`` closed-loop clients."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start_gate = threading.Barrier(clients + 1)

    def client_loop(c: int) -> None:
        client = GatiClient(f"127.0.0.1:{port}")
        try:
            client.predict(images[c % len(images)])  # connect before the clock starts
            start_gate.wait()
            for i in range(per_client):
                lat[c].append(client.predict(images[(c * per_client + i) % len(images)]).roundtrip_ms)
        except Exception as exc:  # reported in the result, not lost in a thread
            errors.append(f"{type(exc).__name__}: {exc}")
            start_gate.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    try:
        start_gate.wait()
    except threading.BrokenBarrierError:
        pass
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]}")
    return lat, wall, cpu


def compare_serving(
    runtime: GatiRuntime,
    images: np.ndarray,
    clients: int = 8,
    requests_per_client: int = 40,
    window_ms: float = 2.0,
    rounds: int = 2,
    say=lambda _m: None,
) -> list[dict]:
    """Batch-1 against batched serving, side by side, each at its best setting, ``rounds`` times alternating.

    Batch-1 is tried with torch at 1 thread and at one per core (its fair
    baseline is whichever is faster in that round); batched with the window
    and one chunk per core at 1 thread (see ``batching``), and, for the
    record, in one chunk. Each round ends with a ``summary`` row: the best
    batched throughput over the best batch-1 one, and the same for CPU per
    request.
    """
    cores = min(4, os.cpu_count() or 1)
    settings = [("batch-1", dict(threads=1)), ("batched", dict(window_ms=window_ms, parallel=cores))]
    if cores > 1:
        settings.insert(1, ("batch-1", dict(threads=cores)))
        settings.append(("batched", dict(window_ms=window_ms, parallel=1)))
    rows: list[dict] = []
    for rnd in range(rounds):
        got = []
        for mode, kw in settings:
            r = concurrent_load(runtime, images, clients, requests_per_client, **kw)
            r.update(section="serving", round=rnd)
            say(
                f"round {rnd} {mode} (threads {r['torch_threads']}, chunks {r['parallel']}): "
                f"{r['throughput_rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"CPU {r['cpu_ms_per_request']:.2f} ms/request on {r['cores_used']:.2f} cores, "
                f"mean batch {r['mean_batch']:.2f}, "
                f"load {r['load_average']:.1f}"
            )
            got.append(r)
        rows += got
        one = max((r for r in got if r["mode"] == "batch-1"), key=lambda r: r["throughput_rps"])
        many = max((r for r in got if r["mode"] == "batched"), key=lambda r: r["throughput_rps"])
        rows.append(
            {
                "section": "serving_summary",
                "round": rnd,
                "clients": clients,
                "throughput_ratio": many["throughput_rps"] / one["throughput_rps"],
                "cpu_per_request_ratio": min(r["cpu_ms_per_request"] for r in got if r["mode"] == "batch-1")
                / min(r["cpu_ms_per_request"] for r in got if r["mode"] == "batched"),
                "batch1_best": f"threads {one['torch_threads']}",
                "batched_best": f"chunks {many['parallel']}",
                "batch1_p99_ms": one["p99_ms"],
                "batched_p99_ms": many["p99_ms"],
                "load_average": os.getloadavg()[0],
            }
        )
        say(
            f"round {rnd}: batched / batch-1 throughput {rows[-1]['throughput_ratio']:.2f}x, "
            f"CPU per request {rows[-1]['cpu_per_request_ratio']:.2f}x fewer"
        )
    return rows
