"""``icache`` (iCache, HPCA '23): H/L split, importance cache, substitution of L misses.

* Importance: the sample's latest training loss, kept per sample id.
* Sampling: each epoch requests about ``epoch_fraction`` (0.8) of N samples,
  drawn without replacement with probability falling linearly with
  importance rank (the most important twice as likely as the least).
* H/L: the top ``h_fraction`` (30%) by importance are H, the rest L.
* H-cache (``h_share`` of the capacity): keeps the most important H samples
  (admit on a miss if there is room or it beats the lowest; evict the lowest).
* L-buffer (the rest, in two halves): during an epoch the first L misses fill
  the *next* half; at the epoch start it becomes the *serving* half and the old
  serving half is dropped. An L miss is served by a random sample of the
  serving half (substitution), so the stand-ins change every epoch and are
  always fully in the cache (never a sample still on its way in).

Before any loss is known (the first epoch) there is no split: every sample
is treated as H and the cache fills by plain admission.
"""

from __future__ import annotations

import numpy as np

from .base import Lookup, TrainingPolicy, checked_options
from .scored import ScoreCache, ShadowScores


class ICachePolicy(TrainingPolicy):
    name = "icache"
    needs_labels = True  # substitutes a miss by a resident sample: the loader refuses to run without labels

    def __init__(
        self,
        n_samples: int,
        capacity: int,
        labels=None,
        seed: int = 0,
        h_fraction: float = 0.3,
        h_share: float = 0.8,
        epoch_fraction: float = 0.8,
        **options,
    ) -> None:
        super().__init__(n_samples, capacity, labels, seed, **options)
        # Out of range these break the byte budget (h_share > 1 sizes the H-cache past the
        # capacity, < 0 makes the L-buffer larger than it) or the epoch's request count.
        # (epoch_fraction=0 would request no sample at all: it was rounded up to one)
        checked_options(
            "icache",
            counts={},
            shares=dict(h_fraction=h_fraction, h_share=h_share, epoch_fraction=epoch_fraction),
            flags={},
            positives=dict(epoch_fraction=epoch_fraction),
        )
        self.h_fraction = float(h_fraction)
        self.epoch_fraction = float(epoch_fraction)
        h_cap = int(round(self.capacity * float(h_share)))
        self.scores = ShadowScores(self.n, prior=0.0)
        self.hcache = ScoreCache(self.n, h_cap)
        self.l_capacity = self.capacity - h_cap
        self._lbuf: list[int] = []  # serving stand-ins this epoch
        self._lnext: list[int] = []  # filled this epoch, serves the next
        self._in_lbuf = np.zeros(self.n, np.bool_)  # in either half
        self._is_h = np.ones(self.n, np.bool_)
        self._pending_evict: list[int] = []

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self.scores.commit()
        if self.scores.seen:
            k = int(round(self.h_fraction * self.n))
            top = np.argsort(-self.scores.current, kind="stable")[:k]
            self._is_h[:] = False
            self._is_h[top] = True
        self.hcache.rebuild(self.scores.current)
        # Fresh L stand-ins every epoch: drop the old serving half.
        self._pending_evict.extend(self._lbuf)
        self._in_lbuf[self._lbuf] = False
        self._lbuf, self._lnext = self._lnext, []

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        if not self.scores.seen:
            return rng.permutation(self.n).astype(np.int64)
        m = max(1, int(round(self.epoch_fraction * self.n)))
        rank = np.empty(self.n, np.float64)
        rank[np.argsort(-self.scores.current, kind="stable")] = np.arange(self.n)
        weight = 1.0 - 0.5 * rank / max(1, self.n - 1)
        # Weighted sampling without replacement: Efraimidis-Spirakis keys.
        keys = rng.random(self.n) ** (1.0 / weight)
        chosen = np.argpartition(-keys, m - 1)[:m]
        return rng.permutation(chosen).astype(np.int64)

    def update(self, sample_ids, losses, embeddings=None) -> None:
        ids = np.asarray(sample_ids, np.int64)
        if ids.size:
            self.scores.set(ids, losses)

    def lookup(self, ids: np.ndarray) -> Lookup:
        ids = np.asarray(ids, np.int64)
        n = ids.size
        served = ids.copy()
        hit = np.zeros(n, np.bool_)
        sub = np.zeros(n, np.bool_)
        admit = np.zeros(n, np.bool_)
        evicted = self._pending_evict
        self._pending_evict = []
        score = self.scores.current
        for k, i in enumerate(ids.tolist()):
            if self.hcache.resident[i] or self._in_lbuf[i]:
                hit[k] = True
                continue
            if self._is_h[i]:
                ok, victim = self.hcache.offer(i, float(score[i]))
                admit[k] = ok
                if victim >= 0:
                    evicted.append(victim)
                continue
            if len(self._lnext) < self.l_capacity // 2:
                self._lnext.append(i)
                self._in_lbuf[i] = True
                admit[k] = True
            elif self._lbuf:
                served[k] = self._lbuf[int(self.rng.integers(len(self._lbuf)))]
                hit[k] = sub[k] = True
        return Lookup(served, hit, sub, admit, self._gone(evicted))

    def contains(self, ids):
        ids = np.asarray(ids, np.int64)
        return self.hcache.resident[ids] | self._in_lbuf[ids]

    def resident(self) -> np.ndarray:
        return np.union1d(self.hcache.ids(), np.asarray(self._lbuf + self._lnext, np.int64))

    def _discard(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self.hcache.discard(i)
        lost = set(ids[self._in_lbuf[ids]].tolist())
        if lost:
            self._in_lbuf[list(lost)] = False
            self._lbuf = [i for i in self._lbuf if i not in lost]
            self._lnext = [i for i in self._lnext if i not in lost]

    def state_dict(self):
        return {
            "epoch": self.epoch,
            "scores": self.scores.state_dict(),
            "resident": self.hcache.ids(),
            "is_h": self._is_h.copy(),
        }

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.scores.load_state_dict(state["scores"])
        self._is_h = np.asarray(state["is_h"], np.bool_).copy()
        for i in np.asarray(state.get("resident", []), np.int64).tolist():
            self.hcache.offer(int(i), float(self.scores.current[i]))
