"""Map/reduce training rounds on Dask distributed, with weights exchanged through a WeightCache.

One round: ``nodes`` map tasks each train the network for ``steps`` SGD steps on
their own data partition, starting from cached weights chosen by ``start``:

* ``reduced``   the previous round's reduced weights (node ``reduce``),
* ``own``       the node's own latest weights,
* ``best``      the fittest weights any node stored (validation accuracy),
* ``neighbour`` the fittest weights among the node's neighbours on a ring graph,
* ``scratch``   a fresh initialisation every round (the baseline to beat).

Each falls back, with a warning, to the next thing that is still complete in
the cache (``best``, then a fresh start) when a server died or an item was
evicted: never to a partial tensor. Each map task stores its updated weights
with its validation accuracy as fitness. The reduce task averages the nodes'
weights (``average``) or keeps the fittest (``fittest``), evaluates the result
and stores it as node ``reduce``.

Map and reduce tasks run on Dask workers: a LocalCluster by default, or the
scheduler at ``scheduler`` (workers there need spidercache installed).
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from ..checks import at_least, positive
from ..errors import StoreUnavailable, UserError
from .layers import WeightCacheWarning, check_name, load_into, parse_servers, ring_graph
from .weight_cache import WeightCache

START_MODES = ("reduced", "own", "best", "neighbour", "scratch")
REDUCE_MODES = ("average", "fittest")
DATASETS = ("fashion-mnist", "synthetic")
REDUCE_NODE = "reduce"
_INIT_LOCK = threading.Lock()


@dataclass
class MapReduceConfig:
    job: str = "fmnist"
    network: str = "small"
    data: str = "fashion-mnist"
    data_root: str = "/usr/share/datasets/fashion-mnist"
    nodes: int = 2
    rounds: int = 6
    start: str = "reduced"
    reduce: str = "average"
    steps: int = 40
    batch_size: int = 64
    lr: float = 0.05
    train_samples: int = 8000
    val_samples: int = 1000
    seed: int = 0
    local_mb: int = 256  # weight chunks each worker process keeps (WeightCache's local tier); 0: none

    def validate(self) -> MapReduceConfig:
        check_name("job", self.job)
        if self.start not in START_MODES:
            raise UserError(f"unknown start {self.start!r}; choose one of: {', '.join(START_MODES)}")
        if self.reduce not in REDUCE_MODES:
            raise UserError(f"unknown reduce {self.reduce!r}; choose one of: {', '.join(REDUCE_MODES)}")
        if self.data not in DATASETS:
            raise UserError(f"unknown data {self.data!r}; choose one of: {', '.join(DATASETS)}")
        counts = ("nodes", "rounds", "steps", "batch_size", "train_samples", "val_samples")
        at_least(1, **{name: getattr(self, name) for name in counts})
        if self.train_samples < self.nodes:
            raise UserError(
                f"train-samples ({self.train_samples}) must be at least the number of nodes ({self.nodes})"
            )
        positive(lr=self.lr)
        at_least(0, local_mb=self.local_mb)
        from ..models import build_model

        build_model(self.network, 1, 10)  # unknown network -> UserError now, not on a worker
        return self

    def node_names(self) -> list[str]:
        return [f"node{i + 1:02d}" for i in range(self.nodes)]


# ------------------------------------------------------------------- data
def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 classes of 1x28x28 images: a fixed random prototype per class plus noise."""
    protos = np.random.default_rng(1234).normal(0.0, 1.0, size=(10, 1, 28, 28)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    x = protos[y] * 0.6 + rng.normal(0.0, 1.0, size=(n, 1, 28, 28)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


@lru_cache(maxsize=4)
def load_data(
    data: str, root: str, train_samples: int, val_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, val x, val y) as float32 N x 1 x 28 x 28 and int64; cached per worker process."""
    if data == "synthetic":
        xt, yt = _synthetic(train_samples, seed)
        xv, yv = _synthetic(val_samples, seed + 1)
        return xt, yt, xv, yv
    from ..data.datasets import FashionMNIST

    train, test = FashionMNIST(root, train=True), FashionMNIST(root, train=False)
    rng = np.random.default_rng(seed)
    ti = rng.permutation(len(train))[:train_samples]
    vi = rng.permutation(len(test))[:val_samples]

    def prep(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255.0) - 0.2860) / 0.3530

    return prep(train.data[ti]), train.targets[ti], prep(test.data[vi]), test.targets[vi]


def data_fingerprint(cfg: MapReduceConfig) -> str:
    """What the data a run trains on depends on, for the job-result key."""
    if cfg.data == "synthetic":
        return "synthetic-v1"
    from ..data.datasets import FashionMNIST

    return (
        FashionMNIST(cfg.data_root, train=True).fingerprint()
        + FashionMNIST(cfg.data_root, train=False).fingerprint()
    )


# ------------------------------------------------------------- model work
def _fresh_model(cfg: MapReduceConfig, round_index: int):
    import torch

    from ..models import build_model

    # Every node of a round starts from the same initialisation, so that
    # averaging their updates is meaningful (as in federated averaging). The
    # seed is global to the process: threaded workers take turns.
    with _INIT_LOCK:
        torch.manual_seed(cfg.seed * 100_003 + round_index)
        return build_model(cfg.network, 1, 10)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(torch.from_numpy(x[i : i + batch]))
            if isinstance(logits, tuple):
                logits = logits[0]
            correct += int((logits.argmax(1).numpy() == y[i : i + batch]).sum())
    return correct / max(1, len(x))


def _train(model, x: np.ndarray, y: np.ndarray, cfg: MapReduceConfig, rng: np.random.Generator) -> float:
    import torch

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    last = float("nan")
    for _ in range(cfg.steps):
        idx = rng.integers(0, len(x), size=min(cfg.batch_size, len(x)))
        logits = model(torch.from_numpy(x[idx]))
        if isinstance(logits, tuple):
            logits = logits[0]
        loss = loss_fn(logits, torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = float(loss)
    return last


def _open_cache(servers: Sequence[str], local_mb: int) -> WeightCache:
    # Inside a task a server may have died since the run began: go on with the
    # ones that answer (strict=False) and let the loads fall back. Chunks read
    # are kept in this worker process for the tasks after this one (local_tier.py).
    return WeightCache(list(servers), strict=False, local_bytes=local_mb << 20)


def _chunk_reads(cache: WeightCache) -> dict:
    """One task's chunk reads and how many of them memcached served (the rest: this process's tier)."""
    return {"read": cache.chunks.requested, "from_memcached": cache.chunks.fetched}


def _start_weights(
    cache: WeightCache, cfg: MapReduceConfig, node: str, round_index: int, log: list[str]
) -> tuple[Any, str]:
    """(verified state dict or None, where it came from), falling back as the module says."""
    job = cfg.job
    if round_index == 0 or cfg.start == "scratch":
        return None, "fresh"
    tries: list[tuple[str, Callable[[], Any]]] = []
    if cfg.start == "reduced":
        tries.append((REDUCE_NODE, lambda: cache.get(job, REDUCE_NODE)))
    elif cfg.start == "own":
        tries.append((node, lambda: cache.get(job, node)))
    elif cfg.start == "neighbour":
        graph = ring_graph(cfg.node_names())
        tries.append(("neighbour", lambda: cache.neighbours(job, node, graph)))
    tries.append(("best", lambda: cache.best(job)))
    for label, load in tries:
        version = load()
        if version is not None:
            if label != tries[0][0]:
                log.append(
                    f"round {round_index + 1} {node}: {tries[0][0]} weights unavailable, "
                    f"started from {version.node}'s (by fitness)"
                )
            return version.state, version.node
    log.append(f"round {round_index + 1} {node}: no complete cached weights, started fresh")
    return None, "fresh"


def _with_warnings(fn: Callable[[list[str]], dict]) -> dict:
    """Run ``fn`` and add the WeightCacheWarnings it raised to its ``warnings`` list."""
    log: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", WeightCacheWarning)
        out = fn(log)
    log.extend(str(w.message) for w in caught if issubclass(w.category, WeightCacheWarning))
    out["warnings"] = log
    return out


def map_task(cfg_dict: dict, node: str, round_index: int, servers: Sequence[str]) -> dict:
    """One map task (runs on a Dask worker): load start weights, train, store with fitness."""
    import torch

    torch.set_num_threads(1)
    cfg = MapReduceConfig(**cfg_dict)

    def work(log: list[str]) -> dict:
        began = time.perf_counter()
        xt, yt, xv, yv = load_data(cfg.data, cfg.data_root, cfg.train_samples, cfg.val_samples, cfg.seed)
        part = cfg.node_names().index(node)
        x, y = xt[part :: cfg.nodes], yt[part :: cfg.nodes]
        model = _fresh_model(cfg, round_index)
        with _open_cache(servers, cfg.local_mb) as cache:
            state, source = _start_weights(cache, cfg, node, round_index, log)
            if state is not None:
                load_into(model, state)
            rng = np.random.default_rng([cfg.seed, round_index, part])
            loss = _train(model, x, y, cfg, rng)
            fitness = evaluate(model, xv, yv)
            try:
                cache.put(cfg.job, node, model, fitness=fitness)
            except StoreUnavailable as exc:
                log.append(f"round {round_index + 1} {node}: weights not cached ({exc})")
            chunks = _chunk_reads(cache)
        return {
            "chunks": chunks,
            "node": node,
            "source": source,
            "fitness": fitness,
            "loss": loss,
            "seconds": time.perf_counter() - began,
        }

    return _with_warnings(work)


def reduce_task(cfg_dict: dict, round_index: int, servers: Sequence[str], map_results: list[dict]) -> dict:
    """Combine the nodes' weights (average or fittest), evaluate, store as node ``reduce``."""
    import torch

    torch.set_num_threads(1)
    cfg = MapReduceConfig(**cfg_dict)

    def work(log: list[str]) -> dict:
        _, _, xv, yv = load_data(cfg.data, cfg.data_root, cfg.train_samples, cfg.val_samples, cfg.seed)
        model = _fresh_model(cfg, round_index)
        with _open_cache(servers, cfg.local_mb) as cache:
            ranked = sorted(map_results, key=lambda r: r["fitness"], reverse=True)
            versions = []
            for result in ranked:
                version = cache.get(cfg.job, result["node"])
                if version is not None:
                    versions.append(version)
                    if cfg.reduce == "fittest":
                        break
            if not versions:
                log.append(
                    f"round {round_index + 1}: no node's weights are complete in the cache; nothing reduced"
                )
                return {"val_accuracy": None, "reduced_from": [], "chunks": _chunk_reads(cache)}
            load_into(model, _average([v.state for v in versions]))
            accuracy = evaluate(model, xv, yv)
            try:
                cache.put(cfg.job, REDUCE_NODE, model, fitness=accuracy)
            except StoreUnavailable as exc:
                log.append(f"round {round_index + 1}: reduced weights not cached ({exc})")
            chunks = _chunk_reads(cache)
        return {"val_accuracy": accuracy, "reduced_from": [v.node for v in versions], "chunks": chunks}

    return _with_warnings(work)


def _average(states: list[dict]) -> dict:
    """Mean of floating-point tensors; other tensors (counters) from the first (fittest) state."""
    import torch

    out = {}
    for name, first in states[0].items():
        if torch.is_floating_point(first):
            out[name] = torch.stack([s[name].to(torch.float64) for s in states]).mean(0).to(first.dtype)
        else:
            out[name] = first.clone()
    return out


# ------------------------------------------------------------------ driver
@dataclass
class RunResult:
    config: dict
    accuracy: list[float | None] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def run_mapreduce(
    cfg: MapReduceConfig,
    servers: Sequence[str],
    client,
    on_round: Callable[[int, dict], None] | None = None,
    fresh: bool = True,
) -> RunResult:
    """Run ``cfg.rounds`` rounds of map/reduce on the Dask ``client``; returns accuracy per round.

    ``fresh`` forgets weights left in the cache under ``cfg.job`` by an earlier
    run, so that this run starts from scratch; ``on_round(round, summary)`` is
    called after every round (progress bars, fault injection in tests).
    """
    cfg.validate()
    servers = [f"{h}:{p}" for h, p in parse_servers(servers)]
    began = time.perf_counter()
    if fresh:
        with WeightCache(servers) as cache:  # strict: a wrong address fails here, once
            for node in set(cache.nodes(cfg.job)) | set(cfg.node_names()) | {REDUCE_NODE}:
                cache.delete(cfg.job, node)
    result = RunResult(config=asdict(cfg))
    cfg_dict = asdict(cfg)
    for r in range(cfg.rounds):
        round_began = time.perf_counter()
        futures = [
            client.submit(map_task, cfg_dict, node, r, servers, pure=False) for node in cfg.node_names()
        ]
        maps = client.gather(futures)
        reduced = client.gather(client.submit(reduce_task, cfg_dict, r, servers, maps, pure=False))
        summary = {
            "round": r + 1,
            "val_accuracy": reduced["val_accuracy"],
            "reduced_from": reduced["reduced_from"],
            "maps": [
                {k: m[k] for k in ("node", "source", "fitness", "loss", "seconds", "chunks")} for m in maps
            ],
            # weight chunks the round's tasks read, and how many memcached served (the rest: worker processes)
            "chunks_read": sum(t["chunks"]["read"] for t in [*maps, reduced]),
            "chunks_from_memcached": sum(t["chunks"]["from_memcached"] for t in [*maps, reduced]),
            "seconds": time.perf_counter() - round_began,
        }
        for item in [*maps, reduced]:
            result.warnings.extend(item["warnings"])
        result.accuracy.append(reduced["val_accuracy"])
        result.rounds.append(summary)
        if on_round is not None:
            on_round(r, summary)
    result.seconds = time.perf_counter() - began
    return result
