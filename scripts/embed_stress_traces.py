"""Write ten stress traces for the embedding policies' safety bound (docs/bench/embedding.md).

Each is a shape where one heuristic wins by a lot and a follower of experts can lag:
alternating phases (a Zipf hot set, then a loop larger than the cache; five lengths), a loop
just over the cache with a Zipf background, uniform ids, a trace too short to learn on,
disjoint hot sets replacing each other, and two tenants of different skew. Written after
`learned`'s defaults were fixed; nothing was tuned on them.

    python scripts/embed_stress_traces.py /tmp/stress
    spidercache embed eval /tmp/stress/phases.npy --policies lru,lfu,arc,s3fifo,opt,learned
"""

import sys
from pathlib import Path

import numpy as np

rng = np.random.default_rng(7)


def zipf(n: int, alpha: float, rows: int) -> np.ndarray:
    p = np.arange(1, rows + 1) ** -alpha
    return rng.permutation(rows)[np.searchsorted(np.cumsum(p) / p.sum(), rng.random(n)).clip(max=rows - 1)]


def phases(zipf_len: int, loop_len: int, loop_reps: int) -> np.ndarray:
    """10 rounds of: a Zipf hot set, then a loop of ``loop_len`` cold rows read ``loop_reps`` times."""
    loop = 200_000 + np.tile(np.arange(loop_len), loop_reps)
    return np.concatenate([z for _ in range(10) for z in (zipf(zipf_len, 0.9, 100_000), loop)])


def traces() -> dict[str, np.ndarray]:
    out = {
        "phases": phases(150_000, 20_000, 8),
        "phases-20k": phases(20_000, 20_000, 1),
        "phases-50k": phases(50_000, 20_000, 3),
        "phases-150k-15k": phases(150_000, 15_000, 8),
        "phases-300k": phases(300_000, 25_000, 4),
    }
    loop = np.tile(np.arange(11_000), 60)
    out["loop-zipf"] = np.where(rng.random(loop.size) < 0.5, loop, zipf(loop.size, 1.0, 89_000) + 11_000)
    out["uniform"] = rng.integers(0, 100_000, 1_000_000)
    out["short"] = zipf(30_000, 0.8, 20_000)
    out["shift"] = np.concatenate([zipf(100_000, 1.0, 30_000) + k * 30_000 for k in range(15)])
    small, large = zipf(1_000_000, 1.2, 20_000), zipf(1_000_000, 0.6, 300_000) + 1_000_000
    out["tenants"] = np.where(rng.random(1_000_000) < 0.5, small, large)
    return out


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "stress-traces")
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in traces().items():
        np.save(folder / f"{name}.npy", ids.astype(np.int64))
        print(f"{folder / name}.npy: {ids.size:,} lookups, {np.unique(ids).size:,} distinct")
