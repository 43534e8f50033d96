"""`spidercache bench loader`: the training loader's own figures.

Two rows: ``warm`` (a warm in-process cache holding all of Fashion-MNIST, one
process, against a plain in-RAM ``DataLoader`` over the same tensors) and
``slow`` (storage with a per-read latency, working set 1.0, the cached loader
against ``none`` with the same workers; epochs after the first).
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Callable

from .runner import Rows, timings

HELP = {
    "slow_samples": "Subset for the slow-storage comparison.",
    "workers": "Workers for the slow-storage comparison (both runs).",
    "epochs": "Epochs of the slow-storage comparison.",
    "repeat": "Warm-epoch measurements; the fastest is kept.",
}


TITLE = "bench loader: cached loader vs its reference (epoch seconds; slow: epochs after the first)"
COLUMNS = [
    ("measure", lambda r: r["measure"]),
    ("samples", lambda r: f"{r['samples']:,}"),
    ("cached s", lambda r: _seconds(r["cached_epoch_seconds"])),
    ("reference s", lambda r: _seconds(r.get("plain_epoch_seconds", r.get("none_epoch_seconds")))),
    (
        "figure",
        lambda r: (
            f"{r['ratio']:.2f}x the plain loader's time"
            if r["measure"] == "warm"
            else f"{r['speedup_after_first']:.1f}x shorter than none"
        ),
    ),
]


def _seconds(v) -> str:
    return ", ".join(f"{t:.2f}" for t in v) if isinstance(v, list) else f"{v:.3f}"


def _plain_epoch(x, y, batch_size: int, seed: int) -> None:
    import torch

    ds = torch.utils.data.TensorDataset(x, y)
    g = torch.Generator().manual_seed(seed)
    deque(torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g), maxlen=0)


def run(
    batch_size: int = 256,
    storage_latency_ms: float = 5.0,
    slow_samples: int = 6000,
    workers: int = 2,
    epochs: int = 3,
    repeat: int = 3,
    log: Callable[[str], None] = print,
) -> Rows:
    """Warm cache vs a plain in-RAM DataLoader; slow storage, cached vs none."""
    from ..data.datasets import FashionMNIST
    from ..data.transforms import Normalize, channel_stats

    ds = FashionMNIST()
    x, y = ds.data, ds.targets
    norm = Normalize(*channel_stats(x))
    warm = _warm(x, y, norm, batch_size, repeat, log)
    slow = _slow(
        x[:slow_samples], y[:slow_samples], norm, batch_size, storage_latency_ms, workers, epochs, log
    )
    return Rows([warm, slow], {"batch_size": batch_size})


def cached_loader(
    xs,
    ys,
    norm,
    policy: str,
    latency_ms: float,
    workers: int,
    batch_size: int,
    working_set: float = 1.0,
    seed: int = 0,
    options: dict | None = None,
):
    """A ``CachedLoader`` over ``SlowStorage`` with an in-process cache of ``working_set`` of the data."""
    from ..data.backends import make_backend
    from ..data.cached import CachedDataset
    from ..data.loader import CachedLoader
    from ..data.policies import make_training_policy
    from ..data.storage import SlowStorage, StorageModel

    st = SlowStorage(xs, ys, StorageModel(latency_ms))
    cap = int(round(working_set * len(xs))) if policy != "none" else 0
    be = None
    if cap:
        be = make_backend(
            "memory",
            capacity=cap,
            sample_shape=st.sample_shape,
            dtype=st.dtype,
            fingerprint="bench",
            batch_size=batch_size,
            workers=workers,
        )
    pol = make_training_policy(policy, len(xs), cap, ys, seed=seed, **(options or {}))
    return CachedLoader(CachedDataset(st, be, norm), pol, batch_size, workers=workers)


def _warm(x, y, norm, batch_size: int, repeat: int, log) -> dict:
    """A warm in-process cache, one process, everything cached, against a plain DataLoader."""
    import torch

    loader = cached_loader(x, y, norm, "minio", 0.0, 0, batch_size)
    deque(loader.epoch(0), maxlen=0)  # fill
    epoch = iter(range(1, repeat + 1))

    def cached_epoch() -> None:
        deque(loader.epoch(next(epoch)), maxlen=0)
        assert loader.stats.hit_ratio == 1.0

    c = min(timings(cached_epoch, repeat))
    n = len(x)
    xt, yt = norm(torch.from_numpy(x)), torch.from_numpy(y)
    seeds = iter(range(repeat))
    p = min(timings(lambda: _plain_epoch(xt, yt, batch_size, next(seeds)), repeat))
    log(
        f"warm in-process cache, {n} Fashion-MNIST samples, batch {batch_size}, 1 process: "
        f"{n / c:,.0f} samples/s (epoch {c:.3f} s); plain in-RAM DataLoader {n / p:,.0f} samples/s "
        f"(epoch {p:.3f} s); cached / plain = {c / p:.2f} (target <= 1.2, >= 20,000 samples/s)"
    )
    return {
        "measure": "warm",
        "samples": n,
        "cached_epoch_seconds": c,
        "plain_epoch_seconds": p,
        "cached_samples_per_second": n / c,
        "plain_samples_per_second": n / p,
        "ratio": c / p,
    }


def _slow(xs, ys, norm, batch_size, latency_ms, workers, epochs, log) -> dict:
    """Slow storage, working set 1.0: cached (minio) vs none, same workers."""
    res = {}
    for policy in ("none", "minio"):
        ld = cached_loader(xs, ys, norm, policy, latency_ms, workers, batch_size)
        epochs_left = iter(range(epochs))
        res[policy] = timings(lambda ld=ld, e=epochs_left: deque(ld.epoch(next(e)), maxlen=0), epochs)
        ld.close()
    later_none = statistics.mean(res["none"][1:] or res["none"])
    later_cached = statistics.mean(res["minio"][1:] or res["minio"])
    log(
        f"{latency_ms:g} ms storage, {len(xs)} samples, {workers} workers, working set 1.0, "
        f"loader only: none {[f'{t:.2f}' for t in res['none']]} s per epoch, cached "
        f"{[f'{t:.2f}' for t in res['minio']]} s; epochs after the first {later_none / later_cached:.1f}x "
        f"shorter (target >= 5x)"
    )
    return {
        "measure": "slow",
        "samples": len(xs),
        "latency_ms": latency_ms,
        "workers": workers,
        "none_epoch_seconds": res["none"],
        "cached_epoch_seconds": res["minio"],
        "speedup_after_first": later_none / later_cached,
    }
