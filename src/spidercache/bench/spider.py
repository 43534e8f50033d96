"""``bench spider``: SpiderCache's figure on the lazy path, as rows.

``study`` trains the small CNN once per (seed, policy) through the
``CachedLoader`` path (``data.train``) and returns one row per epoch;
``summary`` gives, per policy, the served share after the first epoch, its
ratio to LRU's, and the mean final test accuracy and its difference to
``none``'s (the issue's targets: served >= 4.5x LRU, accuracy within 0.5
points). ``spider_study`` / ``spider_report`` are the older script form of
the same runs (one process per seed, JSON lines).
"""

from __future__ import annotations

import os
import statistics


def study(
    seeds=(0, 1, 2),
    policies=("spider", "none", "lru"),
    working_set: float = 0.1,
    train_samples: int = 20000,
    epochs: int = 5,
    workers: int = 1,
) -> list[dict]:
    from ..data.train import TrainConfig, train

    rows = []
    for seed in seeds:
        for policy in policies:
            cfg = TrainConfig(
                policy=policy,
                working_set_size=working_set,
                train_samples=train_samples,
                epochs=epochs,
                storage_latency_ms=0.0,
                workers=workers,
                seed=seed,
                progress=False,
            )
            for r in train(cfg).rows:
                rows.append({"bench": "spider", **r, "load": os.getloadavg()[0]})
    return rows


def summary(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == policy]
        seeds = sorted({r["seed"] for r in mine})
        last = [max((r for r in mine if r["seed"] == s), key=lambda r: r["epoch"]) for s in seeds]
        later = [r for r in mine if r["epoch"] > 0] or mine
        out[policy] = {
            "seeds": len(seeds),
            "served": statistics.mean(r["hit_ratio"] + r["substitution_ratio"] for r in later),
            "test_accuracy": statistics.mean(r["test_accuracy"] for r in last),
        }
    for v in out.values():
        if "lru" in out and out["lru"]["served"] > 0:
            v["x_lru"] = v["served"] / out["lru"]["served"]
        if "none" in out:
            v["accuracy_vs_none"] = v["test_accuracy"] - out["none"]["test_accuracy"]
    return out
