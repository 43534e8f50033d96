"""The serving half of ``spider`` (``policies/spider.py``): lookups, stand-ins, reports, checkpoints.

A mixin of ``SpiderPolicy``, split out to keep each file under 400 lines; it
uses the state that ``SpiderPolicy.__init__`` and ``begin_epoch`` build (the
two caches, the homophily clusters and pools, the sampler's must-serve mask).
"""

from __future__ import annotations

import numpy as np

from .base import Lookup


class SpiderServe:
    """``lookup`` and what it needs, plus the epoch report and the checkpoint state."""

    def _usable(self, r: int, i: int) -> bool:
        v = self._views  # (level-1 resident, uses, ready_at, labels), read as Python ints
        return (
            r >= 0
            and r != i
            and v[0][r]
            and v[1][r] < self.rep_uses
            and v[2][r] <= self._lookups
            and v[3][r] == v[3][i]
        )

    def _stand_in(self, i: int, clusters: list[int], reps: list[int]) -> int:
        """A cached same-label representative for ``i`` with uses left, or -1.

        ``clusters``: ``i``'s cluster, then its same-label neighbours' (in neighbour order);
        ``reps``: their representatives when the batch began (re-read if one changed since)."""
        if self._rep_dirty and not self._rep_dirty.isdisjoint(clusters):
            size = self.rep_of.size
            reps = [int(self.rep_of[c]) if c < size else -1 for c in clusters]
        if self.stand_in_rule == "nearest":
            for r in reps:
                if self._usable(r, i):
                    return r
            return -1
        cands = [r for r in set(reps) if self._usable(r, i)]
        if cands:
            return cands[self._pick.randrange(len(cands))] if len(cands) > 1 else cands[0]
        if self.stand_in_rule == "label":
            return self._random_same_label(i)
        return -1

    def _random_same_label(self, i: int, tries: int = 8) -> int:
        """A random level-1 resident with ``i``'s label and uses left, or -1."""
        pool = self._pool.get(self._views[3][i])
        for _ in range(tries):
            if not pool:
                return -1
            k = self._pick.randrange(len(pool))
            r = pool[k]
            if not self._views[0][r]:  # left level 1 since it was pooled: drop the entry
                pool[k] = pool[-1]
                pool.pop()
                self._in_pool[r] = False
                continue
            if self._usable(r, i):
                return r
        return -1

    def lookup(self, ids: np.ndarray) -> Lookup:
        """Decide one batch in request order.

        What no decision of the batch can change is read array-at-a-time: who may be
        substituted, each request's cluster and same-label neighbours' clusters and their
        representatives; hit counts are added once at the end. What a decision changes
        (residents, representatives, uses, the stand-in draws) is walked request by request,
        as the rules are sequential: a miss admitted or a representative rotated out changes
        what the next request finds."""
        ids = np.asarray(ids, np.int64)
        n = ids.size
        self._lookups += 1
        served = ids.copy()
        hit, sub, admit = np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        level = np.zeros(n, np.int8)
        evicted = self._pending_evict
        self._pending_evict = []
        self._rep_dirty = set()
        hom = self.graph is not None and self.hcache.capacity > 0
        # The per-id state the walk reads, as memoryviews (the same memory; an item is a Python int).
        hres0, hres1, uses = (
            memoryview(self.icache.resident),
            memoryview(self.hcache.resident),
            memoryview(self.uses),
        )
        self._views = (hres1, uses, memoryview(self.ready_at), memoryview(self.labels)) if hom else ()
        may_sub = self.substitutable[ids] if hom else np.zeros(n, np.bool_)
        if hom and self.use_importance_sampling:
            may_sub &= ~self.sampler.must_serve[ids]
        clusters, reps, counts = self._neighbour_reps(ids[may_sub])
        row = (np.cumsum(may_sub) - 1).tolist()  # request -> its row in clusters / reps
        may_sub = may_sub.tolist()
        fresh: set[int] = set()  # admitted by this batch: still on its way into the store
        for k, i in enumerate(ids.tolist()):
            if i in fresh:
                # Requested twice in one batch (sampling with replacement). Under DDP
                # the two requests may sit on different ranks, and the write of the
                # first may not have landed when the second reads: read it again.
                continue
            if hres0[i] or hres1[i]:
                hit[k] = True
                level[k] = 0 if hres0[i] else 1
                continue
            if may_sub[k]:
                m = row[k]
                j = self._stand_in(i, clusters[m][: counts[m]], reps[m][: counts[m]])
                if j >= 0:
                    served[k] = j
                    hit[k] = sub[k] = True
                    level[k] = 1
                    uses[j] += 1
                    continue
            # A miss: read from storage, and decide which level (if any) keeps it.
            lvl = self._keep_miss(i, hom, evicted)
            if lvl >= 0:
                admit[k] = True
                level[k] = lvl
                fresh.add(i)
        np.add.at(self.served_count, served[hit], 1)
        self.sampler.served(ids[~sub], self.epoch)  # the visit bound counts only these
        self._gain += np.bincount(level[hit], minlength=2)[:2]
        return Lookup(served, hit, sub, admit, self._gone(evicted), level)

    def _neighbour_reps(self, ids: np.ndarray) -> tuple[list, list, list]:
        """Per id: its cluster then its same-label neighbours' clusters (neighbour order), their
        representatives now (-1: none), and how many there are (rows padded past that count)."""
        if ids.size == 0:
            return [], [], []
        nb = self.graph.nbrs[ids]
        ok = self.graph.nbr_ok[ids] & (self.labels[nb] == self.labels[ids][:, None])
        cl = np.concatenate([self.cluster[ids][:, None], self.cluster[np.where(ok, nb, 0)]], axis=1)
        keep = np.concatenate([np.ones((ids.size, 1), np.bool_), ok], axis=1)
        first = np.argsort(~keep, axis=1, kind="stable")  # kept entries first, in their order
        cl = np.take_along_axis(cl, first, axis=1)
        size = self.rep_of.size
        reps = np.where(cl < size, self.rep_of[np.minimum(cl, size - 1)], -1)
        return cl.tolist(), reps.tolist(), keep.sum(axis=1).tolist()

    def _keep_miss(self, i: int, hom: bool, evicted: list[int]) -> int:
        """Admit the missed id ``i``: level 1 (a cluster's representative), 0 (by score), or -1 (not kept).

        Ids it pushes out are appended to ``evicted``."""
        hc = self.hcache
        c = self.cluster[i]
        # Any unimportant sample read from storage may become a representative,
        # a must-serve one too (it is read anyway; it only may not be replaced).
        may_rep = hom and self.substitutable[i]
        if may_rep and self.rotate and self.cluster_size[c] > 1:
            r = int(self.rep_of[c])
            if r >= 0 and r != i and self.uses[r] >= self.rep_uses:
                # The representative has stood in its share: this storage read takes
                # its place, so the stand-ins rotate within the epoch. (The store's
                # delete runs after this batch's reads, so r may still serve in it.)
                hc.discard(r)
                self._drop_rep(r)
                evicted.append(r)
        if may_rep and self.cluster_size[c] > 1 and self.rep_of[c] < 0:
            ok, victim = hc.offer(i, float(self.cluster_size[c]))
            if ok:
                if victim >= 0:
                    self._drop_rep(victim)
                    evicted.append(victim)
                self.rep_of[c] = i
                self.rep_cluster[i] = c
                self._rep_dirty.add(int(c))
                self.ready_at[i] = self._lookups + self.ready_after
                self._pool_add(i)
                return 1
        ok, victim = self.icache.offer(i, float(self.score[i]))
        if not ok:
            return -1
        if victim >= 0:
            evicted.append(victim)
        return 0

    def contains(self, ids):
        ids = np.asarray(ids, np.int64)
        return self.icache.resident[ids] | self.hcache.resident[ids]

    def resident(self) -> np.ndarray:
        return np.union1d(self.icache.ids(), self.hcache.ids())

    def _discard(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            if not self.icache.discard(i) and self.hcache.discard(i):
                self._drop_rep(i)  # the stand-in pool drops it when a draw meets it

    # ------------------------------------------------------------ reports
    def _report(self, epoch: int) -> None:
        row = {
            "epoch": int(epoch),
            "ratio": self.split.ratio,
            "level0_slots": self.icache.capacity,
            "level1_slots": self.hcache.capacity,
            "upkeep_seconds": self.upkeep_seconds,
            "clusters": int((self.cluster_size > 1).sum()) if self.graph is not None else 0,
            "indexed": int(self.graph.indexed.sum()) if self.graph is not None else 0,
            "index_ops": dict(self.graph.last_upkeep) if self.graph is not None else {},
            "substitutable": int(self.substitutable.sum()),
            "must_serve": int(self.sampler.must_serve.sum()),
            "dropped_nonfinite": int(self.imp.nonfinite_dropped),
        }
        if self.split.history:
            row.update({"gain0": self.split.history[-1]["gain0"], "gain1": self.split.history[-1]["gain1"]})
        self.epoch_stats.append(row)
        if self.stats_sink is not None:
            self.stats_sink.append(row)

    def describe(self) -> str:
        return (
            f"{self.name}(capacity={self.capacity}/{self.n}, importance={self.icache.capacity}, "
            f"homophily={self.hcache.capacity})"
        )

    # -------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "imp": self.imp.state_dict(),
            "sampler": self.sampler.state_dict(),
            "split": self.split.state_dict(),
            "gain": self._gain.copy(),
            "slots": list(self._slots),
            "served_count": self.served_count.copy(),
            "resident0": self.icache.ids(),
            "resident1": self.hcache.ids(),
            "graph": self.graph.state_dict() if self.graph is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.imp.load_state_dict(state["imp"])
        self.sampler.load_state_dict(state["sampler"])
        self.split.load_state_dict(state["split"])
        # The gains of the checkpointed epoch decide the next split, as they would have without a restart.
        self._gain = np.asarray(state.get("gain", np.zeros(2)), np.float64).copy()
        self._slots = tuple(int(v) for v in state.get("slots", self._slots))
        if "served_count" in state:
            self.served_count = np.asarray(state["served_count"], np.int32).copy()
        if self.graph is not None and state.get("graph"):
            self.graph.load_state_dict(state["graph"])
        self._apply_split()
        for i in np.asarray(state.get("resident0", []), np.int64).tolist():
            self.icache.offer(int(i), float(self.score[i]))
        # Representatives come back through begin_epoch's re-clustering.
        for i in np.asarray(state.get("resident1", []), np.int64).tolist():
            self.hcache.offer(int(i), 1.0)
