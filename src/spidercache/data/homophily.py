"""The homophily graph: an HNSW index over the model's own penultimate embeddings.

SpiderCache's second idea is that many training samples look alike: a sample
whose nearest neighbours (in the model's embedding space) mostly share its
label is redundant, and a cached look-alike can stand in for it when it
misses. This module keeps that graph up to date cheaply:

* ``observe(ids, embeddings)`` records the embeddings the training forward
  pass already produced (no extra pass over the data).
* ``refresh()`` (epoch start) folds them into an ``hnswlib`` index *without a
  full rebuild*: never-indexed ids are added, and at most ``upkeep_fraction``
  of the indexed ids, those whose embedding drifted most since they were
  indexed, are re-inserted in place (``add_items`` on an existing label
  updates it). Only those ids are re-queried; every other sample keeps its
  neighbour list from an earlier epoch. When the embedding dimension changes
  (another network, a resumed run with another head) the index is rebuilt
  and a warning says so.
* For each indexed sample: its ``k`` nearest neighbours, ``n_same`` (same
  label) and ``n_other`` (other label), and SpiderCache's weight
  ``w = log(1 + log(1/(n_same+1) + 1) + n_other/k)``.
* ``clusters()``: groups of look-alike same-label samples, each with one
  representative, for the homophily cache.

What changed from SpiderCache's code, and why (see docs/spider.md):

1. Embeddings are randomly projected to ``proj_dim`` (16) dimensions and
   L2-normalised before indexing. Normalising makes "look-alike" independent
   of the embedding's scale, which grows during training: the original
   absolute test ``exp(-0.01 d) >= 0.98`` counts every neighbour early in
   training and none later. The projection (Johnson-Lindenstrauss) keeps
   neighbourhoods while making insertions and queries several times cheaper,
   which is what keeps index upkeep a few percent of an epoch.
2. Neighbours are the ``k`` nearest (the policy uses 16) instead of 500 filtered by
   that threshold, so ``n_same + n_other = k`` and ``n_other / k`` is the
   share of the neighbourhood with another label, as the formula intends.
3. hnswlib runs on one thread, so every DDP rank builds the same graph from
   the same (all-gathered) embeddings and reaches the same decisions.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np


def spider_weight(n_same: np.ndarray, n_other: np.ndarray, k: int) -> np.ndarray:
    """SpiderCache's homophily weight ``log(1 + log(1/(n_same+1) + 1) + n_other/k)``.

    High for a sample with few same-label look-alikes and many other-label
    neighbours (near a class boundary, hard to stand in for); low for one deep
    inside a crowd of its own class (redundant).
    """
    n_same = np.asarray(n_same, np.float64)
    n_other = np.asarray(n_other, np.float64)
    return np.log1p(np.log(1.0 / (n_same + 1.0) + 1.0) + n_other / max(int(k), 1))


@numba.njit(cache=True)
def _greedy_clusters(order, nbrs, nbr_ok, labels, n_indexed_mask):
    """Leader clustering on the same-label kNN graph.

    Visit samples in ``order`` (densest first); an unassigned sample starts a
    cluster and becomes its representative; its same-label neighbours that are
    still unassigned join it. Unindexed samples stay singletons.
    """
    n = labels.size
    cluster = np.full(n, -1, np.int64)
    reps = np.empty(n, np.int64)
    n_clusters = 0
    k = nbrs.shape[1]
    for t in range(order.size):
        i = order[t]
        if cluster[i] >= 0:
            continue
        c = n_clusters
        n_clusters += 1
        reps[c] = i
        cluster[i] = c
        if not n_indexed_mask[i]:
            continue
        for j in range(k):
            if not nbr_ok[i, j]:
                continue
            m = nbrs[i, j]
            if m >= 0 and cluster[m] < 0 and labels[m] == labels[i]:
                cluster[m] = c
    return cluster, reps[:n_clusters].copy()


class HomophilyGraph:
    """kNN structure over per-sample embeddings, maintained incrementally with hnswlib."""

    def __init__(
        self,
        labels: np.ndarray,
        k: int = 10,
        proj_dim: int = 16,
        M: int = 8,
        ef_construction: int = 32,
        ef: int = 32,
        upkeep_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.labels = np.asarray(labels, np.int64)
        self.n = int(self.labels.size)
        self.k = max(1, min(int(k), max(1, self.n - 1)))
        self.proj_dim = int(proj_dim)
        self.M, self.ef_construction, self.ef = int(M), int(ef_construction), int(ef)
        self.upkeep_fraction = float(upkeep_fraction)
        self.seed = int(seed)
        self.dim: int | None = None  # raw embedding dimension
        self._proj: np.ndarray | None = None
        self._pending = np.zeros(0, np.float32)  # latest projected embedding per id (this epoch)
        self._has_pending = np.zeros(self.n, np.bool_)
        self._indexed_vec = np.zeros(0, np.float32)
        self.indexed = np.zeros(self.n, np.bool_)
        self.nbrs = np.full((self.n, self.k), -1, np.int64)
        self.nbr_ok = np.zeros((self.n, self.k), np.bool_)
        self.n_same = np.zeros(self.n, np.int64)
        self.n_other = np.zeros(self.n, np.int64)
        self._index = None
        self.rebuilds = 0
        self.last_upkeep = {"added": 0, "updated": 0, "queried": 0}

    # ---------------------------------------------------------- recording
    def _reset(self, dim: int) -> None:
        if self.dim is not None:
            warnings.warn(
                f"homophily: embedding dimension changed from {self.dim} to {dim}; "
                "rebuilding the neighbour graph from scratch",
                RuntimeWarning,
                stacklevel=3,
            )
            self.rebuilds += 1
        self.dim = int(dim)
        p = min(self.proj_dim, self.dim)
        rng = np.random.default_rng([self.seed, self.dim])
        self._proj = (
            None if p == self.dim else (rng.standard_normal((self.dim, p)) / np.sqrt(p)).astype(np.float32)
        )
        self._pending = np.zeros((self.n, p), np.float32)
        self._has_pending[:] = False
        self._indexed_vec = np.zeros((self.n, p), np.float32)
        self.indexed[:] = False
        self.nbrs[:] = -1
        self.nbr_ok[:] = False
        self.n_same[:] = 0
        self.n_other[:] = 0
        self._index = None

    def observe(self, ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Record embeddings from the training forward pass (latest one per id wins)."""
        ids = np.asarray(ids, np.int64).ravel()
        emb = np.asarray(embeddings, np.float32)
        if ids.size == 0:
            return
        emb = emb.reshape(ids.size, -1)
        if self.dim != emb.shape[1]:
            self._reset(emb.shape[1])
        ok = np.isfinite(emb).all(axis=1) & (ids >= 0) & (ids < self.n)
        if not ok.all():
            warnings.warn(
                f"homophily: ignored {int((~ok).sum())} embedding(s) with NaN/inf values",
                RuntimeWarning,
                stacklevel=2,
            )
        ids, emb = ids[ok], emb[ok]
        if self._proj is not None:
            emb = emb @ self._proj
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.where(norm > 0, norm, 1.0)
        self._pending[ids] = emb
        self._has_pending[ids] = True

    # ------------------------------------------------------------- upkeep
    def _ensure_index(self) -> None:
        if self._index is None:
            import hnswlib

            self._index = hnswlib.Index(space="l2", dim=self._pending.shape[1])
            self._index.init_index(
                max_elements=self.n,
                M=self.M,
                ef_construction=self.ef_construction,
                random_seed=self.seed + 100,
            )
            self._index.set_num_threads(1)  # deterministic: every DDP rank builds the same graph

    def refresh(self) -> dict:
        """Fold the recorded embeddings into the index; re-query what moved. Returns counts."""
        if self.dim is None or not self._has_pending.any():
            self.last_upkeep = {"added": 0, "updated": 0, "queried": 0}
            return self.last_upkeep
        self._ensure_index()
        fresh = self._has_pending
        new = np.flatnonzero(fresh & ~self.indexed)
        old = np.flatnonzero(fresh & self.indexed)
        # In-place updates cost more than inserts in hnswlib (links are repaired),
        # so only the most-drifted share of the indexed ids is re-inserted per epoch.
        budget = int(np.ceil(self.upkeep_fraction * self.n))
        if old.size > budget:
            drift = np.einsum(
                "ij,ij->i",
                self._pending[old] - self._indexed_vec[old],
                self._pending[old] - self._indexed_vec[old],
            )
            old = old[np.argsort(-drift, kind="stable")[:budget]]
            old.sort()
        touched = np.concatenate([new, old])
        if touched.size:
            self._index.add_items(self._pending[touched], touched, num_threads=1)
            self._indexed_vec[touched] = self._pending[touched]
            self.indexed[touched] = True
        self._has_pending[:] = False
        count = self._index.get_current_count()
        kq = min(self.k + 1, count)
        if touched.size and kq >= 2:
            self._index.set_ef(max(self.ef, kq))
            found, _ = self._index.knn_query(self._indexed_vec[touched], k=kq, num_threads=1)
            found = found.astype(np.int64)
            # drop each sample itself from its own list, keep the k nearest others
            nb = np.full((touched.size, self.k), -1, np.int64)
            for row in range(touched.size):
                others = found[row][found[row] != touched[row]][: self.k]
                nb[row, : others.size] = others
            self.nbrs[touched] = nb
            valid = nb >= 0
            same = valid & (self.labels[np.where(valid, nb, 0)] == self.labels[touched][:, None])
            self.nbr_ok[touched] = valid
            self.n_same[touched] = same.sum(1)
            self.n_other[touched] = (valid & ~same).sum(1)
        self.last_upkeep = {"added": int(new.size), "updated": int(old.size), "queried": int(touched.size)}
        return self.last_upkeep

    # ------------------------------------------------------------ answers
    def weights(self) -> np.ndarray:
        """SpiderCache's weight per sample; unindexed samples get the mean of the indexed ones."""
        w = spider_weight(self.n_same, self.n_other, self.k)
        if self.indexed.any():
            w[~self.indexed] = float(w[self.indexed].mean())
        else:
            w[:] = 1.0
        return w

    def clusters(self) -> tuple[np.ndarray, np.ndarray]:
        """``(cluster id per sample, representative per cluster)``; densest samples lead."""
        # The sample with the most same-label neighbours leads first: it is the
        # most typical of its crowd, hence the best stand-in for the others.
        order = np.lexsort((np.arange(self.n), -self.n_same)).astype(np.int64)
        return _greedy_clusters(order, self.nbrs, self.nbr_ok, self.labels, self.indexed)

    def state_dict(self) -> dict:
        return {
            "dim": self.dim,
            "indexed_vec": self._indexed_vec.copy(),
            "indexed": self.indexed.copy(),
            "nbrs": self.nbrs.copy(),
            "nbr_ok": self.nbr_ok.copy(),
            "n_same": self.n_same.copy(),
            "n_other": self.n_other.copy(),
            "pending": self._pending.copy(),
            "has_pending": self._has_pending.copy(),
        }

    def load_state_dict(self, s: dict) -> None:
        if s.get("dim") is None:
            return
        self._reset(int(s["dim"]))
        self.rebuilds = 0
        self._indexed_vec = np.asarray(s["indexed_vec"], np.float32).copy()
        self.indexed = np.asarray(s["indexed"], np.bool_).copy()
        self.nbrs = np.asarray(s["nbrs"], np.int64).copy()
        self.nbr_ok = np.asarray(s["nbr_ok"], np.bool_).copy()
        self.n_same = np.asarray(s["n_same"], np.int64).copy()
        self.n_other = np.asarray(s["n_other"], np.int64).copy()
        if "pending" in s:  # embeddings of the checkpointed epoch, not yet folded in
            self._pending = np.asarray(s["pending"], np.float32).copy()
            self._has_pending = np.asarray(s["has_pending"], np.bool_).copy()
        ids = np.flatnonzero(self.indexed)
        if ids.size:  # rebuild the index from the saved vectors (hnswlib state is not pickled)
            self._ensure_index()
            self._index.add_items(self._indexed_vec[ids], ids, num_threads=1)
