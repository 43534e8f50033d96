"""``shade`` (SHADE, FAST '23): loss-rank importance, importance sampling, PADS admission.

* Importance: within each batch the samples are ranked by loss (lowest loss
  rank 1) and get ``log(rank + 10)``. The score is stored under the *sample
  id* that was trained on (SHADE's own code credits batch positions instead,
  a bug we do not copy). Unseen samples get the mean score as a prior.
* Sampling: each epoch draws N requests with replacement, with probability
  proportional to ``score ** (1 / temperature)`` (temperature > 1 flattens).
* Cache: keeps the highest scores. A miss is admitted when the cache has
  room or the sample scores above the cache's lowest, which is evicted.
* PADS replication: a resident sample may be served up to ``rep_factor``
  times per epoch; a miss that is not worth admitting (score at or below the
  cache's lowest) is served by a resident sample that still has uses left
  (counted as a substitution, never as a hit). ``rep_factor=1`` turns this off.
  Stand-ins are drawn from what was resident when the epoch began: a sample
  admitted a moment ago may still be on its way into the cache.

Scores read by the sampler and the cache change only at epoch start (see
``base.py``), so ranks that replay the same lookups agree.
"""

from __future__ import annotations

import numpy as np

from ..samplers import weighted_draw
from .base import Lookup, TrainingPolicy, checked_options, loss_rank_scores
from .scored import ScoreCache, ShadowScores


class ShadePolicy(TrainingPolicy):
    name = "shade"

    def __init__(
        self,
        n_samples: int,
        capacity: int,
        labels=None,
        seed: int = 0,
        rep_factor: int = 3,
        temperature: float = 1.0,
        **options,
    ) -> None:
        super().__init__(n_samples, capacity, labels, seed, **options)
        # temperature <= 0 or NaN made every weighted draw the same sample
        checked_options(
            "shade",
            counts=dict(rep_factor=rep_factor),
            shares={},
            flags={},
            positives=dict(temperature=temperature),
        )
        self.rep_factor = int(rep_factor)
        self.temperature = float(temperature)
        self.scores = ShadowScores(self.n, prior=float(np.log(10.0)))
        self.cache = ScoreCache(self.n, self.capacity)
        self._uses = np.zeros(self.n, np.int32)
        self._pool: list[int] = []  # resident ids that may still stand in this epoch

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self.scores.commit()
        self.cache.rebuild(self.scores.current)
        self._uses[:] = 0
        self._pool = self.cache.ids().tolist()

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        if not self.scores.seen:
            return rng.permutation(self.n).astype(np.int64)
        return weighted_draw(self.scores.current, self.n, rng, self.temperature, replace=True)

    def update(self, sample_ids, losses, embeddings=None) -> None:
        ids = np.asarray(sample_ids, np.int64)
        if ids.size:
            self.scores.set(ids, loss_rank_scores(losses))

    def _stand_in(self) -> int:
        pool, uses, res = self._pool, self._uses, self.cache.resident
        while pool:
            j = int(self.rng.integers(len(pool)))
            cand = pool[j]
            if res[cand] and uses[cand] < self.rep_factor:
                return cand
            pool[j] = pool[-1]  # used up or evicted: drop it from the pool
            pool.pop()
        return -1

    def lookup(self, ids: np.ndarray) -> Lookup:
        ids = np.asarray(ids, np.int64)
        n = ids.size
        served = ids.copy()
        hit = np.zeros(n, np.bool_)
        sub = np.zeros(n, np.bool_)
        admit = np.zeros(n, np.bool_)
        evicted: list[int] = []
        score = self.scores.current
        cache, uses = self.cache, self._uses
        for k, i in enumerate(ids.tolist()):
            if cache.resident[i]:
                hit[k] = True
                uses[i] += 1
                continue
            ok, victim = cache.offer(i, float(score[i]))
            if ok:
                admit[k] = True
                uses[i] += 1
                if victim >= 0:
                    evicted.append(victim)
                continue
            if self.rep_factor > 1:
                j = self._stand_in()
                if j >= 0:
                    served[k] = j
                    hit[k] = sub[k] = True
                    uses[j] += 1
        return Lookup(served, hit, sub, admit, self._gone(evicted))

    def contains(self, ids):
        return self.cache.resident[np.asarray(ids, np.int64)]

    def resident(self) -> np.ndarray:
        return self.cache.ids()

    def _discard(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self.cache.discard(i)  # the stand-in pool drops it when a draw meets it

    def state_dict(self):
        return {"epoch": self.epoch, "scores": self.scores.state_dict(), "resident": self.cache.ids()}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.scores.load_state_dict(state["scores"])
        for i in np.asarray(state.get("resident", []), np.int64)[: self.capacity].tolist():
            self.cache.offer(int(i), float(self.scores.current[i]))
