"""``minio`` (CoorDL's MinIO cache): fill once, never evict.

Under uniform shuffling every sample is equally likely to come next, so
evicting one sample for another only churns; MinIO admits misses until the
cache is full and then keeps that set for the rest of the job.
"""

from __future__ import annotations

import numpy as np

from .base import Lookup, TrainingPolicy


class MinIOPolicy(TrainingPolicy):
    name = "minio"

    def __init__(self, n_samples: int, capacity: int, labels=None, seed: int = 0, **options) -> None:
        super().__init__(n_samples, capacity, labels, seed, **options)
        self._resident = np.zeros(self.n, np.bool_)
        self._size = 0

    def lookup(self, ids: np.ndarray) -> Lookup:
        ids = np.asarray(ids, np.int64)
        hit = np.empty(ids.size, np.bool_)
        admit = np.zeros(ids.size, np.bool_)
        res = self._resident
        for k, i in enumerate(ids.tolist()):  # sequential: a repeat within the batch hits
            if res[i]:
                hit[k] = True
            else:
                hit[k] = False
                if self._size < self.capacity:
                    res[i] = True
                    self._size += 1
                    admit[k] = True
        return Lookup(ids.copy(), hit, np.zeros(ids.size, np.bool_), admit)

    def contains(self, ids):
        return self._resident[np.asarray(ids, np.int64)]

    def resident(self) -> np.ndarray:
        return np.flatnonzero(self._resident).astype(np.int64)

    def _discard(self, ids: np.ndarray) -> None:
        self._resident[ids] = False  # the room it leaves is filled by the next misses
        self._size -= int(ids.size)

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        res = np.asarray(state.get("resident", []), np.int64)[: self.capacity]
        self._resident[:] = False
        self._resident[res] = True
        self._size = int(res.size)
