"""``spider`` (SpiderCache): importance sampling, an importance cache and a homophily cache.

* Score per sample: smoothed loss importance (``data/importance.py``) times
  SpiderCache's homophily weight (``data/homophily.py``), each divided by its
  mean so neither scale dominates. Committed at epoch start only.
* Order: importance sampling with a temperature, a uniform floor and a hard
  visit bound (``data/importance_sampling.py``); ``spider-nois`` keeps a
  uniform permutation instead.
* Level 0, the importance cache (``ratio`` of the capacity): keeps the
  highest scores; a miss is admitted if there is room or it beats the lowest
  resident score (which is evicted).
* Level 1, the homophily cache (the rest): one representative per cluster of
  look-alike same-label samples, valued by its cluster's size. An unimportant
  member of a cluster without a representative that is read from storage
  becomes the representative. A miss of an unimportant sample is *substituted*
  (counted apart from hits) by a random cached representative of its own or
  its same-label neighbours' clusters, else (``stand_in="label"``) by a random
  level-1 resident of its label. Only samples below the top ``protect`` share
  of scores are ever substituted, and a sample the sampler marked overdue
  never is. A representative stands in at most ``rep_uses`` times per epoch;
  with ``rotate`` the next member of its cluster read from storage then takes
  its place, so stand-ins keep changing; a ``refresh`` share of representatives
  is also dropped each epoch. Every stand-in has the requested sample's label.
* Loss weights (``batch_loss_weights``): a stand-in's loss counts
  ``sub_weight`` of a real sample's; optionally the importance-sampling
  correction. Scaled to mean 1 per batch.
* The split between the levels adapts each epoch from their measured
  *marginal* per-slot gain (``data/adaptive_split.py``), shared through Redis
  under DDP. ``spider-noh`` has no homophily level (all capacity to level 0,
  no substitution).

Why these choices (see docs/spider.md): a quick study found that substituting
the lowest-loss misses with their *nearest* cached sample while the cache held
the *highest-loss* samples cost 2-9 accuracy points, while random same-label
stand-ins cost ~0.4. What hurts is training on the same few images over and
over, so stand-ins here are typical samples (never the importance cache),
drawn at random, capped in uses and rotated.
"""

from __future__ import annotations

import random
import time
import warnings
from typing import Any

import numpy as np

from ...checks import at_least
from ...errors import UserError
from ..adaptive_split import AdaptiveSplit
from ..homophily import HomophilyGraph
from ..importance import SampleImportance
from ..importance_sampling import ImportanceSampler
from .base import TrainingPolicy, checked_options
from .scored import ScoreCache
from .spider_serve import SpiderServe

# How a stand-in is chosen for a substitutable miss (docs/spider.md, "Stand-ins"):
#   nearest:       own cluster's representative, else the first same-label neighbour's (the first design)
#   neighbourhood: a random one among the representatives of the own and the neighbours' clusters
#   label:         as neighbourhood, else a random level-1 resident of the same label
STAND_IN_RULES = ("nearest", "neighbourhood", "label")


class SpiderPolicy(SpiderServe, TrainingPolicy):
    name = "spider"
    needs_labels = True  # look-alikes must share the label of the sample they stand in for
    wants_embeddings = True
    use_homophily = True
    use_importance_sampling = True

    def __init__(
        self,
        n_samples: int,
        capacity: int,
        labels=None,
        seed: int = 0,
        *,
        ratio: float = 0.5,
        ratio_min: float = 0.1,
        ratio_max: float = 0.9,
        ratio_step: float = 0.25,
        protect: float = 0.1,
        rep_uses: int = 8,
        refresh: float = 0.25,
        stand_in: str = "label",
        rotate: bool = True,
        sub_weight: float = 0.5,
        is_correction: bool = False,
        k: int = 16,
        proj_dim: int = 16,
        upkeep_fraction: float = 0.1,
        importance: str = "loss",
        smoothing: float = 0.5,
        homophily_weight: bool = True,
        temperature: float = 2.0,
        floor: float = 0.3,
        max_gap: int = 3,
        ready_after: int = 8,
        ratio_address: tuple[str, int] | None = None,
        dist: Any = None,
        ratio_key: str | None = None,
        stats_sink: list | None = None,
        **options: Any,
    ) -> None:
        super().__init__(n_samples, capacity, labels, seed, **options)
        self._check_options(protect, stand_in, sub_weight)
        flags = checked_options(
            "spider",
            counts=dict(rep_uses=rep_uses, k=k, proj_dim=proj_dim),
            shares=dict(ratio=ratio, refresh=refresh, upkeep_fraction=upkeep_fraction),
            flags=dict(rotate=rotate, is_correction=is_correction, homophily_weight=homophily_weight),
        )
        self.rotate, self.is_correction, self.homophily_weight = flags
        at_least(0, ready_after=ready_after)
        self.rep_uses, self.refresh, self.ready_after = int(rep_uses), float(refresh), int(ready_after)
        self.stats_sink = stats_sink
        try:  # a bad --policy-option value is the user's mistake: one line, not a traceback
            self.imp = SampleImportance(self.n, kind=importance, smoothing=smoothing)
            self.sampler = ImportanceSampler(self.n, temperature, floor, max_gap, seed=self.seed)
            AdaptiveSplit(ratio, ratio_min, ratio_max, ratio_step)
        except ValueError as exc:
            raise UserError(f"spider: {exc}") from None
        hom = self._homophily_wanted()
        self.homophily_on = hom
        # The training loop gathers embeddings only for policies that use them.
        self.wants_embeddings = hom or importance == "gradnorm"
        labels_arr = self.labels if self.labels is not None else np.zeros(self.n, np.int64)
        self.graph = (
            HomophilyGraph(
                labels_arr, k=k, proj_dim=proj_dim, upkeep_fraction=upkeep_fraction, seed=self.seed
            )
            if hom
            else None
        )
        rank = int(getattr(dist, "rank", 0) or 0)
        world = int(getattr(dist, "world", 1) or 1)
        key = ratio_key or f"spidercache:spider:ratio:{self.n}:{self.capacity}:{self.seed}"
        self.split = AdaptiveSplit(
            ratio if hom else 1.0,
            ratio_min if hom else 1.0,
            ratio_max if hom else 1.0,
            ratio_step,
            address=ratio_address if (hom and world > 1) else None,
            rank=rank,
            world=world,
            key=key,
        )
        self._init_state()

    def _check_options(self, protect: float, stand_in: str, sub_weight: float) -> None:
        if not 0.0 <= float(protect) <= 1.0:
            raise UserError(f"spider: protect must be in [0, 1], got {protect}")
        self.protect = float(protect)
        if stand_in not in STAND_IN_RULES:
            raise UserError(f"spider: stand_in must be one of {STAND_IN_RULES}, got {stand_in!r}")
        self.stand_in_rule = stand_in
        if not 0.0 <= float(sub_weight) <= 1.0:
            raise UserError(f"spider: sub_weight must be in [0, 1], got {sub_weight}")
        self.sub_weight = float(sub_weight)

    def _homophily_wanted(self) -> bool:
        """Whether the homophily cache runs: it needs labels; warn about what labels cannot give."""
        hom = self.use_homophily
        if hom and self.labels is None:
            warnings.warn(
                "spider: no labels given, so no look-alike can be checked for its label; "
                "the homophily cache is off",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        if hom:
            counts = np.bincount(self.labels)
            lonely = np.flatnonzero(counts == 1)
            if lonely.size:
                warnings.warn(
                    f"spider: {lonely.size} class(es) have a single sample (e.g. label {int(lonely[0])}); "
                    "such samples are never substituted",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return hom

    def _init_state(self) -> None:
        """Per-sample arrays and the two score caches, sized by the split."""
        self.score = np.ones(self.n, np.float64)
        self.substitutable = np.zeros(self.n, np.bool_)
        c0 = self._level0_capacity()
        self.icache = ScoreCache(self.n, c0)
        self.hcache = ScoreCache(self.n, self.capacity - c0)
        self.cluster = np.arange(self.n, dtype=np.int64)
        self.cluster_size = np.ones(self.n, np.int64)
        self.rep_of = np.full(self.n, -1, np.int64)  # cluster -> cached representative
        self.rep_cluster = np.full(self.n, -1, np.int64)  # representative -> its cluster
        self.uses = np.zeros(self.n, np.int32)
        self.ready_at = np.zeros(self.n, np.int64)  # lookup count after which a rep may stand in
        self._lookups = 0
        self._rep_dirty: set[int] = set()  # clusters whose representative changed in this batch
        self._views: tuple = ()  # memoryviews of the state a lookup reads (set by each lookup)
        self._pending_evict: list[int] = []
        self._gain = np.zeros(2, np.float64)  # [level-0 hits, level-1 hits + substitutions] this epoch
        self.served_count = np.zeros(self.n, np.int32)  # requests each resident id served this epoch
        # Level-1 residents by label, for drawing a random same-label stand-in
        # (lazy: an entry no longer resident is dropped when a draw meets it).
        self._pool: dict[int, list[int]] = {}
        self._in_pool = np.zeros(self.n, np.bool_)
        self._pick = random.Random(self.seed * 7919 + 17)
        self._slots = (self.icache.capacity, self.hcache.capacity)
        self.upkeep_seconds = 0.0  # index + score work, this epoch
        self.epoch_stats: list[dict] = []

    # ------------------------------------------------------------ helpers
    def _level0_capacity(self) -> int:
        return int(round(self.split.ratio * self.capacity))

    def _drop_rep(self, r: int) -> None:
        c = self.rep_cluster[r]
        if c >= 0 and self.rep_of[c] == r:
            self.rep_of[c] = -1
            self._rep_dirty.add(int(c))  # (lookup re-reads a representative that changed in its batch)
        self.rep_cluster[r] = -1

    def _evict(self, cache: ScoreCache, r: int) -> None:
        if cache.discard(r):
            self._pending_evict.append(r)
        if cache is self.hcache:
            self._drop_rep(r)

    def _shrink_level(self, cache: ScoreCache, capacity: int) -> None:
        cache.capacity = capacity
        while cache.size > capacity:
            cache._clean_top()
            _, victim = cache._heap[0]
            self._evict(cache, int(victim))

    # ------------------------------------------------------------ sampler
    def begin_epoch(self, epoch: int) -> None:
        # The loader may announce the same epoch twice (start_epoch, then epoch()):
        # commit, re-index and re-split once per epoch only.
        if getattr(self, "_begun", None) == int(epoch):
            return
        self._begun = int(epoch)
        t0 = time.perf_counter()
        prev_slots, prev_gain = self._slots, self._gain.copy()
        had_epoch = bool(prev_gain.sum() > 0)
        # Marginal gain of each level: what its least-used quarter of slots served
        # (read before the re-clustering below drops representatives).
        marginal = (
            AdaptiveSplit.marginal_gain(self.served_count[self.icache.ids()], self.icache.capacity),
            AdaptiveSplit.marginal_gain(self.served_count[self.hcache.ids()], self.hcache.capacity),
        )
        super().begin_epoch(epoch)
        self.imp.commit()
        if self.graph is not None:
            self.graph.refresh()
        imp = self.imp.normalized()
        if self.graph is not None and self.homophily_weight and self.graph.indexed.any():
            w = self.graph.weights()
            imp = imp * (w / max(float(w.mean()), 1e-12))
        self.score = np.nan_to_num(imp, nan=1.0, posinf=1.0, neginf=1.0)
        # Protected = the top `protect` share by score; ties broken at random so
        # that all-equal losses still protect exactly that share.
        n_protect = int(round(self.protect * self.n))
        tie = self.rng.random(self.n)
        rank_order = np.lexsort((tie, -self.score))
        self.substitutable[:] = True
        self.substitutable[rank_order[:n_protect]] = False
        # The split between levels, from the gains of the epoch that just ended.
        if self.homophily_on and had_epoch:
            self.split.update(
                epoch,
                marginal[0],
                marginal[1],
                average=(prev_gain[0] / max(prev_slots[0], 1), prev_gain[1] / max(prev_slots[1], 1)),
            )
        self._apply_split()
        self.icache.rebuild(self.score)
        if self.graph is not None:
            self._recluster()
        self.uses[:] = 0
        self.served_count[:] = 0
        self._gain[:] = 0.0
        self._slots = (self.icache.capacity, self.hcache.capacity)
        self.upkeep_seconds = time.perf_counter() - t0
        self._report(epoch)

    def _apply_split(self) -> None:
        c0 = self._level0_capacity()
        c1 = self.capacity - c0
        if c0 < self.icache.capacity:
            self._shrink_level(self.icache, c0)
        if c1 < self.hcache.capacity:
            self._shrink_level(self.hcache, c1)
        self.icache.capacity, self.hcache.capacity = c0, c1

    def _recluster(self) -> None:
        cluster, reps = self.graph.clusters()
        self.cluster = cluster
        self.cluster_size = np.bincount(cluster, minlength=reps.size).astype(np.int64)
        self.rep_of = np.full(max(reps.size, 1), -1, np.int64)
        self.rep_cluster[:] = -1
        resident = self.hcache.ids()
        # Drop a `refresh` share of the representatives so stand-ins change between epochs.
        if resident.size and self.refresh > 0:
            drop = self.rng.random(resident.size) < self.refresh
            for r in resident[drop].tolist():
                self.hcache.discard(r)
                self._pending_evict.append(r)
            resident = resident[~drop]
        # A cached sample keeps serving as its (new) cluster's representative; a
        # second one in the same cluster is surplus and leaves.
        for r in resident.tolist():
            c = cluster[r]
            if self.rep_of[c] < 0 and self.cluster_size[c] > 1:
                self.rep_of[c] = r
                self.rep_cluster[r] = c
            else:
                self.hcache.discard(r)
                self._pending_evict.append(r)
        value = self.cluster_size[cluster].astype(np.float64)
        self.hcache.rebuild(value)
        self._pool = {}
        self._in_pool[:] = False
        for r in self.hcache.ids().tolist():
            self._pool_add(r)

    def _pool_add(self, r: int) -> None:
        if not self._in_pool[r]:
            self._in_pool[r] = True
            self._pool.setdefault(int(self.labels[r]), []).append(r)

    def order(self, epoch: int) -> np.ndarray:
        if not self.use_importance_sampling:
            self.sampler.must_serve[:] = False
            return super().order(epoch)
        return self.sampler.order(epoch, self.score if self.imp.seen else None)

    def update(self, sample_ids, losses, embeddings=None) -> None:
        ids = np.asarray(sample_ids, np.int64)
        if ids.size == 0:
            return
        t0 = time.perf_counter()
        self.imp.observe(ids, losses, embeddings)
        if self.graph is not None and embeddings is not None:
            self.graph.observe(ids, embeddings)
        dt = time.perf_counter() - t0
        self.upkeep_seconds += dt
        if self.epoch_stats:  # the epoch's report row (shared with stats_sink) counts this step's work too
            self.epoch_stats[-1]["upkeep_seconds"] += dt

    def loss_weights(self, ids: np.ndarray) -> np.ndarray:
        """Importance-sampling correction for the requested ids (ones without importance sampling)."""
        ids = np.asarray(ids, np.int64)
        if not self.use_importance_sampling or not self.imp.seen:
            return np.ones(ids.size)
        return self.sampler.loss_weights(ids)

    def batch_loss_weights(self, requested: np.ndarray, substituted: np.ndarray) -> np.ndarray | None:
        """Per-sample loss weights for one batch, or None when plain averaging is meant.

        ``is_correction``: ``1/(n p_i)`` of the *requested* id (what was drawn).
        ``sub_weight``: a substituted sample's loss counts that much of a real one.
        The weights are scaled to mean 1 over the batch, so the step size stays
        that of ``none`` and only the mix between samples changes.
        """
        if not self.is_correction and self.sub_weight == 1.0:
            return None
        w = self.loss_weights(requested) if self.is_correction else np.ones(len(requested))
        w = np.where(np.asarray(substituted, np.bool_), w * self.sub_weight, w)
        m = float(w.mean()) if w.size else 0.0
        return w / m if m > 0 else np.ones(len(requested))

    # -------------------------------------------------------------- cache


class SpiderNoHomophily(SpiderPolicy):
    """Ablation: importance sampling and the importance cache only (no substitution)."""

    name = "spider-noh"
    use_homophily = False
    needs_labels = False  # it never substitutes, so no stand-in's label needs checking


class SpiderNoImportanceSampling(SpiderPolicy):
    """Ablation: uniform order; both cache levels as in ``spider``."""

    name = "spider-nois"
    use_importance_sampling = False
