"""`spidercache bench spider`: the SpiderCache study, its report, and the data path alone.

Three modes, one function (``run``):

* ``study`` (default): one stream of the study for one seed: train each policy
  at each working set exactly as ``spidercache bench train`` does (the same
  ``train()``, the same config fields) and append one JSON row per epoch to
  ``append`` (``bench train``'s row format plus, for the spider policies, the
  policy's own per-epoch figures: split ratio, index upkeep seconds). Several
  streams (one per seed) can run side by side.
* ``report``: merge the rows of ``merge`` files (JSON lines) into the summary of
  docs/bench/spider.md, per (policy, working set): seeds, hits, substitutions,
  served (their sum) averaged over the epochs after the first, served relative
  to LRU, the final test accuracy (mean, standard deviation, half-range over
  seeds), epoch seconds after the first, and for the spider policies the index
  upkeep seconds per epoch and its share of the epoch time; ``plot`` draws it.
* ``loader``: the data path alone. Training on these shared 2-core machines is
  compute-bound, so the end-to-end epoch time cannot show what the cache saves
  on storage: this runs the real ``CachedLoader`` (DataLoader workers,
  shared-memory slots, ``SlowStorage`` sleeping per read) with the policy's real
  decisions and no model; after each batch the policy is fed per-sample losses
  and embeddings from a fixed stand-in model (embedding = the image
  downsampled to 7x7, loss = distance to its class mean). Rows: per policy and
  epoch; the log says each policy's warm epoch time relative to ``none``.

``spidercache bench spider --seed 0 --policies spider,none --append rows.jsonl``;
``spidercache bench spider --mode report --merge rows.jsonl --plot spider.png``;
``spidercache bench spider --mode loader --policies none,lru,spider --train-samples 5000 --epochs 4``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import UserError
from .runner import Rows, parse_options
from .spider_report import draw, load, report_table, summarize
from .train import EPOCH_KEYS, train_logged

HELP = {
    "mode": "study (train, append rows), report (merge row files) or loader (the data path alone).",
    "policies": "Comma-separated training policies.",
    "working_set": "Comma-separated working sets (fraction of the data cached); loader mode takes the first.",
    "option": "key=value policy option for the spider policies (repeatable).",
    "label": "Name written as the rows' policy (for option variants).",
    "threads": "torch intra-op threads (0: leave as is).",
    "append": "study: append the per-epoch rows (JSON lines) here.",
    "merge": "report: row files (JSON lines) to merge (repeatable).",
    "plot": "report: draw the summary as a PNG here.",
}


def run(
    mode: str = "study",
    seed: int = 0,
    policies: str = "spider,none,shade,icache,lru",
    working_set: str = "0.1",
    epochs: int = 5,
    train_samples: int = 20000,
    test_samples: int = 0,
    storage_latency_ms: float = 5.0,
    workers: int = 2,
    network: str = "small",
    batch_size: int = 256,
    threads: int = 0,
    option: Optional[list[str]] = None,
    label: str = "",
    append: Optional[Path] = None,
    merge: Optional[list[Path]] = None,
    plot: Optional[Path] = None,
    log: Callable[[str], None] = print,
) -> Rows:
    """SpiderCache study stream, report over row files, or the data path alone (see the module)."""
    names = [p.strip() for p in policies.split(",") if p.strip()]
    sets = [float(w) for w in working_set.split(",") if w.strip()]
    opts = parse_options(option or [], "--option")
    if mode == "report":
        if not merge:
            raise UserError("--mode report needs --merge FILE (rows written by the study)")
        rows = load([str(p) for p in merge])
        summary = summarize(rows)
        if plot is not None:
            draw(summary, rows, str(plot))
        return Rows(summary, {"mode": mode, "files": [str(p) for p in merge]})
    if mode == "loader":
        rows = loader_rows(
            names, train_samples, epochs, storage_latency_ms, workers, sets[0], batch_size, seed, opts, log
        )
        return Rows(rows, {"mode": mode})
    if mode != "study":
        raise UserError(f"--mode must be study, report or loader, got {mode!r}")
    rows = study_rows(
        names,
        sets,
        seed,
        epochs,
        train_samples,
        test_samples,
        storage_latency_ms,
        workers,
        network,
        threads,
        opts,
        label,
        log,
    )
    if append is not None:
        with open(append, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return Rows(summarize(rows), {"mode": mode, "epochs": rows})


def table(rows: Rows):
    return report_table(rows) if rows and "served_vs_lru" in rows[0] else _loader_table(rows)


def _loader_table(rows: Rows):
    from .runner import rows_table

    return rows_table(rows, "bench spider --mode loader: per policy and epoch")


# ------------------------------------------------------------------ study
def study_rows(
    names,
    sets,
    seed,
    epochs,
    train_samples,
    test_samples,
    storage_latency_ms,
    workers,
    network,
    threads,
    opts,
    label,
    log,
) -> list[dict]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    out = []
    for ws in sets:
        for p in names:
            sink: list[dict] = []
            cfg = dict(
                network=network,
                epochs=epochs,
                policy=p,
                working_set_size=ws,
                storage_latency_ms=storage_latency_ms,
                train_samples=train_samples,
                test_samples=test_samples,
                workers=workers,
                seed=seed,
                progress=False,
                policy_options=dict(opts, stats_sink=sink) if p.startswith("spider") else {},
            )
            result = train_logged(cfg, log)
            per_epoch = {s["epoch"]: s for s in sink}
            for r in result.rows:
                row = {k: r[k] for k in EPOCH_KEYS}
                if label:
                    row["policy"] = label
                row.update(
                    network=network, train_samples=r["train_samples"], storage_latency_ms=storage_latency_ms
                )
                s = per_epoch.get(r["epoch"])
                if s is not None:
                    row.update(
                        split_ratio=s["ratio"], upkeep_seconds=s["upkeep_seconds"], clusters=s["clusters"]
                    )
                out.append(row)
    return out


# ----------------------------------------------------------------- loader
def stand_in_features(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x).float() / 255.0
    emb = F.adaptive_avg_pool2d(t, 7).flatten(1).numpy()
    means = np.stack(
        [emb[y == c].mean(0) if (y == c).any() else np.zeros(emb.shape[1]) for c in range(y.max() + 1)]
    )
    loss = np.linalg.norm(emb - means[y], axis=1)
    return emb.astype(np.float32), loss


def loader_rows(names, train_samples, epochs, latency_ms, workers, ws, batch, seed, opts, log) -> list[dict]:
    from ..data.datasets import open_dataset

    ds = open_dataset([], train=True)
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), train_samples, replace=False))
    x, y = ds.data[idx], ds.targets[idx]
    emb, loss = stand_in_features(x, y)
    rows: list[dict] = []
    for p in names:
        rows += _loader_epochs(
            p,
            x,
            y,
            emb,
            loss,
            epochs,
            latency_ms,
            workers,
            ws,
            batch,
            seed,
            opts if p.startswith("spider") else None,
        )
    warm = {
        p: statistics.mean(r["epoch_seconds"] for r in rows if r["policy"] == p and r["epoch"] > 0)
        for p in dict.fromkeys(r["policy"] for r in rows)
    }
    for p, s in warm.items():
        base = warm.get("none")
        log(f"{p:12s} warm epoch {s:6.2f} s" + (f"  {base / s:.2f}x shorter than none" if base else ""))
    return rows


def _loader_epochs(policy_name, x, y, emb, loss, epochs, latency_ms, workers, ws, batch, seed, options):
    from .loader import cached_loader

    loader = cached_loader(x, y, None, policy_name, latency_ms, workers, batch, ws, seed, options)
    rows = []
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            for b in loader.epoch(epoch):
                loader.update(b.ids, loss[b.ids], emb[b.ids])
            st = loader.stats
            rows.append(
                {
                    "policy": policy_name,
                    "epoch": epoch,
                    "epoch_seconds": time.perf_counter() - t0,
                    "hit_ratio": st.hit_ratio,
                    "substitution_ratio": st.substitution_ratio,
                    "storage_reads": st.storage_reads,
                }
            )
    finally:
        loader.close()
    return rows
