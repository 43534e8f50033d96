"""``lru+admit``: LRU whose admission is learned online by a ``ReuseModel``.

A miss is admitted only if the reuse model says its next access is likely (P >= ``threshold``)
to come within the cache's horizon, the time an admitted row that is not used again takes to
fall off the LRU list: capacity / (admissions per request), measured on the policy itself
and smoothed. Rows predicted to be one-offs thus never push a useful row out.
"""

from __future__ import annotations

import numpy as np

from ..engine.policies.lru import LRU
from .reuse import ReuseModel


class AdmitLRU(LRU):
    name = "lru+admit"

    def __init__(
        self, capacity: int, n_ids: int = 0, *, tables: np.ndarray | None = None, threshold: float = 0.4, **kw
    ) -> None:
        super().__init__(capacity, n_ids, **kw)
        self.threshold = float(threshold)
        self.tables = None if tables is None else np.ascontiguousarray(tables, np.int64)
        self.reuse = ReuseModel(capacity, n_ids)
        self.horizon = float(capacity)

    def _tables_of(self, ids: np.ndarray) -> np.ndarray:
        if self.tables is None:
            return np.zeros(ids.size, np.int64)
        out = np.zeros(ids.size, np.int64)
        ok = ids < self.tables.size
        out[ok] = self.tables[ids[ok]]
        return out

    def access(
        self, ids: np.ndarray, admit: np.ndarray | None = None, sizes: np.ndarray | None = None
    ) -> np.ndarray:
        if sizes is not None:
            raise ValueError("lru+admit counts objects; it does not run with sizes")
        ids = np.ascontiguousarray(ids, np.int64)
        if ids.size == 0:
            return np.zeros(0, np.bool_)
        p = self.reuse.observe(ids, self._tables_of(ids), self.horizon)
        mask = p >= self.threshold
        if admit is not None:
            mask &= np.asarray(admit, np.bool_)
        before = self._stats.admissions
        hits = super().access(ids, mask)
        rate = max(self._stats.admissions - before, 1) / ids.size
        self.horizon = 0.9 * self.horizon + 0.1 * (self.capacity / rate)
        return hits
