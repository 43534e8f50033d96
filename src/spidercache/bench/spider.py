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
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import UserError
from .runner import Rows, parse_options

ROW_KEYS = (
    "policy",
    "working_set",
    "seed",
    "epoch",
    "hit_ratio",
    "substitution_ratio",
    "epoch_seconds",
    "data_wait_seconds",
    "test_accuracy",
    "lost_hits",
)
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

    from ..data.train import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    out = []
    for ws in sets:
        for p in names:
            sink: list[dict] = []
            cfg = TrainConfig(
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
            t0 = time.perf_counter()
            result = train(cfg)
            per_epoch = {s["epoch"]: s for s in sink}
            for r in result.rows:
                row = {k: r[k] for k in ROW_KEYS}
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
            log(
                f"{p} ws={ws} seed={seed}: acc {result.rows[-1]['test_accuracy']:.2f} "
                f"hit {result.summary['hit_ratio_after_first_epoch']:.3f} "
                f"sub {result.summary['substitution_ratio_after_first_epoch']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
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
    from ..data.backends import make_backend
    from ..data.cached import CachedDataset
    from ..data.loader import CachedLoader
    from ..data.policies import make_training_policy
    from ..data.storage import SlowStorage, StorageModel

    storage = SlowStorage(x, y, StorageModel(latency_ms))
    n = len(x)
    cap = int(round(ws * n)) if policy_name != "none" else 0
    backend = (
        make_backend(
            "memory",
            capacity=cap,
            sample_shape=storage.sample_shape,
            dtype=storage.dtype,
            fingerprint="bench",
            batch_size=batch,
            workers=workers,
        )
        if cap
        else None
    )
    policy = make_training_policy(policy_name, n, cap, y, seed=seed, **(options or {}))
    loader = CachedLoader(CachedDataset(storage, backend), policy, batch, workers=workers)
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


# ----------------------------------------------------------------- report
def load(paths: list[str]) -> list[dict]:
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    runs: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        runs[(r["policy"], r["working_set"])][r["seed"]].append(r)
    out = []
    for (policy, ws), by_seed in sorted(runs.items()):
        per = defaultdict(list)
        for seed_rows in by_seed.values():
            seed_rows.sort(key=lambda r: r["epoch"])
            later = seed_rows[1:] or seed_rows
            per["hit"].append(statistics.mean(r["hit_ratio"] for r in later))
            per["sub"].append(statistics.mean(r["substitution_ratio"] for r in later))
            per["sec"].append(statistics.mean(r["epoch_seconds"] for r in later))
            per["acc"].append(seed_rows[-1]["test_accuracy"])
            per["epochs"].append(len(seed_rows))
            if "upkeep_seconds" in seed_rows[0]:
                per["upkeep"].append(statistics.mean(r["upkeep_seconds"] for r in later))
                per["upkeep_share"].append(
                    statistics.mean(r["upkeep_seconds"] / r["epoch_seconds"] for r in later)
                )
                per["ratio"].append(later[-1].get("split_ratio", float("nan")))
        acc = per["acc"]
        row = {
            "policy": policy,
            "working_set": ws,
            "seeds": len(acc),
            "epochs": max(per["epochs"]),
            "hit": statistics.mean(per["hit"]),
            "sub": statistics.mean(per["sub"]),
            "served": statistics.mean(per["hit"]) + statistics.mean(per["sub"]),
            "acc": statistics.mean(acc),
            "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "acc_half_range": (max(acc) - min(acc)) / 2,
            "accs": acc,
            "epoch_seconds": statistics.mean(per["sec"]),
        }
        if per["upkeep"]:
            row.update(
                upkeep_seconds=statistics.mean(per["upkeep"]),
                upkeep_share=statistics.mean(per["upkeep_share"]),
                final_ratio=statistics.mean(per["ratio"]),
            )
        out.append(row)
    lru = {r["working_set"]: r["served"] for r in out if r["policy"] == "lru"}
    for r in out:
        base = lru.get(r["working_set"])
        r["served_vs_lru"] = r["served"] / base if base else float("nan")
    return out


def report_table(summary: list[dict]) -> str:
    head = (
        "| policy | ws | seeds | hits | subst. | served | × LRU | final acc % (mean ± sd; per seed) "
        "| epoch s | upkeep s (share) | split |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in summary:
        up = f"{r['upkeep_seconds']:.2f} ({100 * r['upkeep_share']:.1f}%)" if "upkeep_seconds" in r else ""
        split = f"{r['final_ratio']:.2f}" if "final_ratio" in r else ""
        accs = ", ".join(f"{a:.2f}" for a in r["accs"])
        lines.append(
            f"| {r['policy']} | {r['working_set']:g} | {r['seeds']} | {r['hit']:.3f} | {r['sub']:.3f} | "
            f"{r['served']:.3f} | {r['served_vs_lru']:.1f} | {r['acc']:.2f} ± {r['acc_std']:.2f} ({accs}) | "
            f"{r['epoch_seconds']:.1f} | {up} | {split} |"
        )
    return "\n".join(lines)


def draw(summary: list[dict], rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.5))
    names = sorted({r["policy"] for r in summary})
    cmap = plt.get_cmap("tab20")
    color = {p: cmap(i % 20) for i, p in enumerate(names)}  # one colour per policy in all panels
    for policy in names:
        pts = sorted((r for r in summary if r["policy"] == policy), key=lambda r: r["working_set"])
        ws = [r["working_set"] for r in pts]
        a1.plot(ws, [r["served"] for r in pts], "o-", label=f"{policy}", color=color[policy])
        a1.plot(ws, [r["hit"] for r in pts], "x:", color=color[policy])
    a1.set_xlabel("working set"), a1.set_ylabel("share of requests (o-: hits+subst., x: true hits)")
    a1.legend(fontsize=7)
    # the working set with the most policies (the main comparison)
    counts: dict[float, int] = defaultdict(int)
    for r in summary:
        counts[r["working_set"]] += 1
    ws0 = max(counts, key=lambda w: (counts[w], -w))
    at = [r for r in summary if r["working_set"] == ws0]
    for r in at:
        a2.errorbar(r["served"], r["acc"], yerr=r["acc_std"], fmt="o", capsize=3, color=color[r["policy"]])
        a2.annotate(
            r["policy"], (r["served"], r["acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    (
        a2.set_xlabel(f"served from cache at working set {ws0:g}"),
        a2.set_ylabel("final test accuracy %, mean ± sd"),
    )
    # Per-epoch curves only for the policies run with the most seeds: a mean over
    # another set of seeds starts from another epoch-0 accuracy and would mislead.
    most = max(r["seeds"] for r in at)
    full = {r["policy"] for r in at if r["seeds"] == most}
    per_epoch = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["working_set"] == ws0 and r["policy"] in full:
            per_epoch[r["policy"]][r["epoch"]].append(r["test_accuracy"])
    for policy, by_ep in sorted(per_epoch.items()):
        eps = sorted(by_ep)
        a3.plot(eps, [statistics.mean(by_ep[e]) for e in eps], "o-", label=policy, color=color[policy])
    a3.set_xlabel("epoch"), a3.set_ylabel(f"test accuracy % (mean of {most} seeds), ws {ws0:g}")
    a3.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
