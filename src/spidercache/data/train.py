"""The training loop behind ``spidercache train`` (and ``bench train`` and ``demo``).

``train(TrainConfig(...))`` builds the dataset, the slow storage, the cache
backend, the policy and the model, runs the epochs and returns the per-epoch
rows (also written as JSON lines). Each step passes the policy what it needs
from the same forward pass: the served sample ids, their per-sample losses
(``reduction='none'``) and, when the policy asks, their penultimate-layer
embeddings. Under DDP those are all-gathered first, so every rank's policy
stays identical.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .backends import make_backend
from .cached import CachedDataset
from .datasets import ArrayImageDataset, files_fingerprint, open_dataset
from .distributed import DistInfo, all_gather_array, all_reduce_sum, barrier, init_distributed, shutdown
from .loader import CachedLoader, LoaderStats
from .policies import DEFAULT_POLICY, make_training_policy, policy_class
from .storage import SlowStorage, StorageModel
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
    port_num3: int = 6381          # SpiderCache's shared ratio server (used by the spider policy)
    policy: str = DEFAULT_POLICY
    policy_options: dict[str, Any] = field(default_factory=dict)
    cache_backend: str = "memory"
    lmdb_path: str | None = None
    redis_nodes: str | None = None
    memcached_servers: str | None = None
    session: int | None = None
    server_port: int = 50052
    storage_latency_ms: float = 5.0
    storage_bandwidth_mbps: float = 0.0
    workers: int = 2
    prefetch_factor: int = 2
    train_samples: int = 0         # 0: all; else a fixed random subset
    test_samples: int = 0
    image_size: int = 32           # ImageFolder resize
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    log: str | None = None         # JSON lines, one row per epoch
    plot: str | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        if not (0.0 < self.working_set_size <= 1.0) or math.isnan(self.working_set_size):
            raise UserError(f"--working_set_size must be in (0, 1], got {self.working_set_size}")
        if self.batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {self.batch_size}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.workers < 0:
            raise UserError(f"--workers must be >= 0, got {self.workers}")
        if self.cache_nodes < 1:
            raise UserError(f"--cache_nodes must be at least 1, got {self.cache_nodes}")
        if self.train_samples < 0 or self.test_samples < 0:
            raise UserError("--train-samples / --test-samples must be >= 0")
        policy_class(self.policy)  # unknown policy -> UserError now, not after loading data
        from ..models import NETWORKS

        if self.network.lower().replace("-", "").replace("_", "") not in NETWORKS:
            raise UserError(f"unknown network {self.network!r}; choose one of: {', '.join(NETWORKS)}")
        StorageModel(self.storage_latency_ms, self.storage_bandwidth_mbps)


@dataclass
class TrainResult:
    rows: list[dict]
    summary: dict


def _subset(ds: ArrayImageDataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n <= 0 or n >= len(ds):
        return ds.data, ds.targets
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), n, replace=False))
    return ds.data[idx], ds.targets[idx]


def _evaluate(model, x: np.ndarray, y: np.ndarray, norm: Normalize, device, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = norm(torch.from_numpy(x[s: s + batch])).to(device)
            out = model(xb)
            correct += int((out.argmax(1).cpu() == torch.from_numpy(y[s: s + batch])).sum())
    model.train()
    return 100.0 * correct / max(1, len(x))


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
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.p = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[rate]:>8.0f} samples/s"),
                              TextColumn("hit {task.fields[hit]:.3f} sub {task.fields[sub]:.3f}"),
                              TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn())
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


def train(cfg: TrainConfig, dist_info: DistInfo | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    cfg.validate()
    info = dist_info or init_distributed(cfg.device)
    try:
        return _train(cfg, info, on_epoch)
    finally:
        if dist_info is None:
            shutdown(info)


def _train(cfg: TrainConfig, info: DistInfo, on_epoch) -> TrainResult:
    from ..models import build_model

    torch.manual_seed(cfg.seed)
    if info.device.type == "cpu":
        # Leave cores to the loader workers: torch's intra-op threads spin when
        # the CPU is oversubscribed (measured 40x slower kernels on 2 busy cores).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // max(1, info.world) - cfg.workers // 2))
    train_ds = open_dataset(cfg.train_paths, train=True, image_size=cfg.image_size)
    test_ds = open_dataset(cfg.train_paths, train=False, image_size=cfg.image_size)
    x_train, y_train = _subset(train_ds, cfg.train_samples, cfg.seed)
    x_test, y_test = _subset(test_ds, cfg.test_samples, cfg.seed + 1)
    n = len(x_train)
    num_classes = int(max(train_ds.num_classes, int(y_train.max()) + 1))
    in_channels = int(x_train.shape[1])
    mean, std = channel_stats(x_train)
    norm = Normalize(mean, std)
    transform = Compose([RandomFlipCrop(seed=cfg.seed + 7), norm]) if cfg.augment else norm

    storage = SlowStorage(x_train, y_train, StorageModel(cfg.storage_latency_ms, cfg.storage_bandwidth_mbps))
    policy_name = cfg.policy if cfg.cache_training_data else "none"
    capacity = int(round(cfg.working_set_size * n)) if policy_name != "none" else 0
    # The fingerprint ties cached values to these files, this subset and what is cached.
    paths = list(train_ds.source_paths)
    fingerprint = files_fingerprint(paths, {"n": n, "subset": cfg.train_samples, "seed": cfg.seed
                                            if cfg.train_samples else None, "cached": "decoded uint8"}) \
        if paths else train_ds.fingerprint()
    # Under DDP a per-rank memory cache gets its share of the working set.
    local_capacity = capacity
    if cfg.cache_backend == "memory" and info.world > 1:
        local_capacity = capacity // info.world
    backend = make_backend(cfg.cache_backend, capacity=local_capacity, sample_shape=storage.sample_shape,
                           dtype=storage.dtype, fingerprint=fingerprint, batch_size=cfg.batch_size,
                           workers=cfg.workers, prefetch_factor=cfg.prefetch_factor, host_ip=cfg.host_ip,
                           port_num=cfg.port_num, port_num2=cfg.port_num2, cache_nodes=cfg.cache_nodes,
                           redis_nodes=cfg.redis_nodes, lmdb_path=cfg.lmdb_path,
                           memcached_servers=cfg.memcached_servers, session=cfg.session,
                           server_port=cfg.server_port) if capacity > 0 else None
    policy_opts = dict(cfg.policy_options)
    policy_opts.setdefault("ratio_address", (cfg.host_ip, cfg.port_num3) if cfg.cache_backend == "redis" else None)
    policy_opts.setdefault("dist", info)
    policy = make_training_policy(policy_name, n, local_capacity, y_train, seed=cfg.seed, **policy_opts)
    dataset = CachedDataset(storage, backend, transform)
    loader = CachedLoader(dataset, policy, cfg.batch_size, workers=cfg.workers, rank=info.rank,
                          world=info.world, prefetch_factor=cfg.prefetch_factor)

    model = build_model(cfg.network, in_channels=in_channels, num_classes=num_classes).to(info.device)
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)

    rows: list[dict] = []
    start_epoch = 0
    ckpt_path = Path(cfg.checkpoint_dir) / "last.pt" if cfg.checkpoint_dir else None
    if cfg.resume:
        if ckpt_path is None or not ckpt_path.exists():
            raise UserError(f"--resume: no checkpoint at {ckpt_path or '(give --checkpoint-dir)'}")
        try:
            state = torch.load(ckpt_path, map_location=info.device, weights_only=False)
        except Exception as exc:
            raise UserError(f"cannot read checkpoint {ckpt_path}: {exc}") from None
        if state.get("fingerprint") != fingerprint or state.get("network") != cfg.network:
            raise UserError(f"checkpoint {ckpt_path} was made for other data or another network")
        (model.module if info.enabled else model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        policy.load_state_dict(state["policy"])
        rows = list(state["rows"])
        start_epoch = int(state["epoch"]) + 1

    log_file = open(cfg.log, "a" if cfg.resume else "w") if (cfg.log and info.is_main) else None
    progress = _Progress(cfg.progress and info.is_main)
    wants_emb = bool(getattr(policy, "wants_embeddings", False))
    # Per-sample loss weights, for a policy that asks (spider: importance-sampling
    # correction, down-weighted stand-ins); None from it means a plain mean.
    weigh = getattr(policy, "batch_loss_weights", None)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.perf_counter()
            steps = loader.start_epoch(epoch)
            task = progress.task(epoch, steps)
            loss_sum = correct = seen = 0.0
            for batch in loader.epoch(epoch):
                x = batch.x.to(info.device, non_blocking=True)
                y = batch.y.to(info.device, non_blocking=True)
                logits, emb = model(x, return_embedding=True)
                losses = F.cross_entropy(logits, y, reduction="none")
                opt.zero_grad(set_to_none=True)
                w = weigh(batch.requested, batch.substituted) if weigh is not None else None
                if w is None:
                    losses.mean().backward()
                else:
                    (losses * torch.as_tensor(w, dtype=losses.dtype, device=losses.device)).mean().backward()
                opt.step()
                l_np = losses.detach().cpu().numpy()
                ids = batch.ids
                e_np = emb.detach().cpu().numpy() if wants_emb else None
                if info.enabled:
                    ids = all_gather_array(info, ids)
                    l_np = all_gather_array(info, l_np)
                    e_np = all_gather_array(info, e_np) if wants_emb else None
                loader.update(ids, l_np, e_np)
                loss_sum += float(losses.detach().sum())
                correct += float((logits.detach().argmax(1) == y).sum())
                seen += len(y)
                st = loader.stats
                el = time.perf_counter() - t_epoch
                progress.advance(task, rate=seen / max(el, 1e-9), hit=st.hit_ratio, sub=st.substitution_ratio,
                                 loss=loss_sum / max(seen, 1))
            sched.step()
            epoch_seconds = time.perf_counter() - t_epoch
            st = loader.stats
            totals = all_reduce_sum(info, [loss_sum, correct, seen, st.requests, st.hits, st.substitutions,
                                           st.misses, st.lost, st.store_errors, st.storage_reads,
                                           st.data_wait_seconds])
            ls, cor, sn, req, hits, subs, miss, lost, errs, reads, wait = totals
            epoch_seconds = max(all_reduce_sum(info, [epoch_seconds])[0] / info.world, 0.0)
            acc = _evaluate(model.module if info.enabled else model, x_test, y_test, norm, info.device) \
                if len(x_test) else float("nan")
            row = {
                "epoch": epoch, "policy": policy_name, "working_set": cfg.working_set_size,
                "network": cfg.network, "seed": cfg.seed, "train_samples": n,
                "loss": ls / max(sn, 1), "train_accuracy": 100.0 * cor / max(sn, 1), "test_accuracy": acc,
                "requests": int(req), "hits": int(hits), "substitutions": int(subs), "misses": int(miss),
                "hit_ratio": hits / max(req, 1), "substitution_ratio": subs / max(req, 1),
                "lost_hits": int(lost), "store_errors": int(errs), "storage_reads": int(reads),
                "epoch_seconds": epoch_seconds, "data_wait_seconds": wait / info.world,
                "samples_per_second": sn / max(epoch_seconds, 1e-9), "ranks": info.world,
            }
            rows.append(row)
            if log_file:
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
            if on_epoch and info.is_main:
                on_epoch(row)
            if ckpt_path is not None and info.is_main:
                ckpt_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = ckpt_path.with_suffix(".tmp")
                torch.save({"epoch": epoch, "model": (model.module if info.enabled else model).state_dict(),
                            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "policy": policy.state_dict(), "rows": rows, "fingerprint": fingerprint,
                            "network": cfg.network, "config": {k: v for k, v in asdict(cfg).items()
                                                               if k != "policy_options"}}, tmp)
                tmp.replace(ckpt_path)
            barrier(info)
    finally:
        progress.stop()
        if log_file:
            log_file.close()
        loader.close()
    if cfg.plot and info.is_main and rows:
        plot_rows(rows, cfg.plot, f"{policy_name}, working set {cfg.working_set_size:g}, {cfg.network}")
    summary = summarize(rows, backend.describe() if backend is not None else "none", storage.model.describe())
    return TrainResult(rows, summary)


def summarize(rows: list[dict], backend: str = "", storage: str = "") -> dict:
    if not rows:
        return {}
    last = rows[-1]
    later = rows[1:] or rows
    return {
        "policy": last["policy"], "network": last["network"], "epochs": len(rows),
        "train_samples": last["train_samples"], "working_set": last["working_set"], "backend": backend,
        "storage": storage, "final_test_accuracy": last["test_accuracy"],
        "hit_ratio_after_first_epoch": sum(r["hit_ratio"] for r in later) / len(later),
        "substitution_ratio_after_first_epoch": sum(r["substitution_ratio"] for r in later) / len(later),
        "first_epoch_seconds": rows[0]["epoch_seconds"],
        "mean_epoch_seconds_after_first": sum(r["epoch_seconds"] for r in later) / len(later),
        "lost_hits": sum(r["lost_hits"] for r in rows), "store_errors": sum(r["store_errors"] for r in rows),
    }
