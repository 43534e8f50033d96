"""Run policies over an embedding trace and report hit ratio and gap closed.

``gap_closed = (h - h_LRU) / (h_OPT - h_LRU)`` per policy and cache size (LRU
and OPT are always simulated, even when not asked for, since the gap needs them).
Every policy sees the trace in the same batches of ``batch`` requests; the
``learned`` policies score each batch at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..engine.ids import remap_trace
from ..engine.policies import make_policy
from ..engine.nextuse import next_use_positions
from ..errors import UserError
from ..sim.run import replay
from .models import load_model
from ..engine.capacity import capacity_for
from .train import dense_tables

KNOWN_EXTRA = ("learned", "learned+prefetch")


def parse_list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UserError(f"no {what} given")
    return items


def parse_sizes(text: str) -> list[float]:
    out = []
    for item in parse_list(text, "cache size"):
        try:
            v = float(item)
        except ValueError:
            raise UserError(f"cache size must be a number, got {item!r}") from None
        capacity_for(v, 1)  # rejects <= 0 with one line
        out.append(v)
    return out


def _prefetch_dir(model_dir: Path | None, prefetch_dir: Path | None) -> Path:
    if prefetch_dir is not None:
        return prefetch_dir
    if model_dir is not None and (model_dir / "prefetch" / "model.pt").exists():
        return model_dir / "prefetch"
    raise UserError("learned+prefetch needs a prefetch model: --prefetch-model DIR "
                    "(or a prefetch/ folder inside --model)")


def evaluate(keys: np.ndarray, policies: list[str], cache_sizes: list[float],
             model_dir: str | Path | None = None, prefetch_dir: str | Path | None = None,
             batch: int = 16384, on_row=None) -> list[dict]:
    """One row per (policy, cache size): policy, cache_size, capacity, requests, hits,
    hit_ratio, gap_closed (plus seconds, and prefetches / prefetch_hits when prefetching)."""
    policies = [p.lower() for p in policies]
    model_dir = Path(model_dir) if model_dir is not None else None
    prefetch_dir = Path(prefetch_dir) if prefetch_dir is not None else None
    cache_model = prefetch_model = None
    if any(p.startswith("learned") for p in policies):
        if model_dir is None:
            raise UserError("the learned policies need --model DIR (a folder made by `embed train --model cache`)")
        cache_model = load_model(model_dir, expect="cache")
    if "learned+prefetch" in policies:
        prefetch_model = load_model(_prefetch_dir(model_dir, prefetch_dir), expect="prefetch")
    for p in policies:  # unknown names fail before any work
        if p not in KNOWN_EXTRA:
            make_policy(p, 1, 0, **({"next_use": np.zeros(0, np.int64)} if p in ("opt", "belady", "min") else {}))
    ids, n = remap_trace(keys)
    tables = dense_tables(keys)
    table_of_id = np.zeros(n, np.int64)
    table_of_id[ids] = tables
    nxt = next_use_positions(ids)
    rows = []
    for cs in cache_sizes:
        cap = capacity_for(cs, n)
        results = {}
        for name in dict.fromkeys(["lru", "opt", *policies]):
            kw = {}
            if name in ("opt", "belady", "min"):
                kw = {"next_use": nxt}
            elif name == "learned":
                kw = {"model": cache_model, "tables": table_of_id}
            elif name == "learned+prefetch":
                kw = {"model": cache_model, "prefetch_model": prefetch_model, "tables": table_of_id}
            pol = make_policy(name, cap, n, **kw)
            t0 = time.perf_counter()
            h = replay(pol, ids, batch)
            sec = time.perf_counter() - t0
            st = pol.stats()
            row = {"policy": name, "cache_size": cs, "capacity": cap, "requests": int(ids.size),
                   "hits": int(h.sum()), "hit_ratio": float(h.mean()), "seconds": sec}
            if hasattr(st, "prefetches"):
                row["prefetches"] = int(st.prefetches)
                row["prefetch_hits"] = int(st.prefetch_hits)
            results[name] = row
        h_lru, h_opt = results["lru"]["hit_ratio"], results["opt"]["hit_ratio"]
        for name in policies:
            r = results[name]
            gap = h_opt - h_lru
            r["gap_closed"] = (r["hit_ratio"] - h_lru) / gap if gap > 0 else 0.0
            rows.append(r)
            if on_row is not None:
                on_row(r)
    return rows
