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
        return (
            r >= 0
            and r != i
            and self.hcache.resident[r]
            and self.uses[r] < self.rep_uses
            and self.ready_at[r] <= self._lookups
            and self.labels[r] == self.labels[i]
        )

    def _stand_in(self, i: int) -> int:
        """A cached same-label representative for ``i`` with uses left, or -1."""
        c = self.cluster[i]
        own = int(self.rep_of[c]) if c < self.rep_of.size else -1
        nbr_reps = [
            int(self.rep_of[cn]) if cn < self.rep_of.size else -1
            for cn in self.cluster[self.graph.same_label_neighbours(i)].tolist()
        ]
        if self.stand_in_rule == "nearest":
            for r in [own] + nbr_reps:
                if self._usable(r, i):
                    return r
            return -1
        cands = [r for r in set([own] + nbr_reps) if self._usable(r, i)]
        if cands:
            return cands[self._pick.randrange(len(cands))] if len(cands) > 1 else cands[0]
        if self.stand_in_rule == "label":
            return self._random_same_label(i)
        return -1

    def _random_same_label(self, i: int, tries: int = 8) -> int:
        """A random level-1 resident with ``i``'s label and uses left, or -1."""
        pool = self._pool.get(int(self.labels[i]))
        for _ in range(tries):
            if not pool:
                return -1
            k = self._pick.randrange(len(pool))
            r = pool[k]
            if not self.hcache.resident[r]:  # left level 1 since it was pooled: drop the entry
                pool[k] = pool[-1]
                pool.pop()
                self._in_pool[r] = False
                continue
            if self._usable(r, i):
                return r
        return -1

    def lookup(self, ids: np.ndarray) -> Lookup:
        ids = np.asarray(ids, np.int64)
        n = ids.size
        self._lookups += 1
        served = ids.copy()
        hit = np.zeros(n, np.bool_)
        sub = np.zeros(n, np.bool_)
        admit = np.zeros(n, np.bool_)
        level = np.zeros(n, np.int8)
        evicted = self._pending_evict
        self._pending_evict = []
        ic, hc = self.icache, self.hcache
        must = self.sampler.must_serve if self.use_importance_sampling else None
        hom = self.graph is not None and hc.capacity > 0
        fresh: set[int] = set()  # admitted by this batch: still on its way into the store
        for k, i in enumerate(ids.tolist()):
            if i in fresh:
                # Requested twice in one batch (sampling with replacement). Under DDP
                # the two requests may sit on different ranks, and the write of the
                # first may not have landed when the second reads: read it again.
                continue
            if ic.resident[i]:
                hit[k] = True
                self._gain[0] += 1
                self.served_count[i] += 1
                continue
            if hc.resident[i]:
                hit[k] = True
                level[k] = 1
                self._gain[1] += 1
                self.served_count[i] += 1
                continue
            may_sub = hom and self.substitutable[i] and (must is None or not must[i])
            if may_sub:
                j = self._stand_in(i)
                if j >= 0:
                    served[k] = j
                    hit[k] = sub[k] = True
                    level[k] = 1
                    self.uses[j] += 1
                    self.served_count[j] += 1
                    self._gain[1] += 1
                    continue
            # A miss: read from storage, and decide which level (if any) keeps it.
            lvl = self._keep_miss(i, hom, evicted)
            if lvl >= 0:
                admit[k] = True
                level[k] = lvl
                fresh.add(i)
        return Lookup(served, hit, sub, admit, self._gone(evicted), level)

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
