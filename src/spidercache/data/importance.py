"""Per-sample importance from the training loss, kept per sample id across epochs.

Every step reports the served ids and their losses (and, optionally, their
penultimate-layer embeddings). ``SampleImportance`` turns them into one score
per sample:

* ``kind="loss"``: the raw per-sample loss.
* ``kind="gradnorm"``: a proxy for the norm of the last layer's gradient,
  ``(1 - exp(-loss)) * ||embedding||``. For softmax cross-entropy the
  gradient of the last linear layer for one sample is ``(p - e_y) h^T``, whose
  norm is ``||p - e_y|| * ||h||``; ``||p - e_y||`` lies between ``1 - p_y``
  and ``sqrt(2) (1 - p_y)`` and ``p_y = exp(-loss)``, so the proxy needs only
  what the forward pass already produced (no extra backward pass).

Observations made during an epoch are gathered in a *pending* table and only
folded in at ``commit()`` (epoch start): the sampler and the cache read
scores that do not move within an epoch, so every DDP rank replaying the same
decisions agrees. Across epochs a sample's score is an exponential moving
average (``smoothing`` is the weight of the old value), because one epoch's
loss of one sample is noisy (augmentation, dropout, where in the epoch it
came). A sample never observed gets a *prior*: the mean score of the observed
ones, never zero, so it keeps its chance to be sampled and cached.

NaN or infinite losses (a diverging step, an fp16 overflow) are dropped with a
warning, once per table; they never reach a score.
"""

from __future__ import annotations

import warnings

import numpy as np

IMPORTANCE_KINDS = ("loss", "gradnorm")


class SampleImportance:
    """Smoothed per-sample importance scores over ``n`` sample ids."""

    def __init__(self, n: int, kind: str = "loss", smoothing: float = 0.5, prior: float = 1.0) -> None:
        if kind not in IMPORTANCE_KINDS:
            raise ValueError(f"importance kind must be one of {IMPORTANCE_KINDS}, got {kind!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.n = int(n)
        self.kind = kind
        self.smoothing = float(smoothing)
        self.score = np.full(self.n, float(prior), np.float64)  # what readers see
        self.observed = np.zeros(self.n, np.bool_)  # ever had a finite observation
        self._sum = np.zeros(self.n, np.float64)  # pending: sum and count this epoch
        self._cnt = np.zeros(self.n, np.int32)
        self.prior = float(prior)
        self.nonfinite_dropped = 0
        self._warned = False

    @property
    def seen(self) -> bool:
        return bool(self.observed.any())

    def observe(self, ids: np.ndarray, losses: np.ndarray, embeddings: np.ndarray | None = None) -> None:
        """Record one step's per-sample losses (pending until ``commit``)."""
        ids = np.asarray(ids, np.int64).ravel()
        values = np.asarray(losses, np.float64).ravel()
        if ids.size != values.size:
            raise ValueError(f"{ids.size} ids but {values.size} losses")
        if self.kind == "gradnorm" and embeddings is not None and len(embeddings) == ids.size:
            emb = np.asarray(embeddings, np.float64).reshape(ids.size, -1)
            with np.errstate(over="ignore", invalid="ignore"):
                values = (1.0 - np.exp(-np.clip(values, 0.0, None))) * np.linalg.norm(emb, axis=1)
        ok = np.isfinite(values) & (ids >= 0) & (ids < self.n)
        bad = int(ids.size - ok.sum())
        if bad:
            self.nonfinite_dropped += bad
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"importance: dropped {bad} non-finite loss value(s) (NaN/inf); those samples keep "
                    "their previous score. Check the learning rate if this repeats.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        # np.add.at: a sample may appear twice in a batch (sampling with replacement)
        np.add.at(self._sum, ids[ok], np.maximum(values[ok], 0.0))
        np.add.at(self._cnt, ids[ok], 1)

    def commit(self) -> np.ndarray:
        """Fold this epoch's observations into the scores; returns the ids that changed."""
        changed = np.flatnonzero(self._cnt > 0)
        if changed.size:
            mean = self._sum[changed] / self._cnt[changed]
            first = ~self.observed[changed]
            old = self.score[changed]
            a = self.smoothing
            self.score[changed] = np.where(first, mean, a * old + (1.0 - a) * mean)
            self.observed[changed] = True
            self.prior = float(self.score[self.observed].mean())
        # Unobserved samples follow the prior (the mean of what was observed).
        self.score[~self.observed] = self.prior
        self._sum[changed] = 0.0
        self._cnt[changed] = 0
        return changed

    def normalized(self) -> np.ndarray:
        """Scores divided by their mean (1.0 = average importance); all-equal or all-zero gives ones."""
        m = float(self.score.mean()) if self.n else 0.0
        if not np.isfinite(m) or m <= 0:
            return np.ones(self.n, np.float64)
        return self.score / m

    def state_dict(self) -> dict:
        return {
            "score": self.score.copy(),
            "observed": self.observed.copy(),
            "prior": self.prior,
            "sum": self._sum.copy(),
            "cnt": self._cnt.copy(),
        }

    def load_state_dict(self, s: dict) -> None:
        self.score = np.asarray(s["score"], np.float64).copy()
        self.observed = np.asarray(s["observed"], np.bool_).copy()
        self.prior = float(s["prior"])
        self._sum = np.asarray(s["sum"], np.float64).copy()
        self._cnt = np.asarray(s["cnt"], np.int32).copy()
