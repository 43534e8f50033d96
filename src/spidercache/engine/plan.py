"""Plan: in the deciding process, a batch of requests becomes what must happen to it.

A policy answers a batch of requested ids in order (``decide``): which id
serves each request (the requested one, or a resident stand-in), which are
read from the cache, which are loaded and admitted, which ids were pushed out.
A *deciding* policy (the training policies) has ``lookup(ids) -> Lookup``; an
engine policy's ``access`` hit mask and evictions are turned into the same
``Lookup`` here. ``Planner`` turns that answer into a ``BatchPlan``, a small
picklable record that the process holding the bytes runs with
``engine.execute``; ``engine.Cache`` joins the two.

Stores that need a place chosen for each value (the shared-memory slot store)
expose ``allocator(delay)``; the planner then assigns slots here, in the one
process that decides, and holds freed slots back for ``delay`` plans (longer
than DataLoader workers and DDP ranks run ahead) so no writer overwrites a
slot that an earlier plan still reads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Lookup:
    """A policy's decision for one batch (arrays have one entry per request).

    ``served[k]`` is the id whose data answers request ``k``: the requested id
    itself, or a resident stand-in (``substituted[k]``). ``hit[k]`` means the
    served id is resident and is read from the cache (true for substitutions).
    ``admit[k]`` means: load ``served[k]`` from the source and insert it.
    ``evicted`` are the ids this batch pushed out (the store drops them).
    ``level`` (optional) says which cache level holds each served id (0 =
    importance cache, 1 = unimportant / homophily cache); an executor with one
    store per level reads and writes there.
    """

    served: np.ndarray
    hit: np.ndarray
    substituted: np.ndarray
    admit: np.ndarray
    evicted: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    level: np.ndarray | None = None

    @classmethod
    def all_miss(cls, ids: np.ndarray, admit: bool = False) -> Lookup:
        n = ids.size
        return cls(ids.copy(), np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.full(n, admit, np.bool_))


@dataclass
class BatchPlan:
    """What one process must do for one batch (small, pickled to a worker)."""

    epoch: int
    step: int
    requested: np.ndarray
    served: np.ndarray
    hit: np.ndarray  # read ``served`` from the cache
    substituted: np.ndarray  # served != requested (a resident stand-in)
    admit: np.ndarray  # load ``served`` from the source and insert it
    evict: np.ndarray  # ids this process drops from the store
    level: np.ndarray | None = None  # cache level of each hit / admission (None: level 0)


def decide(policy, ids: np.ndarray) -> Lookup:
    """The policy's ``Lookup`` for one batch: a deciding policy's own, else one from ``access``.

    From ``access``: hits as the policy says (a repeat of an id loaded earlier in
    the batch too: execute copies that value); a miss is admitted when its id is
    resident after the batch and was not before; ``evicted``: the ids resident
    before the batch and not after it (the values the store must drop).
    """
    lookup = getattr(policy, "lookup", None)
    if lookup is not None:
        return lookup(ids)
    before = policy.contains(ids)  # resident before the batch: the store holds its value
    pushed: list[np.ndarray] = []
    chained = policy.on_evict
    policy.on_evict = pushed.append
    try:
        hits = policy.access(ids)
    finally:
        policy.on_evict = chained
    evicted = distinct(np.concatenate(pushed)) if pushed else np.empty(0, np.int64)
    if chained is not None and evicted.size:
        chained(evicted)
    if evicted.size:
        new = ids[~before]
        small = new.size and int(max(evicted[-1], new.max())) < 1 << 24  # a lookup table is fast
        evicted = evicted[~policy.contains(evicted) & ~np.isin(evicted, new, kind="table" if small else None)]
    # a miss is admitted if it stays; one resident before the batch keeps its stored value
    admit = ~hits & ~before & policy.contains(ids)
    return Lookup(ids, hits, np.zeros(ids.size, np.bool_), admit, evicted)


def distinct(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` by one sort (a tenth of its time on a batch of ids)."""
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


class SlotAllocator:
    """Maps ids to slots (deciding process). Freed slots wait ``delay`` plans before reuse.

    ``table`` (optional) is the store's shared id -> slot table; an entry is
    cleared only when its slot comes back, so an earlier plan can still find
    the bytes of an id evicted after it was planned.
    """

    def __init__(self, n_slots: int, delay: int, table: np.ndarray | None = None) -> None:
        self.slot_of: dict[int, int] = {}
        self.free: deque[int] = deque(range(int(n_slots)))
        self.held: deque[tuple[int, list[tuple[int, int]]]] = deque()
        self.delay = int(delay)
        self.clock = 0
        self.table = table

    def tick(self) -> None:
        self.clock += 1
        while self.held and self.held[0][0] <= self.clock:
            for i, s in self.held.popleft()[1]:
                self.free.append(s)
                if self.table is not None and self.table[i] == s and self.slot_of.get(i) != s:
                    self.table[i] = -1

    def assign(self, ids: np.ndarray) -> np.ndarray:
        out = np.full(ids.size, -1, np.int64)
        for k, i in enumerate(ids.tolist()):
            s = self.slot_of.get(i, -1)
            if s < 0 and self.free:
                s = self.free.popleft()
                self.slot_of[i] = s
                if self.table is not None:
                    self.table[i] = s
            out[k] = s
        return out

    def release(self, ids: np.ndarray) -> None:
        gone = []
        for i in ids.tolist():
            s = self.slot_of.pop(i, -1)
            if s >= 0:
                gone.append((i, s))
        if gone:
            self.held.append((self.clock + self.delay, gone))


class Planner:
    """Turns a deciding policy's lookups into plans (the deciding process only).

    ``rank`` / ``world``: under DDP with a store every rank sees
    (``shared_store``), each rank plans the whole global batch so all hold the
    same policy state, keeps its own block of it, and deletes its share of the
    evictions, ``delay`` plans late (another rank may still be reading them).
    """

    def __init__(
        self, policy, store=None, rank: int = 0, world: int = 1, delay: int = 4, shared_store: bool = True
    ) -> None:
        self.policy = policy
        self.rank = int(rank)
        self.world = int(world)
        self.global_scope = bool(shared_store) and self.world > 1
        make_alloc = getattr(store, "allocator", None)
        self.slots: SlotAllocator | None = make_alloc(delay) if make_alloc is not None else None
        self.evict_delay = max(1, int(delay))
        self._pending_evict: list[np.ndarray] = []

    def _delayed_evictions(self, evicted: np.ndarray) -> np.ndarray:
        self._pending_evict.append(evicted)
        if len(self._pending_evict) <= self.evict_delay:
            return np.empty(0, np.int64)
        due = np.unique(self._pending_evict.pop(0))
        due = due[~self.policy.contains(due)] if due.size else due
        return due[self.rank :: self.world]

    def plan(self, chunk: np.ndarray, own: slice, epoch: int, step: int) -> BatchPlan:
        ids = chunk if self.global_scope else chunk[own]
        lk = decide(self.policy, ids)
        level = lk.level
        evicted = np.asarray(lk.evicted, np.int64)
        if self.global_scope:
            served, hit, sub, admit = lk.served[own], lk.hit[own], lk.substituted[own], lk.admit[own]
            level = None if level is None else level[own]
            requested = chunk[own]
            evict = self._delayed_evictions(evicted)
        else:
            served, hit, sub, admit, requested = lk.served, lk.hit, lk.substituted, lk.admit, ids
            evict = evicted
        if self.slots is not None:
            self.slots.tick()
            self.slots.release(evicted)
            if admit.any():
                self.slots.assign(np.asarray(served[admit], np.int64))
                # admitted and evicted within this batch: the slot goes back too
                adm = np.asarray(served[admit], np.int64)
                gone = adm[~self.policy.contains(adm)]
                if gone.size:
                    self.slots.release(gone)
            evict = np.empty(0, np.int64)  # slots are recycled here, nothing to delete
        return BatchPlan(
            epoch,
            step,
            np.asarray(requested, np.int64),
            np.asarray(served, np.int64),
            np.asarray(hit, np.bool_),
            np.asarray(sub, np.bool_),
            np.asarray(admit, np.bool_),
            np.asarray(evict, np.int64),
            None if level is None else np.asarray(level, np.int8),
        )
