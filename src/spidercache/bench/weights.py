"""`spidercache bench weights`: the weight cache against raw pymemcache, map/reduce, memo.

Every figure is a ratio measured in one run against a reference on the same
machine:

* put/get of a ResNet-18 state dict through WeightCache vs raw pymemcache
  ``set_many`` / ``get_many`` of the very same chunk bytes on the same servers
  (the raw path skips only what WeightCache adds: tensor to bytes, checksums,
  manifest, old-version clean-up, reassembly into tensors);
* map/reduce rounds from cached weights vs from scratch every round;
* a memoized rerun of that job vs its first run.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from typing import Callable, Optional, Sequence

from ..checks import at_least
from ..errors import UserError
from ..weights.weight_cache import WeightCache
from .runner import Rows, best_of

HELP = {
    "servers": "memcached pool HOST:PORT,... (default: start two on loopback with 1 GB each).",
    "repeats": "Timed repetitions per path; the fastest is kept.",
    "rounds": "Map/reduce rounds.",
    "data": "fashion-mnist or synthetic.",
    "skip_mapreduce": "Only the throughput rows.",
}


def run(
    servers: Optional[str] = None,
    repeats: int = 5,
    rounds: int = 6,
    data: str = "fashion-mnist",
    skip_mapreduce: bool = False,
    log: Callable[[str], None] = print,
) -> Rows:
    """WeightCache vs raw pymemcache (ResNet-18), map/reduce cached vs scratch, memoized rerun.

    Rows: the throughput rows ``{op, path, megabytes, mb_per_second}``; ``info`` has the
    put/get ratios, the bit-exact check and the map/reduce and memo figures.
    """
    from ..engine.stores.launch import memcached_pool
    from ..weights.mapreduce import DATASETS

    at_least(1, flag=True, repeats=repeats, rounds=rounds)
    if data not in DATASETS:
        raise UserError(f"unknown data {data!r}; choose one of: {', '.join(DATASETS)}")
    with contextlib.ExitStack() as stack:
        if servers:
            addresses = servers.split(",")
            WeightCache(addresses, strict=True).close()  # every server answers, before the first line
        else:
            addresses = [p.address for p in stack.enter_context(memcached_pool(2, memory_mb=1024))]
        log(f"memcached pool: {', '.join(addresses)}")
        tp = bench_throughput(addresses, repeats=repeats)
        info = {k: v for k, v in tp.items() if k != "rows"}
        log(
            f"put ratio {tp['put_ratio']:.2f}, get ratio {tp['get_ratio']:.2f} (target >= 0.70), "
            f"bit-exact: {tp['bit_exact']}"
        )
        if not skip_mapreduce:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info.update(
                    bench_mapreduce_and_memo(
                        addresses,
                        rounds=rounds,
                        data=data,
                        on_round=lambda label, r, s: log(f"[{label}] round {r + 1}: {_accuracy(s)}"),
                    )
                )
            _log_mapreduce(info, log)
    return Rows(tp["rows"], info)


TITLE = "WeightCache vs raw pymemcache (same bytes, same servers)"
COLUMNS = [
    ("op", lambda r: r["op"]),
    ("path", lambda r: r["path"]),
    ("megabytes", lambda r: f"{r['megabytes']:.1f}"),
    ("mb_per_second", lambda r: f"{r['mb_per_second']:.1f}"),
]


def _accuracy(summary: dict):
    acc = summary["val_accuracy"]
    return acc if acc is None else round(acc, 3)


def _log_mapreduce(info: dict, log: Callable[[str], None]) -> None:
    m, memo = info["mapreduce"], info["memo"]
    log(f"map/reduce: cached {m['cached_accuracy']}; scratch {m['scratch_accuracy']}")
    log(
        f"cached run reaches scratch final {m['scratch_final_accuracy']} "
        f"in round {m['cached_rounds_to_match']} of {m['rounds']} (target <= half: {m['meets_half']})"
    )
    log(
        f"memo: first {memo['first_seconds']:.2f} s, rerun {memo['rerun_seconds']:.4f} s, "
        f"speedup {memo['speedup']:.0f}x (target >= 10x), same result: {memo['same_result']}"
    )


def bench_throughput(servers: Sequence[str], repeats: int = 5, network: str = "resnet18") -> dict:
    """Rows ``{op, path, megabytes, mb_per_second}`` plus ratios and a bit-exact check."""
    import torch
    from pymemcache.client.hash import HashClient

    from ..models import build_model

    torch.manual_seed(0)
    state = build_model(network, 3, 10).state_dict()
    cache = WeightCache(servers, prefix="benchw")
    raw_client = HashClient(
        cache.servers,
        connect_timeout=1.0,
        timeout=5.0,
        ignore_exc=True,
        retry_attempts=0,
        default_noreply=False,
        no_delay=True,  # as the engine's memcached store sets it
    )
    try:
        info = cache.put("bench", "node01", state)
        # The raw path stores the same bytes, cut into the same chunks.
        chunks: dict[str, bytes] = {}
        cb = cache.chunk_bytes
        for value in state.values():
            raw = value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b""
            for i in range(0, max(len(raw), 1), cb):
                chunks[f"benchraw/{len(chunks)}"] = raw[i : i + cb]
        megabytes = info.nbytes / 1e6
        if raw_client.set_many(chunks):
            raise RuntimeError("raw set_many failed: memcached full? start the servers with more memory (-m)")
        keys = list(chunks)

        def raw_get() -> None:
            got = raw_client.get_many(keys)
            if len(got) != len(keys):
                raise RuntimeError("raw get_many lost items: memcached full?")

        timings = {}
        # Interleave the paths so that drift in machine load hits both alike.
        for _ in range(repeats):
            for label, fn in (
                ("put/raw", lambda: raw_client.set_many(chunks)),
                ("put/weightcache", lambda: cache.put("bench", "node01", state)),
                ("get/raw", raw_get),
                ("get/weightcache", lambda: cache.get("bench", "node01")),
            ):
                timings[label] = min(timings.get(label, float("inf")), best_of(fn, 1))
        version = cache.get("bench", "node01")
        exact = version is not None and all(torch.equal(version.state[k], v) for k, v in state.items())
        rows = []
        for label, seconds in timings.items():
            op, path = label.split("/")
            rows.append(
                {
                    "op": op,
                    "path": path,
                    "megabytes": round(megabytes, 3),
                    "mb_per_second": round(megabytes / seconds, 1),
                }
            )
        rate = {r["op"] + "/" + r["path"]: r["mb_per_second"] for r in rows}
        return {
            "rows": rows,
            "put_ratio": rate["put/weightcache"] / rate["put/raw"],
            "get_ratio": rate["get/weightcache"] / rate["get/raw"],
            "bit_exact": bool(exact),
            "layers": len(state),
            "chunk_bytes": cb,
        }
    finally:
        raw_client.delete_many(list(chunks) if "chunks" in locals() else [])
        cache.delete("bench", "node01")
        raw_client.close()
        cache.close()


def bench_mapreduce_and_memo(
    servers: Sequence[str],
    rounds: int = 6,
    data: str = "fashion-mnist",
    on_round: Callable[[str, int, dict], None] | None = None,
    processes: bool = True,
) -> dict:
    """One memoized map/reduce experiment run twice with a fresh results store: figures of both."""
    from ..weights.experiment import run_experiment
    from ..weights.mapreduce import MapReduceConfig

    cfg = MapReduceConfig(job="benchmr", rounds=rounds, data=data)
    with tempfile.TemporaryDirectory(prefix="spidercache-memo-") as store:
        t = time.perf_counter()
        first = run_experiment(cfg, servers=servers, results=store, on_round=on_round, processes=processes)
        first_seconds = time.perf_counter() - t
        t = time.perf_counter()
        second = run_experiment(cfg, servers=servers, results=store, processes=processes)
        second_seconds = time.perf_counter() - t
    same = second["cached"]["accuracy"] == first["cached"]["accuracy"]
    return {
        "mapreduce": {
            "cached_accuracy": first["cached"]["accuracy"],
            "scratch_accuracy": first["scratch"]["accuracy"],
            **first["figure"],
            "warnings": first["cached"]["warnings"] + first["scratch"]["warnings"],
        },
        "memo": {
            "first_seconds": round(first_seconds, 3),
            "rerun_seconds": round(second_seconds, 4),
            "speedup": first_seconds / second_seconds,
            "rerun_hit": second["memo"]["hit"],
            "same_result": same,
        },
    }
