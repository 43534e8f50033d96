"""Run policies over an embedding trace: hit ratio, share of the gap closed, winner.

``gap_closed = (h - h_best) / (h_OPT - h_best)`` per policy and cache size, where h_best is
the best of lru / lfu / arc / s3fifo on that trace and size (those and OPT are always
simulated, even when not asked for, since the gap needs them). The replay loop is the
package's one (``engine.replay``, as in the simulator): the whole trace in one ``access`` call;
``learned+prefetch`` splits the trace into batches of ``batch`` requests itself, since it
prefetches after each batch.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..engine.capacity import capacity_for, check_size
from ..engine.ids import remap_trace
from ..engine.nextuse import next_use_positions
from ..engine.policies import make_policy
from ..engine.policies.registry import canonical_name
from ..engine.replay import replay
from ..errors import UserError
from .models import load_model
from .train import dense_tables


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
        check_size(v)  # rejects <= 0 with one line
        out.append(v)
    return out


def _prefetch_dir(model_dir: Path | None, prefetch_dir: Path | None) -> Path:
    if prefetch_dir is not None:
        return prefetch_dir
    if model_dir is not None and (model_dir / "prefetch" / "model.pt").exists():
        return model_dir / "prefetch"
    raise UserError(
        "learned+prefetch needs a prefetch model: --prefetch-model DIR (or a prefetch/ folder inside --model)"
    )


HEURISTICS = ("lru", "lfu", "arc", "s3fifo")


def _load_models(policies: list[str], model_dir: Path | None, prefetch_dir: Path | None):
    cache_model = prefetch_model = None
    if model_dir is not None and any(p.startswith("learned") for p in policies):
        cache_model = load_model(model_dir, expect="cache")
    if any(p in ("learned+offline", "learned+prefetch") for p in policies) and cache_model is None:
        raise UserError(
            "learned+offline and learned+prefetch need --model-dir DIR (a folder made by "
            "`embed train --kind cache`); `learned` runs without one"
        )
    if "learned+prefetch" in policies:
        prefetch_model = load_model(_prefetch_dir(model_dir, prefetch_dir), expect="prefetch")
    return cache_model, prefetch_model


def _kwargs(name: str, cache_model, prefetch_model, table_of_id, batch: int) -> dict:
    if name == "learned":
        return {"model": cache_model, "tables": table_of_id}
    if name == "learned+offline":
        return {"model": cache_model, "tables": table_of_id}
    if name == "learned+prefetch":
        return {"model": cache_model, "prefetch_model": prefetch_model, "tables": table_of_id, "batch": batch}
    return {}


def evaluate(
    keys: np.ndarray,
    policies: list[str],
    cache_sizes: list[float],
    model_dir: str | Path | None = None,
    prefetch_dir: str | Path | None = None,
    batch: int = 16384,
    on_row=None,
) -> list[dict]:
    """One row per (policy, cache size): policy, cache_size, capacity, requests, hits, hit_ratio,
    best_heuristic (the best of lru/lfu/arc/s3fifo here), gap_closed (share of the best-heuristic
    -> OPT gap closed), winner (the best policy asked for, OPT aside), seconds; prefetches and
    prefetch_hits when prefetching. ``learned`` needs no model; with ``model_dir`` it is warm-started."""
    policies = [canonical(p) for p in policies]
    model_dir = Path(model_dir) if model_dir is not None else None
    prefetch_dir = Path(prefetch_dir) if prefetch_dir is not None else None
    cache_model, prefetch_model = _load_models(policies, model_dir, prefetch_dir)
    keys = np.ascontiguousarray(keys, np.int64)
    if keys.size == 0:
        raise UserError("the trace is empty")
    ids, n = remap_trace(keys)
    table_of_id = np.zeros(n, np.int64)
    table_of_id[ids] = dense_tables(keys)
    nxt = next_use_positions(ids)
    rows = []
    for cs in cache_sizes:
        cap = capacity_for(cs, n)
        results = {}
        for name in dict.fromkeys([*HEURISTICS, "opt", *policies]):
            kw = _kwargs(name, cache_model, prefetch_model, table_of_id, batch)
            if name == "opt":
                kw["next_use"] = nxt
            # Nothing resident can exceed the n distinct rows: a larger capacity is built at that
            # bound, as `sim` does (same hits, no memory for the excess).
            pol = make_policy(name, min(cap, n), n, **kw)
            t0 = time.perf_counter()
            n_hits = int(np.count_nonzero(replay(pol, ids).hits))
            sec = time.perf_counter() - t0
            row = {
                "policy": name,
                "cache_size": cs,
                "capacity": cap,
                "requests": int(ids.size),
                "hits": n_hits,
                "hit_ratio": n_hits / ids.size,
                "seconds": sec,
            }
            st = pol.stats()
            if hasattr(st, "prefetches"):
                row["prefetches"] = int(st.prefetches)
                row["prefetch_hits"] = int(st.prefetch_hits)
            if name == "learned":
                row["leader"] = pol.leader_name
                row["switches"] = pol.switches
            results[name] = row
        best = max(HEURISTICS, key=lambda h: results[h]["hit_ratio"])
        h_best, h_opt = results[best]["hit_ratio"], results["opt"]["hit_ratio"]
        asked = [p for p in policies if p != "opt"] or policies
        winner = max(asked, key=lambda p: results[p]["hit_ratio"])
        for name in policies:
            r = results[name]
            gap = h_opt - h_best
            r["best_heuristic"] = best
            r["gap_closed"] = (r["hit_ratio"] - h_best) / gap if gap > 0 else 0.0
            r["winner"] = winner
            rows.append(r)
            if on_row is not None:
                on_row(r)
    return rows


def canonical(name: str) -> str:
    """The registry's name for ``name``; an unknown name fails with one line before any work."""
    return canonical_name(name)
