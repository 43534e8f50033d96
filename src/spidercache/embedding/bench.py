"""`spidercache bench embed`: every embedding figure, measured side by side in one run.

1. optgen against the plain-Python Belady (RecMG's way) on the same trace prefix;
2. hit ratios per policy on three trace kinds;
3. the learned policy on held-out traces (other seeds, other drift);
4. the scoring path's speed (features + MLP, batched, CPU);
5. CachedEmbeddingBag (10 % of rows in the fast tier) against nn.EmbeddingBag.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..engine.ids import remap_trace
from . import policy as _policy  # noqa: F401  (registers learned, learned+prefetch)
from .bag import CachedEmbeddingBag
from .evaluate import evaluate
from .features import trace_features
from .models import ModelConfig, load_model, mlp_forward
from .optgen import belady_hits, optgen, python_belady
from .traces import GenConfig, generate
from .train import dense_tables, train

CLASSIC = ("lru", "lfu", "arc", "s3fifo")


def _gen(requests: int, **kw) -> np.ndarray:
    cfg = GenConfig(**kw)
    per_batch = cfg.tables * cfg.batch_size * cfg.pooling
    cfg.batches = max(4, int(round(requests / per_batch)))
    return generate(cfg)


def bench_optgen(keys: np.ndarray, py_requests: int = 20_000) -> dict:
    optgen(keys[:1000], 0.1)  # compile
    t0 = time.perf_counter()
    labels = optgen(keys, 0.1)
    fast = keys.size / (time.perf_counter() - t0)
    prefix = keys[:py_requests]
    ids, n = remap_trace(prefix)
    cap = max(1, int(round(0.1 * n)))
    t0 = time.perf_counter()
    ref = python_belady(ids, cap)
    slow = prefix.size / (time.perf_counter() - t0)
    same = bool(np.array_equal(np.array(ref), belady_hits(ids, cap)))
    return {"requests": int(keys.size), "optgen_rps": fast, "python_requests": int(prefix.size),
            "python_rps": slow, "ratio": fast / slow, "prefix_equal": same, "opt_hit_ratio": labels.hit_ratio}


def bench_scoring(keys: np.ndarray, model) -> dict:
    ids, n = remap_trace(keys)
    tables = dense_tables(keys)
    cap = max(1, n // 10)
    w = model.numpy_weights()
    mlp_forward(np.zeros((8, 9), np.float32), w, True)
    t0 = time.perf_counter()
    feats = trace_features(ids, tables, cap)
    t1 = time.perf_counter()
    for s in range(0, ids.size, 65536):
        mlp_forward(feats[s : s + 65536], w, True)
    t2 = time.perf_counter()
    return {"requests": int(ids.size), "features_rps": ids.size / (t1 - t0), "mlp_rps": ids.size / (t2 - t1),
            "scoring_rps": ids.size / (t2 - t0)}


def bench_bag(rows: int = 1_000_000, dim: int = 64, batch: int = 2048, pooling: int = 20, steps: int = 30,
              policy: str = "lru", slow: str | None = None) -> dict:
    rng = np.random.default_rng(0)
    ranks = np.arange(1, rows + 1, dtype=np.float64) ** -1.05
    cdf = np.cumsum(ranks) / ranks.sum()
    perm = rng.permutation(rows)
    batches = [torch.from_numpy(perm[np.searchsorted(cdf, rng.random(batch * pooling)).clip(max=rows - 1)])
               for _ in range(steps + 3)]
    offsets = torch.arange(0, batch * pooling, pooling)
    weight = torch.randn(rows, dim)

    def run(module, opt=None) -> float:
        for i, idx in enumerate(batches):
            if i == 3:
                t0 = time.perf_counter()
            out = module(idx, offsets)
            out.sum().backward()
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
        return steps * batch * pooling / (time.perf_counter() - t0)

    plain = torch.nn.EmbeddingBag(rows, dim, mode="sum", sparse=True, _weight=weight.clone())
    plain_rps = run(plain, torch.optim.SGD(plain.parameters(), lr=0.01))
    cached = CachedEmbeddingBag(rows, dim, mode="sum", cache_rows=rows // 10, policy=policy, weight=weight,
                                lr=0.01, slow=slow)
    cached_rps = run(cached)
    st = cached.policy.stats()
    return {"rows": rows, "dim": dim, "batch": batch, "pooling": pooling, "policy": policy,
            "slow_tier": "memmap" if slow else "memory", "plain_lookups_per_s": plain_rps,
            "cached_lookups_per_s": cached_rps, "ratio": cached_rps / plain_rps,
            "fast_tier_mb": cached.fast.numel() * 4 / 2**20, "table_mb": rows * dim * 4 / 2**20,
            "row_hit_ratio": st.hit_ratio}


def run_benchmark(requests: int = 2_000_000, steps: int = 1500, log=print) -> dict:
    data: dict = {}
    log("trace kinds ...")
    kinds = {
        "default (drift, bursts, one-offs)": dict(seed=0),
        "FBGEMM i.i.d. Zipf": dict(seed=0, drift=0.0, burst_rate=0.0, one_off=0.0),
        "strong drift + bursts": dict(seed=0, drift=0.005, burst_rate=0.3, one_off=0.1),
    }
    traces = {name: _gen(requests, **kw) for name, kw in kinds.items()}
    train_keys = traces["default (drift, bursts, one-offs)"]
    log("optgen vs plain-Python Belady ...")
    data["optgen"] = bench_optgen(train_keys)
    log(f"  {data['optgen']}")
    with tempfile.TemporaryDirectory() as tmp:
        log(f"training the cache model ({steps} steps) ...")
        t0 = time.perf_counter()
        train(train_keys, Path(tmp) / "cache", ModelConfig(model="cache", steps=steps, checkpoint_every=steps))
        train(train_keys, Path(tmp) / "cache" / "prefetch",
              ModelConfig(model="prefetch", steps=max(100, steps // 5), checkpoint_every=steps))
        data["train_seconds"] = time.perf_counter() - t0
        model_dir = Path(tmp) / "cache"
        model = load_model(model_dir)
        pols = [*CLASSIC, "opt", "learned", "learned+prefetch"]
        data["kinds"] = {}
        for name, keys in traces.items():
            log(f"policies on {name} ...")
            data["kinds"][name] = evaluate(keys, pols, [0.05, 0.1, 0.2], model_dir)
        data["held_out"] = []
        for seed, drift in ((1, 0.002), (2, 0.0005), (3, 0.001)):
            log(f"held-out trace seed {seed} drift {drift} ...")
            keys = _gen(requests, seed=seed, drift=drift)
            rows = evaluate(keys, [*CLASSIC, "opt", "learned", "learned+prefetch"], [0.1], model_dir)
            by = {r["policy"]: r for r in rows}
            best = max(CLASSIC, key=lambda p: by[p]["hit_ratio"])
            hb, ho, hl = by[best]["hit_ratio"], by["opt"]["hit_ratio"], by["learned"]["hit_ratio"]
            data["held_out"].append({"seed": seed, "drift": drift, "best_classic": best, "h_best": hb,
                                     "h_opt": ho, "h_learned": hl,
                                     "h_learned_prefetch": by["learned+prefetch"]["hit_ratio"],
                                     "prefetches": by["learned+prefetch"].get("prefetches", 0),
                                     "prefetch_hits": by["learned+prefetch"].get("prefetch_hits", 0),
                                     "closed_vs_best": (hl - hb) / (ho - hb) if ho > hb else 0.0})
            log(f"  {data['held_out'][-1]}")
        log("scoring speed ...")
        data["scoring"] = bench_scoring(train_keys, model)
        data["policy_rps"] = {r["policy"]: r["requests"] / r["seconds"]
                              for r in data["kinds"]["default (drift, bursts, one-offs)"] if r["cache_size"] == 0.1}
    log("CachedEmbeddingBag vs nn.EmbeddingBag ...")
    data["bag"] = bench_bag()
    log(f"  {data['bag']}")
    with tempfile.TemporaryDirectory() as tmp:
        data["bag_memmap"] = bench_bag(slow=str(Path(tmp) / "table.f32"))
    log(f"  {data['bag_memmap']}")
    return {"data": data, "markdown": markdown(data)}


def markdown(d: dict) -> str:
    o = d["optgen"]
    lines = ["## Embedding caching (`spidercache bench embed`)", "",
             "All numbers from one run on this machine (2 shared CPU cores); speeds are ratios against a",
             "reference measured in the same process.", "",
             "### optgen against a plain-Python Belady", "",
             f"- optgen (numba, heap by next use, remapping included): **{o['optgen_rps']:,.0f} requests/s** "
             f"on {o['requests']:,} requests (OPT hit ratio {o['opt_hit_ratio']:.4f} at 10 %).",
             f"- plain-Python Belady (scan for the farthest next use on each eviction, as RecMG): "
             f"{o['python_rps']:,.0f} requests/s on the first {o['python_requests']:,} requests.",
             f"- ratio: **{o['ratio']:,.0f}x**; hit masks equal on the prefix: {o['prefix_equal']}.", "",
             "### Hit ratio per policy and trace kind", ""]
    for name, rows in d["kinds"].items():
        lines += [f"**{name}**", "", "| policy | 5 % | 10 % | 20 % | gap closed at 10 % |", "|---|---|---|---|---|"]
        by: dict = {}
        for r in rows:
            by.setdefault(r["policy"], {})[r["cache_size"]] = r
        for p, rs in by.items():
            lines.append(f"| {p} | " + " | ".join(f"{rs[s]['hit_ratio']:.4f}" for s in (0.05, 0.1, 0.2))
                         + f" | {rs[0.1]['gap_closed']:.3f} |")
        lines.append("")
    lines += ["### Learned policy on held-out traces (10 % cache, model trained on seed 0, drift 0.001)", "",
              "| seed | drift | best classic | h_best | learned | learned+prefetch (prefetches / used) | OPT | closed vs best |",
              "|---|---|---|---|---|---|---|---|"]
    for r in d["held_out"]:
        lines.append(f"| {r['seed']} | {r['drift']} | {r['best_classic']} | {r['h_best']:.4f} | {r['h_learned']:.4f} "
                     f"| {r['h_learned_prefetch']:.4f} ({r['prefetches']:,} / {r['prefetch_hits']:,}) | {r['h_opt']:.4f} | {r['closed_vs_best']:.3f} |")
    s = d["scoring"]
    lines += ["", "### Scoring path", "",
              f"- features (numba): {s['features_rps']:,.0f} requests/s; MLP (numba): {s['mlp_rps']:,.0f} requests/s; "
              f"together **{s['scoring_rps']:,.0f} requests/s**.",
              "- whole policies at 10 % (requests/s): " + ", ".join(f"{p} {v:,.0f}" for p, v in d["policy_rps"].items()),
              f"- training time (cache + prefetch model): {d['train_seconds']:.0f} s", ""]
    lines += ["### CachedEmbeddingBag (10 % of rows in the fast tier) vs nn.EmbeddingBag(sparse=True) + SGD", "",
              "| slow tier | table MB | fast tier MB | row hit ratio | plain lookups/s | cached lookups/s | ratio |",
              "|---|---|---|---|---|---|---|"]
    for b in (d["bag"], d["bag_memmap"]):
        lines.append(f"| {b['slow_tier']} | {b['table_mb']:.0f} | {b['fast_tier_mb']:.0f} | {b['row_hit_ratio']:.3f} | "
                     f"{b['plain_lookups_per_s']:,.0f} | {b['cached_lookups_per_s']:,.0f} | **{b['ratio']:.2f}** |")
    b = d["bag"]
    lines += ["", f"({b['rows']:,} rows x {b['dim']}, batch {b['batch']} bags x pooling {b['pooling']}, "
              f"Zipf 1.05 rows, policy {b['policy']}; forward + backward + update per step.)", ""]
    return "\n".join(lines)
