"""The interface every training-data policy implements: an engine policy with training hooks.

``TrainingPolicy`` is an ``engine.policies.base.Policy``: ``access(ids) ->
hits``, ``contains``, ``remove``, ``resident_ids``, ``size``, ``stats`` and
``state_bytes`` answer as every engine policy's do, so the simulator replays a
training policy and the policy contract suite checks both kinds as one family.
It adds what a training job needs on top:

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

``access`` is ``lookup`` seen through the engine protocol: a stand-in is not a
hit, the batch's evicted ids go to ``on_evict``. A training policy decides its
own admission (no ``admit`` mask) and keeps the capacity it was built with.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from ...checks import at_least, between, flag_value, positive
from ...engine.plan import Lookup
from ...engine.policies.base import EvictionCallback, Policy, PolicyStats
from ...errors import UserError

# Given to every policy by the training loop (data/train.py); only spider's shared split uses them.
CONTEXT_OPTIONS = ("ratio_address", "dist")
_NOT_OPTIONS = ("self", "n_samples", "capacity", "labels", "seed", "on_evict")


def option_names(cls: type) -> list[str]:
    """The options (``--policy-option`` names) a training policy class takes."""
    names: set[str] = set()
    for k in cls.__mro__:
        init = k.__dict__.get("__init__")
        if init is None or not issubclass(k, TrainingPolicy):
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _NOT_OPTIONS:
                names.add(p.name)
    return sorted(names - set(CONTEXT_OPTIONS))


def checked_options(
    who: str, counts: dict, shares: dict, flags: dict, positives: dict | None = None
) -> list[bool]:
    """Counts ``>= 1``, shares in ``0..1``, ``positives`` ``> 0`` (NaN too is refused), ``flags``
    parsed (``checks.flag_value``); out of range is the user's mistake, one line naming the
    policy, not a value to clip."""
    positives = positives or {}
    try:
        at_least(1, **counts)
        between(0.0, 1.0, **shares)
        positive(**positives)
        return [flag_value(k, v) for k, v in flags.items()]
    except UserError as exc:
        raise UserError(f"{who}: {exc}") from None
    except TypeError:  # a text where a number belongs
        numbers = dict.fromkeys([*counts, *shares, *positives])
        raise UserError(f"{who}: {', '.join(numbers)} must be numbers") from None


def check_class_labels(labels: np.ndarray) -> None:
    """UserError unless every label is a class index (>= 0): -1 and the like mean "no label"."""
    if labels.size and int(labels.min()) < 0:
        i = int(np.argmin(labels))
        raise UserError(
            f"labels must be class indices >= 0, got {int(labels[i])} (sample {i}); "
            "a policy that substitutes by label, and training, need every sample's class"
        )


__all__ = ["Lookup", "TrainingPolicy", "loss_rank_scores"]


class TrainingPolicy(Policy):
    """Base class: uniform order, no cache. Subclasses override what they change.

    ``Policy.__init__`` is not called: its per-id kernel arrays and its rule that a
    capacity is at least 1 belong to the numba policies (a training job may cache
    nothing); the state the inherited methods read is set here.
    """

    name: ClassVar[str] = "base"
    # The training loop gathers embeddings (and all-gathers them under DDP) only when asked.
    wants_embeddings: ClassVar[bool] = False
    # Policies that substitute a miss by a resident sample of the same label need the labels.
    needs_labels: ClassVar[bool] = False

    def __init__(
        self,
        n_samples: int,
        capacity: int,
        labels: np.ndarray | None = None,
        seed: int = 0,
        *,
        on_evict: EvictionCallback | None = None,
        **options: Any,
    ) -> None:
        if n_samples < 1:
            raise ValueError("a policy needs at least one sample")
        self.n = int(n_samples)
        self._capacity = max(0, min(int(capacity), self.n))
        self.admission, self.on_evict, self.by_bytes = None, on_evict, False
        self._used = np.zeros(1, np.int64)
        self._stats = PolicyStats()
        self.labels = None if labels is None else np.asarray(labels, np.int64)
        if self.labels is not None and self.needs_labels:  # others only carry them (-1: unlabelled is fine)
            check_class_labels(self.labels)
        self.seed = int(seed)
        self.epoch = 0
        unknown = sorted(set(options) - set(CONTEXT_OPTIONS))
        if unknown:  # a typo must not leave the default in place silently
            valid = ", ".join(option_names(type(self))) or "none"
            raise UserError(f"{self.name}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
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

    def _gone(self, evicted) -> np.ndarray:
        """The ids a batch pushed out that are not resident again at its end.

        An id evicted (by this batch, or pending from the epoch start) and admitted again by the
        same batch must not be deleted: the store's deletes run after the batch's writes."""
        ev = np.asarray(evicted, np.int64)
        return ev[~self.contains(ev)] if ev.size else ev

    # ------------------------------------------- the engine policy protocol
    @property
    def capacity(self) -> int:
        return self._capacity

    def access(
        self, ids: np.ndarray, admit: np.ndarray | None = None, sizes: np.ndarray | None = None
    ) -> np.ndarray:
        """Decide a batch; return which requests were true hits (stand-ins are not hits)."""
        if admit is not None or sizes is not None:
            raise ValueError(f"training policy {self.name!r} decides its own admission and has no sizes")
        ids = np.asarray(ids, np.int64)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.n):
            raise ValueError(f"training policy {self.name!r} holds ids 0..{self.n - 1}")
        lk = self.lookup(ids)
        hits = lk.hit & ~lk.substituted
        st = self._stats
        st.requests += ids.size
        st.hits += int(hits.sum())
        st.admissions += int(lk.admit.sum())
        st.evictions += int(lk.evicted.size)
        if self.on_evict is not None and lk.evicted.size:
            self.on_evict(np.asarray(lk.evicted, np.int64).copy())
        return hits

    def remove(self, ids: np.ndarray) -> int:
        """Drop ids (their value was lost, e.g.); returns how many were resident. Not an eviction."""
        ids = np.unique(np.asarray(ids, np.int64))
        ids = ids[(ids >= 0) & (ids < self.n)]
        gone = ids[self.contains(ids)]
        if gone.size:
            self._discard(gone)
        return int(gone.size)

    def _discard(self, ids: np.ndarray) -> None:
        """Forget the resident, distinct ``ids`` (every policy that keeps anything resident writes it)."""
        raise NotImplementedError(f"{type(self).__name__} keeps ids resident but cannot drop them")

    def resize(self, capacity: int) -> None:
        raise ValueError(f"training policy {self.name!r} keeps the capacity it was built with")

    def reserve(self, n_ids: int) -> None:
        if n_ids > self.n:
            raise ValueError(f"training policy {self.name!r} holds ids 0..{self.n - 1}, not {n_ids - 1}")

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
        return {"epoch": self.epoch, "resident": self.resident()}

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
