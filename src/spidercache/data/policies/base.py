"""The interface every training-data policy implements.

A training policy is two things that must agree: the *sampler* (which ids an
epoch requests, in what order) and the *cache* (which ids are resident, what
is admitted, what is evicted, and which resident sample may stand in for a
miss). It never touches values: the loader turns its decisions into reads and
writes on a store, so the same policy runs over shared memory, LMDB, Redis or
the cache server.

Hooks, in the order the loader and the training loop call them:

* ``begin_epoch(epoch)``: commit the scores gathered during the last epoch.
  Scores used by ``order`` and ``lookup`` change only here (iCache's "shadow"
  scores), so every DDP rank replaying the same lookups reaches the same
  cache state however its prefetching is timed.
* ``order(epoch) -> ids``: the global request order of the epoch (the loader
  shards it between ranks). Length may differ from N (iCache: ~0.8 N).
* ``lookup(ids) -> Lookup``: decide one batch, in request order.
* ``update(sample_ids, losses, embeddings=None)``: after each training step,
  with the ids whose data was actually trained on (the *served* ids), their
  per-sample losses and, when ``wants_embeddings``, their penultimate-layer
  embeddings from the same forward pass.
* ``state_dict()`` / ``load_state_dict()``: checkpoints and ``--resume``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...engine.plan import Lookup

__all__ = ["Lookup", "TrainingPolicy", "loss_rank_scores"]


class TrainingPolicy:
    """Base class: uniform order, no cache. Subclasses override what they change."""

    name: ClassVar[str] = "base"
    # The training loop gathers embeddings (and all-gathers them under DDP) only when asked.
    wants_embeddings: ClassVar[bool] = False
    # Policies that substitute a miss by a resident sample of the same label need the labels.
    needs_labels: ClassVar[bool] = False

    def __init__(
        self, n_samples: int, capacity: int, labels: np.ndarray | None = None, seed: int = 0, **options: Any
    ) -> None:
        if n_samples < 1:
            raise ValueError("a policy needs at least one sample")
        self.n = int(n_samples)
        self.capacity = max(0, min(int(capacity), self.n))
        self.labels = None if labels is None else np.asarray(labels, np.int64)
        self.seed = int(seed)
        self.epoch = 0
        self.options = options
        # Lookups draw stand-ins from this generator; reseeded per epoch so
        # that ranks replaying the same lookups agree.
        self.rng = np.random.default_rng(self.seed)

    # ------------------------------------------------------------ sampler
    def begin_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.rng = np.random.default_rng([self.seed, self.epoch, 1])

    def order(self, epoch: int) -> np.ndarray:
        """Uniform random permutation, the same on every rank for a given epoch."""
        return np.random.default_rng([self.seed, int(epoch), 0]).permutation(self.n).astype(np.int64)

    def update(
        self, sample_ids: np.ndarray, losses: np.ndarray, embeddings: np.ndarray | None = None
    ) -> None:
        """Per-sample feedback after a step; the base policy ignores it."""

    # -------------------------------------------------------------- cache
    def lookup(self, ids: np.ndarray) -> Lookup:
        return Lookup.all_miss(np.asarray(ids, np.int64))

    def resident(self) -> np.ndarray:
        """Ids the policy believes are cached (sorted)."""
        return np.empty(0, np.int64)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Mask of which ids are resident now (subclasses answer without building ``resident()``)."""
        return np.isin(np.asarray(ids, np.int64), self.resident())

    # ------------------------------------------- the engine policy protocol
    # (what ``engine.policies.base.Policy`` offers and trace replays call)
    def access(self, ids: np.ndarray) -> np.ndarray:
        """Decide a batch; return which requests were true hits (stand-ins are not hits)."""
        lk = self.lookup(np.asarray(ids, np.int64))
        return lk.hit & ~lk.substituted

    def resident_ids(self) -> np.ndarray:
        return self.resident()

    @property
    def size(self) -> int:
        return int(self.resident().size)

    def state_bytes(self) -> int:
        """Bytes of the policy's array state (what the simulator reports per policy)."""
        return int(sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray)))

    # -------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state.get("epoch", 0))

    def describe(self) -> str:
        return f"{self.name}(capacity={self.capacity}/{self.n})"


def loss_rank_scores(losses: np.ndarray, offset: float = 10.0) -> np.ndarray:
    """SHADE's batch-rank score: rank samples by loss within the batch, score log(rank + offset).

    The lowest loss gets rank 1, the highest rank len(batch); NaN losses rank
    lowest. Ties share the lower rank so that all-equal losses give equal scores.
    """
    losses = np.nan_to_num(np.asarray(losses, np.float64), nan=-np.inf)
    order = np.argsort(losses, kind="stable")
    ranks = np.empty(losses.size, np.float64)
    sorted_l = losses[order]
    # first index of each run of equal values -> tie rank
    first = np.r_[0, np.flatnonzero(np.diff(sorted_l) != 0) + 1]
    run_start = np.repeat(first, np.diff(np.r_[first, losses.size]))
    ranks[order] = run_start + 1
    return np.log(ranks + offset)
