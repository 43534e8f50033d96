"""``learned``: an online cache that follows whichever of its experts the trace currently favours.

The experts are whole caches simulated on the same requests (shadow caches: ids only, no
values): LRU, LFU, ARC, S3-FIFO and ``slrfu`` (decayed frequency over each row's whole history,
time constant 32 x capacity, evicting the lowest of 64 sampled residents; see ``sampled.py``).
``experts=`` may add ``lrfu:TAU`` (the exact-minimum heap), ``slrfu:TAU`` at another time
constant or ``lru+admit`` (LRU with an admission model learned online, see ``reuse.py``) and,
when an offline model is given, ``learned+offline`` (the model's ordering). Each expert's hits
are counted with an exponential memory of ``window`` x capacity requests; that is the weight
the policy learns.

The real cache follows the leader (the expert with the most recent hits): a miss is
admitted if the leader admits it, and the victim is a row the leader no longer holds (the
leader's own evictions, fed to a stack after each chunk; after a switch, every resident row
the new leader lacks), else a row near the LRU end that the leader does not hold, else the
LRU row. Everything the follower decides uses only requests already served: the leader's
state is read as it was at the end of the previous chunk. So after a switch the real cache
converges to the new leader's contents within about one turnover, paying the misses that
takes, and on a trace where one expert stays best it hits within a small margin of that
expert. A switch needs the challenger ahead by ``margin`` (relative) and happens at most once
per ``window`` / 4 requests, which bounds the cost of switching back and forth. Requests
are served in chunks of capacity / 64 (16 ... 4096) so that the leader's state read is recent.

An offline model (``model=``) is a warm start: its expert starts as the leader.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..engine.policies import make_policy
from ..engine.policies.base import _NO_ADMIT, Policy
from .admit import AdmitLRU
from .lrfu import LRFU, NIL, _push_front, _remove, _unlink
from .sampled import SampledLRFU

# chosen on the tuning families (2 M lookups, 10 %): slrfu:32 in place of the two LRFU heaps
# (lrfu:2, lrfu:32) raised the gap closed on dlrm-a / dlrm-b from 0.008 / 0.016 to 0.057 / 0.065;
# zipf-0.8 / drift-slow / scan-tune moved by -0.0017 / -0.0009 / +0.0003 hit ratio; 1.5-2x the speed;
# lru+admit and W-TinyLFU as extra experts never helped there (docs/embedding.md)
DEFAULT_EXPERTS = ("lru", "lfu", "arc", "s3fifo", "slrfu:32")


@nb.njit(cache=True)
def _follow(
    ids,
    admit,
    use_admit,
    now0,
    lwhere,
    stack,
    ns,
    where,
    prev,
    nxt,
    last,
    s,
    hits,
    evicted,
    record,
):
    """One chunk through the real cache, following the leader (``lwhere`` > 0: resident there)."""
    n_ev = 0
    n_adm = 0
    n_rej = 0
    nl = lwhere.size
    for k in range(ids.size):
        i = ids[k]
        if where[i] > 0:
            hits[k] = True
            last[i] = now0
            _unlink(i, prev, nxt, s)
            _push_front(i, prev, nxt, s)
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        if s[1] >= s[0]:
            victim = -1
            while ns[0] > 0:  # a row the leader has evicted and that was not used in this chunk
                ns[0] -= 1
                v = stack[ns[0]]
                if where[v] > 0 and last[v] < now0 and (v >= nl or lwhere[v] <= 0):
                    victim = v
                    break
            if victim < 0:  # near the LRU end, a row the leader does not hold
                v = s[3]
                for _ in range(16):
                    if v == NIL:
                        break
                    if v >= nl or lwhere[v] <= 0:
                        victim = v
                        break
                    v = prev[v]
            if victim < 0:
                victim = s[3]
            _unlink(victim, prev, nxt, s)
            where[victim] = 0
            s[1] -= 1
            if record:
                evicted[n_ev] = victim
            n_ev += 1
        where[i] = 1
        last[i] = now0
        _push_front(i, prev, nxt, s)
        s[1] += 1
        n_adm += 1
    return n_ev, n_adm, n_rej


@nb.njit(cache=True)
def _shrink_lru(evicted, where, prev, nxt, s):
    n = 0
    while s[1] > s[0]:
        v = s[3]
        _unlink(v, prev, nxt, s)
        where[v] = 0
        s[1] -= 1
        evicted[n] = v
        n += 1
    return n


def _expert(spec: str, capacity: int, n_ids: int, tables, model) -> Policy:
    if spec.startswith("lrfu:"):
        return LRFU(capacity, n_ids, tau=float(spec.split(":", 1)[1]))
    if spec.startswith("slrfu:"):
        return SampledLRFU(capacity, n_ids, tau=float(spec.split(":", 1)[1]))
    if spec == "lru+admit":
        return AdmitLRU(capacity, n_ids, tables=tables)
    if spec == "learned+offline":
        from .policy import OfflineLearned

        return OfflineLearned(capacity, n_ids, model=model, tables=tables)
    return make_policy(spec, capacity, n_ids)


class Learned(Policy):
    """Follow-the-leader over shadow experts (see the module docstring)."""

    name = "learned"
    _id_arrays = {
        "_prev": (np.int64, NIL),
        "_next": (np.int64, NIL),
        "_pf": (np.int8, 0),
        "_last": (np.int64, -1),
    }
    _n_scalars = 4

    def __init__(
        self,
        capacity: int,
        n_ids: int = 0,
        *,
        model=None,
        tables: np.ndarray | None = None,
        experts: tuple[str, ...] = DEFAULT_EXPERTS,
        window: float = 8.0,
        margin: float = 0.002,
        chunk: int | None = None,
        **kw,
    ) -> None:
        if not experts:
            raise ValueError("learned needs at least one expert")
        # the follower reads the leader as of the previous chunk: a chunk well below the leader's
        # smallest queue (S3-FIFO's 10%) keeps the lag from costing hits (cap / 64 measured: < 0.002)
        self.window, self.margin = float(window), float(margin)
        self.chunk = int(chunk) if chunk else int(min(4096, max(16, int(capacity) // 64)))
        super().__init__(capacity, n_ids, **kw)
        specs = list(experts) + (["learned+offline"] if model is not None else [])
        self.expert_names = specs
        self.experts = [_expert(e, capacity, n_ids, tables, model) for e in specs]
        self._evicted: list[np.ndarray | None] = [None] * len(specs)
        self._hbuf = np.empty(0, np.bool_)
        self._evbuf = [np.empty(0, np.int64) for _ in specs]
        for j, e in enumerate(self.experts):
            e.on_evict = self._catcher(j)
        self.scores = np.zeros(len(specs))
        self.leader = len(specs) - 1 if model is not None else specs.index("arc") if "arc" in specs else 0
        self.switches = 0
        self._since_switch = 0
        self._stack = np.zeros(max(16, 2 * self.chunk), np.int64)
        self._ns = np.zeros(1, np.int64)
        self.time = 0

    def _catcher(self, j: int):
        def catch(ev: np.ndarray) -> None:
            self._evicted[j] = ev

        return catch

    def _init_scalars(self) -> None:
        self._s[2] = NIL
        self._s[3] = NIL

    @property
    def leader_name(self) -> str:
        return self.expert_names[self.leader]

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        n_ev = n_adm = n_rej = 0
        for a in range(0, ids.size, self.chunk):
            b = min(ids.size, a + self.chunk)
            e, m, r = _follow(
                ids[a:b],
                admit[a:b] if use_admit else admit,
                use_admit,
                self.time,
                self.experts[self.leader]._where,
                self._stack,
                self._ns,
                self._where,
                self._prev,
                self._next,
                self._last,
                self._s,
                hits[a:b],
                evicted[n_ev:],
                record,
            )
            n_ev, n_adm, n_rej = n_ev + e, n_adm + m, n_rej + r
            self._shadow(ids[a:b])
            self.time += b - a
        return n_ev, n_adm, n_rej

    def _shadow(self, chunk: np.ndarray) -> None:
        decay = np.exp(-chunk.size / (self.window * self.capacity))
        for j, e in enumerate(self.experts):
            self._evicted[j] = None
            self.scores[j] = self.scores[j] * decay + self._expert_hits(j, e, chunk)
        self._since_switch += chunk.size
        best = int(np.argmax(self.scores))
        lead = self.scores[best] - self.scores[self.leader]
        if (
            best != self.leader
            and lead > self.scores[self.leader] * self.margin
            and self._since_switch >= self.window * self.capacity / 4
        ):
            self.leader = best
            self.switches += 1
            self._since_switch = 0
            lw = self.experts[best]._where
            mine = np.flatnonzero(self._where[: self._n_ids] > 0)
            mine = mine[(mine >= lw.size) | (lw[np.minimum(mine, lw.size - 1)] <= 0)]
            self._push(mine)
        else:
            ev = self._evicted[self.leader]
            if ev is not None and ev.size:
                ev = ev[ev < self._n_ids]
                self._push(ev[self._where[ev] > 0])

    def _expert_hits(self, j: int, e: Policy, chunk: np.ndarray) -> int:
        """Serve ``chunk`` in expert ``j``; its evictions go to ``self._evicted[j]``.

        An expert on the base ``access`` runs its kernel straight into reused buffers (the ids
        were checked and reserved by this policy's own ``access``): the per-call checks and
        allocations were ~15 % of ``learned``'s time at capacity / 64 requests a chunk."""
        if type(e).access is not Policy.access or e.admission is not None or e.by_bytes:
            return int(np.count_nonzero(e.access(chunk)))
        if self._hbuf.size < chunk.size:
            self._hbuf = np.empty(chunk.size, np.bool_)
        if self._evbuf[j].size < chunk.size + 16:
            self._evbuf[j] = np.empty(chunk.size + 16, np.int64)
        hits = self._hbuf[: chunk.size]
        n_ev, n_adm, n_rej = e._access(chunk, _NO_ADMIT, False, hits, self._evbuf[j], True)
        n_hits = int(np.count_nonzero(hits))
        st = e._stats
        st.requests += chunk.size
        st.hits += n_hits
        st.admissions += int(n_adm)
        st.rejections += int(n_rej)
        st.evictions += int(n_ev)
        self._evicted[j] = self._evbuf[j][:n_ev]
        return n_hits

    def _push(self, ids: np.ndarray) -> None:
        """Replace the victim stack with ``ids`` (older candidates that are still resident stay below)."""
        old = self._stack[: self._ns[0]]
        lw = self.experts[self.leader]._where
        old = old[(self._where[old] > 0) & ((old >= lw.size) | (lw[np.minimum(old, lw.size - 1)] <= 0))]
        cand = np.concatenate([old, ids]).astype(np.int64)
        if cand.size > self._stack.size:
            self._stack = np.zeros(2 * cand.size, np.int64)
        self._stack[: cand.size] = cand
        self._ns[0] = cand.size

    def reserve(self, n_ids: int) -> None:
        super().reserve(n_ids)
        for e in getattr(self, "experts", ()):
            e.reserve(n_ids)

    def _remove(self, ids):
        return _remove(ids, self._where, self._prev, self._next, self._s, self._pf)

    def _on_resize(self) -> None:
        for e in self.experts:
            e.resize(self.capacity)

    def _shrink(self, evicted):
        return _shrink_lru(evicted, self._where, self._prev, self._next, self._s)

    def _extra_arrays(self) -> list[np.ndarray]:
        out = [self._stack]
        for e in self.experts:
            out += [
                e._where,
                *(getattr(e, a) for a in e._id_arrays),
                *e._extra_arrays(),
            ]
        return out
