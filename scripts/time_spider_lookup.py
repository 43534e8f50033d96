"""Time ``spider``'s lookup alone: CPU seconds of the deciding thread, and a digest of every decision.

    PYTHONPATH=src python scripts/time_spider_lookup.py [POLICY] [--ids 20000] [--working-set 0.1]

A seeded run like a training job's: labels, per-epoch order, lookups of ``--batch`` ids,
per-sample feedback (losses and 16-d embeddings). Two trees (say, before and after a change)
decide alike when they print the same digest; their timings compare run side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

from spidercache.engine.policies import make_policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("policy", nargs="?", default="train-spider")
    ap.add_argument("--ids", type=int, default=20000)
    ap.add_argument("--working-set", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    labels = rng.integers(0, 10, a.ids)
    p = make_policy(a.policy, int(a.working_set * a.ids), a.ids, labels=labels, seed=a.seed)
    cpu, batches, digest = 0.0, 0, hashlib.sha1()
    for epoch in range(a.epochs):
        p.begin_epoch(epoch)
        order = p.order(epoch)
        for s in range(0, order.size, a.batch):
            ids = order[s : s + a.batch]
            t0 = time.thread_time()
            lk = p.lookup(ids)
            cpu += time.thread_time() - t0
            batches += 1
            for arr in (lk.served, lk.hit, lk.substituted, lk.admit, lk.evicted):
                digest.update(np.ascontiguousarray(arr).tobytes())
            emb = rng.standard_normal((ids.size, 16)).astype(np.float32) if p.wants_embeddings else None
            p.update(lk.served, rng.random(ids.size), emb)
    print(
        f"{a.policy}: lookup {cpu:.3f} CPU s over {batches} batches of {a.batch} "
        f"({1e6 * cpu / batches:.0f} us/batch), decisions digest {digest.hexdigest()[:12]}"
    )


if __name__ == "__main__":
    main()
