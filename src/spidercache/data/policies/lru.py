"""``lru``: uniform random order over an LRU cache (the engine's numba LRU).

Under uniform shuffling an LRU cache holding a fraction f of the data hits
about f of the requests: the baseline every other policy is measured against.
"""

from __future__ import annotations

import numpy as np

from ...engine.policies.lru import LRU as EngineLRU
from .base import Lookup, TrainingPolicy


class LRUPolicy(TrainingPolicy):
    name = "lru"

    def __init__(self, n_samples: int, capacity: int, labels=None, seed: int = 0, **options) -> None:
        super().__init__(n_samples, capacity, labels, seed, **options)
        self._evicted: list[np.ndarray] = []
        self._lru = (
            EngineLRU(max(1, self.capacity), self.n, on_evict=self._evicted.append) if self.capacity else None
        )

    def lookup(self, ids: np.ndarray) -> Lookup:
        ids = np.asarray(ids, np.int64)
        if self._lru is None:
            return Lookup.all_miss(ids)
        hit = self._lru.access(ids)
        evicted = self._gone(np.concatenate(self._evicted) if self._evicted else [])
        self._evicted.clear()
        return Lookup(ids.copy(), hit, np.zeros(ids.size, np.bool_), ~hit, evicted)

    def contains(self, ids):
        return self._lru.contains(ids) if self._lru is not None else np.zeros(len(ids), np.bool_)

    def resident(self) -> np.ndarray:
        return self._lru.resident_ids() if self._lru is not None else np.empty(0, np.int64)

    def _discard(self, ids: np.ndarray) -> None:
        self._lru.remove(ids)

    def load_state_dict(self, state) -> None:
        # LRU order is not worth checkpointing: the resident set is, so a resumed
        # run hits on what the store still holds (recency restarts from there).
        super().load_state_dict(state)
        res = np.asarray(state.get("resident", []), np.int64)
        if self._lru is not None and res.size:
            self._lru.access(res[: self.capacity])
            self._evicted.clear()
