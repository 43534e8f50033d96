"""The data path alone: epoch time of the cached loader with slow storage, ``none`` vs a policy.

Training on these shared 2-core machines is compute-bound (the model step
dwarfs 5 ms reads), so the end-to-end epoch time cannot show what the cache
saves on storage. This bench runs the real ``CachedLoader`` (DataLoader
workers, shared-memory slots, ``SlowStorage`` sleeping per read) with the
policy's real decisions and no model: after each batch the policy is fed
per-sample losses and embeddings from a fixed stand-in model (embedding =
the image downsampled to 7x7, loss = distance to its class mean), so
importance and homophily have something real-looking to work on.

``python -m spidercache.bench.spider_loader --policies none,lru,spider --train-samples 5000 --epochs 4``
prints per policy the epoch seconds after the first and the ratio to ``none``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data.backends import make_backend
from ..data.cached import CachedDataset
from ..data.datasets import open_dataset
from ..data.loader import CachedLoader
from ..data.policies import make_training_policy
from ..data.storage import SlowStorage, StorageModel


def stand_in_features(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(x).float() / 255.0
    emb = F.adaptive_avg_pool2d(t, 7).flatten(1).numpy()
    means = np.stack([emb[y == c].mean(0) if (y == c).any() else np.zeros(emb.shape[1]) for c in range(y.max() + 1)])
    loss = np.linalg.norm(emb - means[y], axis=1)
    return emb.astype(np.float32), loss


def run(policy_name: str, x, y, emb, loss, epochs: int, latency_ms: float, workers: int, ws: float,
        batch: int, seed: int, options: dict | None = None) -> list[dict]:
    storage = SlowStorage(x, y, StorageModel(latency_ms))
    n = len(x)
    cap = int(round(ws * n)) if policy_name != "none" else 0
    backend = make_backend("memory", capacity=cap, sample_shape=storage.sample_shape, dtype=storage.dtype,
                           fingerprint="bench", batch_size=batch, workers=workers) if cap else None
    policy = make_training_policy(policy_name, n, cap, y, seed=seed, **(options or {}))
    loader = CachedLoader(CachedDataset(storage, backend), policy, batch, workers=workers)
    rows = []
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            for b in loader.epoch(epoch):
                ids = b.ids
                loader.update(ids, loss[ids], emb[ids])
            st = loader.stats
            rows.append({"policy": policy_name, "epoch": epoch, "epoch_seconds": time.perf_counter() - t0,
                         "hit_ratio": st.hit_ratio, "substitution_ratio": st.substitution_ratio,
                         "storage_reads": st.storage_reads})
    finally:
        loader.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", default="none,lru,shade,icache,spider")
    ap.add_argument("--train-samples", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--storage-latency-ms", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--working-set", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--option", action="append", default=[], help="key=value for the spider policies")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    ds = open_dataset([], train=True)
    idx = np.sort(np.random.default_rng(a.seed).choice(len(ds), a.train_samples, replace=False))
    x, y = ds.data[idx], ds.targets[idx]
    emb, loss = stand_in_features(x, y)
    opts = {}
    for kv in a.option:
        k, v = kv.split("=", 1)
        opts[k] = float(v) if "." in v else int(v)
    all_rows = []
    for p in [p.strip() for p in a.policies.split(",") if p.strip()]:
        all_rows += run(p, x, y, emb, loss, a.epochs, a.storage_latency_ms, a.workers, a.working_set,
                        a.batch_size, a.seed, opts if p.startswith("spider") else None)
    warm = {p: statistics.mean(r["epoch_seconds"] for r in all_rows if r["policy"] == p and r["epoch"] > 0)
            for p in dict.fromkeys(r["policy"] for r in all_rows)}
    served = {p: statistics.mean(r["hit_ratio"] + r["substitution_ratio"] for r in all_rows
                                 if r["policy"] == p and r["epoch"] > 0) for p in warm}
    base = warm.get("none")
    for p, s in warm.items():
        ratio = f"{base / s:.2f}x shorter than none" if base else ""
        print(f"{p:12s} warm epoch {s:6.2f} s  served {served[p]:.3f}  {ratio}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": all_rows, "warm_epoch_seconds": warm, "served": served}, f, indent=1)


if __name__ == "__main__":
    main()
