"""Shared parts of the importance policies: per-sample scores and a score-keyed cache.

``ShadowScores`` keeps two tables: ``next`` is written by every ``update``
during an epoch; ``current`` is what the sampler and the cache read, and only
changes at ``commit()`` (epoch start). Samples never scored get a prior (the
mean of the scored ones), never zero, so they keep a chance to be drawn.

``ScoreCache`` is the resident set of a cache that keeps the highest scores:
a min-heap with lazy deletion (stale entries are skipped when they surface),
``offer`` admits an id when there is room or when it beats the lowest
resident score (PADS-style admission), evicting that lowest one.
"""

from __future__ import annotations

import heapq

import numpy as np


class ShadowScores:
    def __init__(self, n: int, prior: float = 1.0) -> None:
        self.next = np.full(n, np.nan, np.float64)
        self.current = np.full(n, float(prior), np.float64)
        self.prior = float(prior)
        self.seen = False

    def set(self, ids: np.ndarray, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64)
        ok = np.isfinite(values)  # a NaN loss leaves the old score in place
        self.next[np.asarray(ids, np.int64)[ok]] = values[ok]
        self.seen = self.seen or bool(ok.any())

    def commit(self) -> None:
        scored = np.isfinite(self.next)
        if scored.any():
            self.prior = float(self.next[scored].mean())
        self.current = np.where(scored, self.next, self.prior)

    def state_dict(self) -> dict:
        return {
            "next": self.next.copy(),
            "current": self.current.copy(),
            "prior": self.prior,
            "seen": self.seen,
        }

    def load_state_dict(self, s: dict) -> None:
        self.next = np.asarray(s["next"], np.float64).copy()
        self.current = np.asarray(s["current"], np.float64).copy()
        self.prior = float(s["prior"])
        self.seen = bool(s["seen"])


class ScoreCache:
    """Resident ids of a highest-score cache of ``capacity`` entries."""

    def __init__(self, n: int, capacity: int) -> None:
        self.capacity = int(capacity)
        self.resident = np.zeros(n, np.bool_)
        self.size = 0
        self._heap: list[tuple[float, int]] = []
        self._key = np.full(n, np.nan, np.float64)  # score each id was pushed with

    def rebuild(self, scores: np.ndarray) -> None:
        """Re-key the heap with new scores (epoch start)."""
        ids = np.flatnonzero(self.resident)
        self._key[:] = np.nan
        self._key[ids] = scores[ids]
        self._heap = list(zip(scores[ids].tolist(), ids.tolist()))
        heapq.heapify(self._heap)

    def _clean_top(self) -> None:
        h = self._heap
        while h:
            s, i = h[0]
            if self.resident[i] and self._key[i] == s:
                return
            heapq.heappop(h)

    def offer(self, i: int, score: float) -> tuple[bool, int]:
        """Admit ``i`` if there is room or it beats the lowest score; return (admitted, evicted id or -1)."""
        if self.capacity <= 0 or self.resident[i]:
            return False, -1
        if self.size < self.capacity:
            self._insert(i, score)
            return True, -1
        self._clean_top()
        if not self._heap or score <= self._heap[0][0]:
            return False, -1
        _, victim = heapq.heappop(self._heap)
        self.resident[victim] = False
        self._key[victim] = np.nan
        self.size -= 1
        self._insert(i, score)
        return True, victim

    def discard(self, i: int) -> bool:
        if not self.resident[i]:
            return False
        self.resident[i] = False
        self._key[i] = np.nan
        self.size -= 1
        return True

    def _insert(self, i: int, score: float) -> None:
        self.resident[i] = True
        self._key[i] = score
        self.size += 1
        heapq.heappush(self._heap, (score, i))

    def ids(self) -> np.ndarray:
        return np.flatnonzero(self.resident).astype(np.int64)
