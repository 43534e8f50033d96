"""Engine policies ``learned+offline`` and ``learned+prefetch`` (RecMG's cache, done fast).

(The online ``learned`` policy is in ``adaptive.py``; with a model it uses ``learned+offline``
as one of its experts, a warm start.)

``learned+offline``: every access is scored by the cache model, a whole batch at a time
(features and the MLP both in numba). The model predicts when the row will be
used next (trained on optgen's next-use distances, in units of the capacity), so
the policy can do what Belady does with the real future: evict the resident row
whose predicted next use is farthest away.

* A max-heap keyed by predicted next-use time finds that row (lazy entries: a
  re-accessed row leaves a stale entry that is skipped when it surfaces).
* A prediction can be wrong in the other direction: a row predicted back soon
  that does not come would never be the farthest and would sit in the cache for
  ever. So the rows are also kept in LRU order, and when the LRU row is overdue
  (its predicted time has passed) it is evicted first.
* ``bypass`` (off by default): a miss predicted to come back later than every
  resident row is not admitted, as OPT with bypass does.

``learned+prefetch``: after each batch the prefetch model scores the rows the
cache evicted recently (the rows that can come back as misses); those with
P(requested in the next window) > 0.5, at most ``prefetch_share`` of the batch,
are loaded ahead of time, predicted back within the window. They take capacity
like any row; ``prefetches`` and ``prefetch_hits`` count them separately.

The rows' table can be given as ``tables`` (dense table index per dense id);
without it every row is in table 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
import torch

from ..engine.policies.base import PolicyStats
from ..errors import UserError
from .features import FeatureState
from .lrfu import NIL, DecayHeapPolicy, _evict_one, _farthest, _place, _unlink
from .models import load_model


@nb.njit(cache=True)
def _learned_access(
    ids, dist, now0, admit, use_admit, hits, evicted, record, where, prev, nxt, s, pf, due, hk, hv, counters
):
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        now = now0 + k
        key = now + dist[k]
        if where[i] > 0:
            hits[k] = True
            if pf[i]:
                counters[0] += 1  # a prefetched row served its first hit
                pf[i] = 0
            _unlink(i, prev, nxt, s)
            _place(i, key, where, prev, nxt, s, due, hk, hv)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        if s[1] >= s[0]:
            if s[5] != 0:
                far = _farthest(hk, hv, s, where, due)
                if far >= 0 and key > due[far] and due[s[3]] >= now:
                    n_rej += 1
                    continue
            v = _evict_one(now, where, prev, nxt, s, pf, due, hk, hv)
            if record:
                evicted[n_ev] = v
            n_ev += 1
        _place(i, key, where, prev, nxt, s, due, hk, hv)
        s[1] += 1
        n_adm += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _prefetch_insert(cands, keys, now, where, prev, nxt, s, pf, due, hk, hv, evicted):
    n_ev = 0
    n_in = 0
    for k in range(cands.size):
        i = cands[k]
        if where[i] > 0:
            continue
        if s[1] >= s[0]:
            evicted[n_ev] = _evict_one(now, where, prev, nxt, s, pf, due, hk, hv)
            n_ev += 1
        _place(i, keys[k], where, prev, nxt, s, due, hk, hv)
        pf[i] = 1
        s[1] += 1
        n_in += 1
    return n_ev, n_in


@dataclass
class LearnedStats(PolicyStats):
    prefetches: int = 0
    prefetch_hits: int = 0


def _as_model(model, kind: str):
    if model is None:
        raise UserError(f"the {kind} policy needs a trained model (model=PATH or a model object)")
    if isinstance(model, torch.nn.Module):
        return model.eval()
    return load_model(model, expect="cache" if kind == "learned+offline" else "prefetch")


class OfflineLearned(DecayHeapPolicy):
    """Eviction ordered by an offline-trained model (``embed train --kind cache``)."""

    name = "learned+offline"

    def __init__(
        self,
        capacity: int,
        n_ids: int = 0,
        *,
        model=None,
        tables: np.ndarray | None = None,
        bypass: bool = False,
        batch_lookups: int | None = None,
        ordering: str = "decay",
        decay_tau: float = 32.0,
        model_weight: float = 0.5,
        **kw,
    ) -> None:
        if ordering not in ("decay", "next_use"):
            raise ValueError(f"ordering must be 'decay' or 'next_use', got {ordering!r}")
        self.ordering = ordering
        self.decay_tau = float(decay_tau)  # in units of the capacity
        self.model_weight = float(model_weight)
        self.model = _as_model(model, "learned+offline")
        self._weights = self.model.numpy_weights()
        self.bypass = bool(bypass)
        self.tables = None if tables is None else np.ascontiguousarray(tables, np.int64)
        n_tables = int(self.tables.max()) + 1 if self.tables is not None and self.tables.size else 1
        bl = batch_lookups or getattr(self.model.config, "batch_lookups", 4096)
        self.features = FeatureState(capacity, n_ids, n_tables, bl)
        self._counters = np.zeros(1, np.int64)
        self._prefetches = 0
        super().__init__(capacity, n_ids, **kw)
        self._alloc_heap()

    def _now(self) -> float:
        return float(self.features.time)

    def _init_scalars(self) -> None:
        self._s[2] = NIL
        self._s[3] = NIL
        self._s[5] = int(getattr(self, "bypass", False))
        self._s[6] = int(getattr(self, "ordering", "decay") == "decay")

    def _on_resize(self) -> None:
        self.features.capacity = self.capacity
        super()._on_resize()

    def _tables_of(self, ids: np.ndarray) -> np.ndarray | None:
        if self.tables is None:
            return None
        out = np.zeros(ids.size, np.int64)
        ok = ids < self.tables.size
        out[ok] = self.tables[ids[ok]]
        return out

    def predict(self, ids: np.ndarray) -> np.ndarray:
        """``[rows, 2]``: P(keep) and predicted next-use distance in requests (updates the history)."""
        from .models import MAX_LOG_DISTANCE, mlp_forward

        feats = self.features.access(ids, self._tables_of(ids))
        out = mlp_forward(feats, self._weights, sigmoid_first=True)
        out[:, 1] = np.expm1(np.clip(out[:, 1], 0.0, MAX_LOG_DISTANCE)) * self.capacity
        return out

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        now = self.features.time
        if self.ordering == "decay":
            p_keep = self.predict(ids)[:, 0].astype(np.float64)
            off = self.model_weight * np.log(np.clip(p_keep, 1e-4, 1.0))
            inv_tau = 1.0 / (self.decay_tau * self.capacity)
            return self._decay(ids, off, float(now), inv_tau, admit, use_admit, hits, evicted, record)
        dist = np.ascontiguousarray(self.predict(ids)[:, 1], np.float64)
        return _learned_access(
            ids,
            dist,
            float(now),
            admit,
            use_admit,
            hits,
            evicted,
            record,
            *self._heap_arrays(),
            self._counters,
        )

    def _extra_arrays(self) -> list[np.ndarray]:
        f = self.features
        return [f.last, f.count, f.gap1, f.gap2, f.d1, f.d2, f.tcount, *super()._extra_arrays()]

    def stats(self) -> LearnedStats:
        b = self._stats
        return LearnedStats(
            requests=b.requests,
            hits=b.hits,
            admissions=b.admissions,
            rejections=b.rejections,
            evictions=b.evictions,
            prefetches=self._prefetches,
            prefetch_hits=int(self._counters[0]),
        )

    def reset_stats(self) -> None:
        super().reset_stats()
        self._prefetches = 0
        self._counters[:] = 0


class LearnedPrefetch(OfflineLearned):
    """``learned`` plus a prefetch model that reloads recently evicted rows it expects back soon."""

    name = "learned+prefetch"

    def __init__(
        self,
        capacity: int,
        n_ids: int = 0,
        *,
        prefetch_model=None,
        prefetch_share: float = 0.005,
        prefetch_threshold: float = 0.0,
        batch: int = 16384,
        **kw,
    ) -> None:
        self.batch = int(batch)
        self.prefetch_model = _as_model(prefetch_model, "learned+prefetch")
        self.prefetch_share = float(prefetch_share)
        self.prefetch_threshold = float(prefetch_threshold)
        self._recent = np.empty(0, np.int64)
        super().__init__(capacity, n_ids, **kw)

    def access(
        self, ids: np.ndarray, admit: np.ndarray | None = None, sizes: np.ndarray | None = None
    ) -> np.ndarray:
        """Serve ``ids`` in batches of ``batch``, prefetching after each."""
        if sizes is not None:
            raise ValueError("learned+prefetch counts objects; it does not run with sizes")
        ids = np.ascontiguousarray(ids, np.int64)
        if ids.size <= self.batch:
            return self._access_batch(ids, admit)
        out = np.empty(ids.size, np.bool_)
        for a in range(0, ids.size, self.batch):
            sub = None if admit is None else np.asarray(admit)[a : a + self.batch]
            out[a : a + self.batch] = self._access_batch(ids[a : a + self.batch], sub)
        return out

    def _access_batch(self, ids: np.ndarray, admit: np.ndarray | None) -> np.ndarray:
        evicted_here: list[np.ndarray] = []
        user_cb = self.on_evict
        self.on_evict = evicted_here.append  # see this batch's evictions, pass them on below
        try:
            hits = super().access(ids, admit)
        finally:
            self.on_evict = user_cb
        if evicted_here and user_cb is not None:
            user_cb(evicted_here[0])
        ids = np.asarray(ids, np.int64)
        fresh = evicted_here[0] if evicted_here else np.empty(0, np.int64)
        # candidates: rows evicted in this batch and the one before, not resident now
        cands = np.unique(np.concatenate([self._recent, fresh]))
        self._recent = fresh
        cands = cands[self._where[cands] <= 0] if cands.size else cands
        budget = int(self.prefetch_share * ids.size)
        if cands.size and budget > 0:
            p = self.prefetch_model.score(self.features.candidates(cands, self._tables_of(cands)))
            good = np.flatnonzero(p > self.prefetch_threshold)
            if good.size > budget:
                good = good[np.argsort(-p[good], kind="stable")[:budget]]
            chosen = np.ascontiguousarray(cands[good])
            if chosen.size:
                ev = np.empty(chosen.size + 16, np.int64)
                now = float(self.features.time)
                if self.ordering == "decay":  # a prefetched row scores as one fresh access now
                    keys = np.full(chosen.size, -(now / (self.decay_tau * self.capacity)))
                else:  # predicted back within the window
                    window = float(getattr(self.prefetch_model.config, "window", 0.25)) * self.capacity
                    keys = np.full(chosen.size, now + window)
                n_ev, n_in = _prefetch_insert(
                    chosen,
                    keys,
                    now,
                    self._where,
                    self._prev,
                    self._next,
                    self._s,
                    self._pf,
                    self._due,
                    self._hk,
                    self._hv,
                    ev,
                )
                self._prefetches += int(n_in)
                self._stats.evictions += int(n_ev)
                if n_ev and user_cb is not None:
                    user_cb(ev[:n_ev].copy())
        return hits
