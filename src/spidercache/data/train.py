"""The training loop behind ``spidercache train`` (and ``bench train`` and ``demo``).

``train(TrainConfig(...))`` opens the train and test datasets (``splits.py``;
ImageFolder trees are read lazily, local or by URL), wraps the training set
in a ``CachedLoader`` (policy + stores from the CLI's flags, plus the
``--storage-latency-ms`` delay on top of each real read), builds the model,
runs the epochs (``train_run.py``) and returns the per-epoch rows (also
written as JSON lines).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..checks import at_least, positive
from ..errors import UserError
from .compute_threads import ComputeThreads
from .datasets import Subset
from .distributed import DistInfo, barrier, init_distributed, shutdown
from .evaluate import evaluate
from .loader import CachedLoader, default_fingerprint
from .policies import DEFAULT_POLICY, policy_class
from .policies.base import check_class_labels
from .splits import open_splits
from .storage import StorageModel
from .stores import train_store_specs
from .train_run import _Run
from .transforms import Compose, Normalize, RandomFlipCrop, channel_stats


@dataclass
class TrainConfig:
    """Every option of ``spidercache train`` (SpiderCache's own flags keep their names)."""

    train_paths: list[str] = field(default_factory=list)
    network: str = "small"
    batch_size: int = 256
    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    cache_training_data: bool = True
    working_set_size: float = 0.1
    cache_nodes: int = 1
    host_ip: str = "127.0.0.1"
    port_num: int = 6379
    port_num2: int = 6380
    port_num3: int = 6381  # SpiderCache's shared ratio server (used by the spider policy)
    policy: str = DEFAULT_POLICY
    policy_options: dict[str, Any] = field(default_factory=dict)
    cache_backend: str = "memory"
    lmdb_path: str | None = None
    redis_nodes: str | None = None
    redis_cluster: bool = False  # --cache_nodes N over a Redis Cluster instead of N independent servers
    cache: str = "decoded"  # or "raw": cache the encoded files (ImageFolder)
    strict: bool = False  # an image that fails to decode is an error, not a skipped sample
    cache_bytes: int | None = None  # a byte budget instead of --working_set_size
    memcached_servers: str | None = None
    session: int | None = None
    server_port: int = 50052
    storage_latency_ms: float = 5.0
    storage_bandwidth_mbps: float = 0.0
    workers: int = 2
    threads: int = 0  # CPU: torch's intra-op threads; 0 = ComputeThreads decides batch by batch
    prefetch_factor: int = 2
    train_samples: int = 0  # 0: all; else a fixed random subset
    test_samples: int = 0
    image_size: int = 32  # ImageFolder resize
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    log: str | None = None  # JSON lines, one row per epoch
    plot: str | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        if not (0.0 < self.working_set_size <= 1.0) or math.isnan(self.working_set_size):
            raise UserError(f"--working-set must be in (0, 1], got {self.working_set_size}")
        at_least(1, flag=True, batch_size=self.batch_size, epochs=self.epochs)
        at_least(0, flag=True, workers=self.workers, threads=self.threads)
        at_least(1, flag=True, cache_nodes=self.cache_nodes)
        at_least(1, flag=True, cache_bytes=self.cache_bytes)  # 0 is no budget, not "use --working-set"
        at_least(0, flag=True, train_samples=self.train_samples, test_samples=self.test_samples)
        positive(flag=True, lr=self.lr)
        at_least(1, flag=True, image_size=self.image_size)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        policy_class(self.policy)  # unknown policy -> UserError now, not after loading data
        from ..models import NETWORKS

        if self.network.lower().replace("-", "").replace("_", "") not in NETWORKS:
            raise UserError(f"unknown network {self.network!r}; choose one of: {', '.join(NETWORKS)}")
        StorageModel(self.storage_latency_ms, self.storage_bandwidth_mbps)
        from ..paths import check_output_path

        for path in (self.plot, self.log):  # outputs written after training must be writable before it
            if path:
                check_output_path(path)
        if self.checkpoint_dir:
            try:
                os.makedirs(self.checkpoint_dir, exist_ok=True)
            except OSError as exc:
                why = exc.strerror or exc
                raise UserError(f"cannot use --checkpoint-dir {self.checkpoint_dir}: {why}") from None


@dataclass
class TrainResult:
    rows: list[dict]
    summary: dict


def _subset(ds, n: int, seed: int, why: str):
    if n <= 0 or n >= len(ds):
        return ds
    return Subset(
        ds, np.sort(np.random.default_rng(seed).choice(len(ds), n, replace=False)), f"{why}-{n}-{seed}"
    )


def _channel_stats(cached, seed: int, n: int = 512) -> tuple[np.ndarray, tuple[list[float], list[float]]]:
    """One sample and the per-channel mean / std (0..255 scale) of up to ``n``, read as a miss is."""
    ids = np.sort(np.random.default_rng(seed).choice(len(cached), min(n, len(cached)), replace=False))
    got = [cached.item_or_skip(v, int(i)) for v, i in zip(cached.load(ids), ids) if v is not None]
    x = np.stack([np.asarray(g[0]) for g in got if g is not None])
    return x[0], channel_stats(x)


def plot_rows(rows: list[dict], path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r["hit_ratio"] for r in rows], "o-", label="hits")
    a1.plot(ep, [r["hit_ratio"] + r["substitution_ratio"] for r in rows], "s--", label="hits + substitutions")
    a1.set_xlabel("epoch"), a1.set_ylabel("share of requests"), a1.set_ylim(0, 1.02), a1.legend()
    a2.plot(ep, [r["test_accuracy"] for r in rows], "o-")
    a2.set_xlabel("epoch"), a2.set_ylabel("test accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class _Progress:
    """Rich progress bar on the main rank (nothing elsewhere, or when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.p = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from ..console import console

            self.p = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>8.0f} samples/s"),
                TextColumn("hit {task.fields[hit]:.3f} sub {task.fields[sub]:.3f}"),
                TextColumn("loss {task.fields[loss]:.3f}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console(stderr=True),
            )
            self.p.start()

    def task(self, epoch: int, total: int):
        if self.p is None:
            return None
        return self.p.add_task("", total=total, epoch=epoch, rate=0.0, hit=0.0, sub=0.0, loss=0.0)

    def advance(self, task, **fields) -> None:
        if self.p is not None:
            self.p.update(task, advance=1, **fields)

    def stop(self) -> None:
        if self.p is not None:
            self.p.stop()


def _say_plan(cfg: TrainConfig, n_train: int, n_test: int, start_epoch: int) -> None:
    """One line on stderr, before any work: what this run will do."""
    policy = cfg.policy if cfg.cache_training_data else "none"
    print(
        f"train: {cfg.network} on {n_train:,} training / {n_test:,} test samples, epochs {start_epoch}.."
        f"{cfg.epochs - 1}, batch {cfg.batch_size}, policy {policy}, working set {cfg.working_set_size:g}, "
        f"storage +{cfg.storage_latency_ms:g} ms per read, {cfg.workers} loader workers "
        "(an estimate of the time left follows the first epoch)",
        file=sys.stderr,
    )


def train(
    cfg: TrainConfig, dist_info: DistInfo | None = None, on_epoch: Callable[[dict], None] | None = None
) -> TrainResult:
    cfg.validate()
    info = dist_info or init_distributed(cfg.device)
    try:
        return _train(cfg, info, on_epoch)
    finally:
        if dist_info is None:
            shutdown(info)


def _setup(cfg: TrainConfig, info: DistInfo):
    """Datasets, loader (policy + stores) and normalisation for one run."""
    train_ds, test_ds, note = open_splits(cfg.train_paths, cfg.image_size, cfg.seed)
    train_ds = _subset(train_ds, cfg.train_samples, cfg.seed, "train-subset")
    test_ds = _subset(test_ds, cfg.test_samples, cfg.seed + 1, "test-subset")
    policy_name = cfg.policy if cfg.cache_training_data else "none"
    specs = train_store_specs(
        cfg.cache_backend,
        host_ip=cfg.host_ip,
        port_num=cfg.port_num,
        port_num2=cfg.port_num2,
        cache_nodes=cfg.cache_nodes,
        redis_nodes=cfg.redis_nodes,
        redis_cluster=cfg.redis_cluster,
        lmdb_path=cfg.lmdb_path,
        memcached_servers=cfg.memcached_servers,
        session=cfg.session,
        server_port=cfg.server_port,
    )
    # Under DDP a per-rank memory cache gets its share of the working set.
    share = info.world if specs == ["memory"] else 1
    ws = None if cfg.cache_bytes else cfg.working_set_size / share
    cache_bytes = cfg.cache_bytes // share if cfg.cache_bytes else None
    opts = dict(cfg.policy_options)
    opts.setdefault("ratio_address", (cfg.host_ip, cfg.port_num3) if cfg.cache_backend == "redis" else None)
    opts.setdefault("dist", info)
    loader = CachedLoader(
        train_ds,
        cfg.batch_size,
        shuffle=True,
        num_workers=cfg.workers,
        policy=policy_name,
        working_set=ws,
        cache_bytes=cache_bytes,
        store=specs,
        seed=cfg.seed,
        prefetch_factor=cfg.prefetch_factor,
        persistent_workers=cfg.workers > 0,
        cache=cfg.cache,
        strict=cfg.strict,
        rank=info.rank,
        world=info.world,
        policy_options=opts,
        storage_model=StorageModel(cfg.storage_latency_ms, cfg.storage_bandwidth_mbps),
    )
    if loader.labels is not None:  # cross-entropy needs class indices, whatever the policy
        check_class_labels(loader.labels)
    if note and info.is_main:  # after the checks above: a mistake stays one line
        print(note, file=sys.stderr)
    x0, (mean, std) = _channel_stats(loader.dataset, cfg.seed)
    norm = Normalize(mean, std)
    num_classes = len(getattr(train_ds, "classes", None) or []) or int(np.max(loader.labels)) + 1
    return train_ds, test_ds, loader, norm, int(np.asarray(x0).shape[0]), num_classes, " + ".join(specs)


def _train(cfg: TrainConfig, info: DistInfo, on_epoch) -> TrainResult:
    from ..models import build_model

    torch.manual_seed(cfg.seed)
    threads = None
    if info.device.type == "cpu":
        # Leave cores to the loader workers while they read the source: torch's intra-op
        # threads spin when the CPU is oversubscribed (measured 40x slower kernels on 2 busy
        # cores); every core once the cache serves the batches (data/compute_threads.py).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        else:
            threads = ComputeThreads(max(1, cores // max(1, info.world)), cfg.workers)
    train_ds, test_ds, loader, norm, in_channels, num_classes, store_label = _setup(cfg, info)
    transform = Compose([RandomFlipCrop(seed=cfg.seed + 7), norm]) if cfg.augment else norm
    model = build_model(cfg.network, in_channels=in_channels, num_classes=num_classes).to(info.device)
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    fingerprint = default_fingerprint(train_ds)
    run = _Run(cfg, info, model, opt, sched, loader, transform, fingerprint, threads)
    rows, start_epoch = run.resume() if cfg.resume else ([], 0)
    log_file = open(cfg.log, "a" if cfg.resume else "w") if (cfg.log and info.is_main) else None
    progress = _Progress(cfg.progress and info.is_main)
    if cfg.progress and info.is_main:
        _say_plan(cfg, len(train_ds), len(test_ds), start_epoch)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            row = run.epoch(epoch, progress)
            if cfg.progress and info.is_main and epoch == start_epoch and epoch + 1 < cfg.epochs:
                left = row["epoch_seconds"] * (cfg.epochs - epoch - 1)
                print(
                    f"epoch {epoch}: {row['epoch_seconds']:.0f} s; at that pace about {left / 60:.1f} min "
                    f"for the {cfg.epochs - epoch - 1} epoch(s) left (warm epochs are usually shorter)",
                    file=sys.stderr,
                )
            row["test_accuracy"], row["test_skipped"] = evaluate(
                run.bare, test_ds, norm, info.device, cfg.workers, cfg.strict
            )
            rows.append(row)
            if log_file:
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
            if on_epoch and info.is_main:
                on_epoch(row)
            run.checkpoint(epoch, rows)
            barrier(info)
    finally:
        progress.stop()
        if log_file:
            log_file.close()
        loader.close()
    if cfg.plot and info.is_main and rows:
        plot_rows(
            rows, cfg.plot, f"{rows[-1]['policy']}, working set {cfg.working_set_size:g}, {cfg.network}"
        )
    model_desc = StorageModel(cfg.storage_latency_ms, cfg.storage_bandwidth_mbps).describe()
    return TrainResult(rows, summarize(rows, store_label, "the dataset's own reads + " + model_desc))


def summarize(rows: list[dict], backend: str = "", storage: str = "") -> dict:
    if not rows:
        return {}
    last = rows[-1]
    later = rows[1:] or rows
    return {
        "policy": last["policy"],
        "network": last["network"],
        "epochs": len(rows),
        "train_samples": last["train_samples"],
        "working_set": last["working_set"],
        "backend": backend,
        "storage": storage,
        "final_test_accuracy": last["test_accuracy"],
        "hit_ratio_after_first_epoch": sum(r["hit_ratio"] for r in later) / len(later),
        "substitution_ratio_after_first_epoch": sum(r["substitution_ratio"] for r in later) / len(later),
        "first_epoch_seconds": rows[0]["epoch_seconds"],
        "mean_epoch_seconds_after_first": sum(r["epoch_seconds"] for r in later) / len(later),
        "lost_hits": sum(r["lost_hits"] for r in rows),
        "store_errors": sum(r["store_errors"] for r in rows),
    }
