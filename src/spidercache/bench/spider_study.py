"""One stream of the SpiderCache study: train policies for one seed, write rows as JSON lines.

``python -m spidercache.bench.spider_study --seed 0 --policies spider,none --out rows.jsonl``
runs exactly what ``spidercache bench train`` runs (the same ``train()`` with
the same config fields), one (policy, working set) after another, and appends
one JSON row per epoch, in ``bench train``'s row format plus, for the spider
policies, the policy's own per-epoch figures (split ratio, index upkeep
seconds). Several streams (one per seed) can run side by side;
``spidercache.bench.spider_report`` merges them into tables and plots.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ..data.train import TrainConfig, train

ROW_KEYS = ("policy", "working_set", "seed", "epoch", "hit_ratio", "substitution_ratio", "epoch_seconds",
            "data_wait_seconds", "test_accuracy", "lost_hits")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policies", default="spider,none,shade,icache,lru")
    ap.add_argument("--working-set", default="0.1")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-samples", type=int, default=20000)
    ap.add_argument("--test-samples", type=int, default=0)
    ap.add_argument("--storage-latency-ms", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--network", default="small")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave as is)")
    ap.add_argument("--option", action="append", default=[], help="spider option key=value (int, float or word)")
    ap.add_argument("--label", default="", help="name written as the rows' policy (for option variants)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    extra = {}
    for kv in a.option:
        k, v = kv.split("=", 1)
        try:
            extra[k] = int(v)
        except ValueError:
            try:
                extra[k] = float(v)
            except ValueError:
                extra[k] = v  # a word option, e.g. stand_in=label
    for ws in [float(w) for w in a.working_set.split(",")]:
        for p in [p.strip() for p in a.policies.split(",") if p.strip()]:
            sink: list[dict] = []
            opts = dict(extra, stats_sink=sink) if p.startswith("spider") else {}
            cfg = TrainConfig(network=a.network, epochs=a.epochs, policy=p, working_set_size=ws,
                              storage_latency_ms=a.storage_latency_ms, train_samples=a.train_samples,
                              test_samples=a.test_samples, workers=a.workers, seed=a.seed, progress=False,
                              policy_options=opts)
            t0 = time.perf_counter()
            result = train(cfg)
            per_epoch = {s["epoch"]: s for s in sink}
            with open(a.out, "a") as f:
                for r in result.rows:
                    row = {k: r[k] for k in ROW_KEYS}
                    if a.label:
                        row["policy"] = a.label
                    row.update(network=a.network, train_samples=r["train_samples"],
                               storage_latency_ms=a.storage_latency_ms)
                    s = per_epoch.get(r["epoch"])
                    if s is not None:
                        row.update(split_ratio=s["ratio"], upkeep_seconds=s["upkeep_seconds"],
                                   clusters=s["clusters"])
                    f.write(json.dumps(row) + "\n")
            print(f"{p} ws={ws} seed={a.seed}: acc {result.rows[-1]['test_accuracy']:.2f} "
                  f"hit {result.summary['hit_ratio_after_first_epoch']:.3f} "
                  f"sub {result.summary['substitution_ratio_after_first_epoch']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
