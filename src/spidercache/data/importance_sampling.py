"""Importance sampling of an epoch's order, with a visit floor and unbiasing weights.

``ImportanceSampler.order(epoch, scores)`` draws an epoch of ``n`` requests:

* multinomial with replacement, ``p_i`` proportional to ``(s_i / mean s)^(1/T)``
  clipped to ``[1/clip, clip]`` (temperature ``T > 1`` flattens; the clip
  bounds how far any sample can be over- or under-drawn, so one very high
  loss, e.g. a mislabelled image, cannot take over an epoch);
* mixed with the uniform distribution: ``p = (1 - floor) p_T + floor / n``,
  so every sample keeps at least ``floor / n`` probability per draw;
* a hard visit bound: any sample not served in the last ``max_gap`` epochs is
  put into this epoch's order *and* marked ``must_serve`` (the cache must not
  substitute it), so every sample's own data is trained on at least once
  every ``max_gap`` epochs, whatever its score. "Drawn" here means served as
  itself (``served``): a draw the cache substituted does not count.

``loss_weights(ids)`` returns ``1 / (n p_i)`` normalised to mean 1 over the
epoch: multiplying the per-sample loss by it makes the expected gradient that
of uniform sampling (importance-sampling correction), for a training loop that
wants an unbiased estimator.

The order depends only on the committed scores, the seed and the epoch, so
every DDP rank computes the same order.
"""

from __future__ import annotations

import numpy as np


class ImportanceSampler:
    def __init__(
        self,
        n: int,
        temperature: float = 2.0,
        floor: float = 0.3,
        max_gap: int = 3,
        clip: float = 4.0,
        seed: int = 0,
    ) -> None:
        if temperature <= 0 or not np.isfinite(temperature):
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {floor}")
        if max_gap < 1:
            raise ValueError(f"max_gap must be >= 1, got {max_gap}")
        self.n = int(n)
        self.temperature = float(temperature)
        self.floor = float(floor)
        self.max_gap = int(max_gap)
        self.clip = max(1.0, float(clip))
        self.seed = int(seed)
        self.last_drawn = np.full(self.n, -1, np.int64)  # last epoch each id was in the order
        # Last epoch each id's own data was served (not a stand-in for it): what the visit bound
        # counts from. A draw that was substituted trains nothing of the sample, so counting
        # draws let a sample go 7 epochs without its own data (the cache calls ``served``).
        self.last_own = np.full(self.n, -1, np.int64)
        self.p = np.full(self.n, 1.0 / self.n)
        self.must_serve = np.zeros(self.n, np.bool_)
        self._cache: tuple[int, np.ndarray] | None = None

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, np.float64)
        good = np.isfinite(s) & (s > 0)
        mean = float(s[good].mean()) if good.any() else 1.0
        rel = np.where(good, s / mean, 1.0 / self.clip)
        w = np.clip(rel, 1.0 / self.clip, self.clip) ** (1.0 / self.temperature)
        p = w / w.sum()
        p = (1.0 - self.floor) * p + self.floor / self.n
        return p / p.sum()

    def order(self, epoch: int, scores: np.ndarray | None) -> np.ndarray:
        """The epoch's request order (length n); uniform permutation when ``scores`` is None."""
        epoch = int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch, 0])
        self.must_serve[:] = False
        if scores is None:
            self.p = np.full(self.n, 1.0 / self.n)
            ids = rng.permutation(self.n).astype(np.int64)
        else:
            self.p = self.probabilities(scores)
            # last_own starts at -1 ("served just before epoch 0")
            overdue = np.flatnonzero(epoch - self.last_own >= self.max_gap)
            m = max(0, self.n - overdue.size)
            cdf = np.cumsum(self.p)
            cdf[-1] = 1.0
            drawn = np.minimum(np.searchsorted(cdf, rng.random(m), side="right"), self.n - 1)
            ids = rng.permutation(np.concatenate([drawn, overdue]).astype(np.int64))
            self.must_serve[overdue] = True
        self.last_drawn[ids] = epoch
        self._cache = (epoch, ids)
        return ids

    def served(self, ids: np.ndarray, epoch: int) -> None:
        """``ids`` were served as themselves (a hit or a read, not substituted) in ``epoch``."""
        self.last_own[np.asarray(ids, np.int64)] = int(epoch)

    def loss_weights(self, ids: np.ndarray) -> np.ndarray:
        """Importance-sampling correction ``1/(n p_i)`` (mean about 1 over an epoch)."""
        return 1.0 / (self.n * self.p[np.asarray(ids, np.int64)])

    def state_dict(self) -> dict:
        return {"last_drawn": self.last_drawn.copy(), "last_own": self.last_own.copy()}

    def load_state_dict(self, s: dict) -> None:
        self.last_drawn = np.asarray(s["last_drawn"], np.int64).copy()
        # (a checkpoint from before last_own: its draws are the best record there is)
        self.last_own = np.asarray(s.get("last_own", s["last_drawn"]), np.int64).copy()
        self._cache = None
