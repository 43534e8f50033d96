"""Sessions: one cache each, with a memory budget, spill, a pipeline check.

A session is what ``spidercache session new`` hands out: a random 32-bit id
(``secrets``), a byte budget, and whether it may spill. Its cache is named by
the id plus the fingerprint of the pipeline that first attaches; another
pipeline on the same session is refused (MindSpore's rule). Values live in a
``SlotArena`` (shared memory) while the budget lasts. When it is full:

* spill on: the value goes to the session's LMDB under the spill directory;
* an eviction policy given (``--policy lru``): the policy picks victims, which
  are dropped (or spilled, when spill is on). The policy decides through an
  ``engine.Cache`` (``session.cache``: its ``plan`` of each get and put, the same
  decision step as every front-end's); the values themselves stay encoded rows
  in the arena, read and written here (the server never decodes a value: the
  clients verify them), with the policy's capacity from the budget;
* otherwise: the value is refused and what is cached keeps being served.

With ``persist`` every value is also written through to the session's LMDB and
the session table is saved in ``sessions.json``, so a restarted server (even
after kill -9) finds its sessions and serves their values from disk.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..engine.stores.lmdb_store import LMDBStore
from .arena import SlotArena
from .limits import DEFAULT_MAX_MESSAGE, DEFAULT_MAX_SESSIONS
from .session_disk import SessionDisk, remove_tree

if TYPE_CHECKING:
    from .manager import SessionManager
from .shm import ABSENT, SLOT_META_BYTES, SLOT_SIZES, SPILLED, slot_class

CLIENT_IDLE_SECONDS = 300.0
# what a session costs beside its arena (Session, locks, dicts, the mmap objects of
# its segments): measured 32 KB of RSS per session with 2,018 sessions and 62 KB
# with 50 (docs/bench/server.md, `sessions`); counted in the server-wide budget
SESSION_OVERHEAD = 64 << 10


class RequestError(ValueError):
    """A request that is malformed or not allowed (answered INVALID_ARGUMENT)."""


class ReplyTooLarge(Exception):
    """A reply that would exceed the message cap (answered RESOURCE_EXHAUSTED)."""


class ServerFull(Exception):
    """No room for another session (answered RESOURCE_EXHAUSTED)."""


class SessionNotFound(KeyError):
    def __init__(self, session_id: int) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"unknown session {self.session_id} (never created, or destroyed)"


class PipelineMismatch(RuntimeError):
    def __init__(self, session_id: int) -> None:
        super().__init__(f"session {session_id} holds a cache for a different pipeline")


@dataclass
class SessionCounters:
    hits: int = 0
    misses: int = 0
    rejected: int = 0
    evicted: int = 0
    spilled_items: int = 0
    spilled_bytes: int = 0


@dataclass
class ServerConfig:
    memory_bytes: int = 1 << 30
    spill_dir: str | None = None  # None: no spill
    persist: bool = False
    policy: str | None = None  # None: stop admitting when full
    shm: bool = True
    shm_prefix: str = "spidercache"
    # ``memory_bytes`` is the server's total memory; this much of it is the
    # process itself (measured at start) plus request buffers (see memory.py)
    reserved_bytes: int = 0
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE

    @property
    def data_bytes(self) -> int:
        """What the sessions' slots and indexes may use together."""
        return max(0, self.memory_bytes - self.reserved_bytes)


class Session(SessionDisk):
    def __init__(
        self, session_id: int, budget: int, spill: bool, config: ServerConfig, manager: SessionManager
    ) -> None:
        self.id = session_id
        self.budget = int(budget)
        self.spill = bool(spill)
        self.config = config
        self.manager = manager
        self.pipeline: str | None = None
        self.sealed_items = -1
        self.counters = SessionCounters()
        self.clients: dict[str, float] = {}
        self.lock = threading.Lock()
        prefix = f"{config.shm_prefix}-{session_id}" if config.shm else None
        self.arena = SlotArena(prefix, self.budget)
        self.disk: LMDBStore | None = None
        self._spilled_len: dict[int, int] = {}  # id -> bytes, for ids on disk only
        self.policy = None
        if config.policy:
            from ..engine.cache import Cache  # numba: loaded only when a policy is asked for
            from ..engine.policies import make_policy

            # as many of the smallest slots as the budget holds; _policy_capacity
            # shrinks it to the slots actually used
            first = max(1, self.budget // int(SLOT_SIZES[0] + SLOT_META_BYTES))
            self.policy = make_policy(config.policy, first, on_evict=self._on_evict)
            self.cache = Cache(self.policy, dense_ids=True)
            self._policy_slot = 0
        if config.persist or spill:
            self._open_disk()

    # -------------------------------------------------------- pipeline
    def attach(self, pipeline: str, client_id: str, memory_bytes: int = 0, spill: bool = False) -> None:
        if spill and not self.spill:
            raise RequestError(
                f"session {self.id} was created without spill; a client cannot turn it on "
                "(create the session with --spill)"
            )
        with self.lock:
            if self.pipeline is None:
                self.pipeline = pipeline
                if memory_bytes and self.arena.items == 0 and not self.arena.classes:
                    # MindSpore's DatasetCache(size=...) caps the cache below the session's budget
                    self.budget = min(self.budget, int(memory_bytes))
                    self.arena.budget = self.budget
            elif self.pipeline != pipeline:
                raise PipelineMismatch(self.id)
            if client_id:
                self.clients[client_id] = time.monotonic()
        self.manager.save()

    def check_pipeline(self, pipeline: str) -> None:
        if self.pipeline is not None and pipeline != self.pipeline:
            raise PipelineMismatch(self.id)
        if self.pipeline is None:
            raise RequestError(f"session {self.id}: attach a pipeline before reading or writing")

    def report(self, client_id: str, hits: int, misses: int, detach: bool) -> None:
        with self.lock:
            self.counters.hits += int(hits)
            self.counters.misses += int(misses)
            if detach:
                self.clients.pop(client_id, None)
            elif client_id:
                self.clients[client_id] = time.monotonic()

    def seal(self, n_items: int) -> None:
        """Streaming: ids 0..n_items-1 are all stored (in memory or spilled)."""
        n = int(n_items)
        if n < 0:
            raise RequestError("n_items must be >= 0")
        with self.lock:
            if n > self.arena.index.size:
                raise RequestError(f"cannot seal {n} items: ids {self.arena.index.size}.. were never stored")
            e = self.arena.index[:n]
            missing = np.flatnonzero((e < 0) & (e != SPILLED))
            if missing.size:
                raise RequestError(
                    f"cannot seal {n} items: {missing.size} of them are not stored "
                    f"(the first is id {int(missing[0])})"
                )
            self.sealed_items = n
        self.manager.save()

    # ----------------------------------------------------------- reads
    def get(self, ids: np.ndarray, alloc=None) -> tuple[np.ndarray, np.ndarray]:
        """(lengths, rows): lengths -1 for a miss; one row per value found, in order.

        ``alloc(lengths, n_rows, width)``, when given, returns the (n_rows, width)
        uint8 array the rows are gathered into: the server passes the reply
        message's own buffer, so a value is copied once from its slot to the reply.
        The gather happens under the session lock (a slot may be reused after it).
        """
        with self.lock:
            e, lengths, cls, slots, width = self.arena.locate(ids)
            self._check_reply(ids, lengths, slots.size, width)
            if self.policy is not None:
                resident = ids[e >= 0]
                if resident.size:
                    evicted = self.counters.evicted
                    self.cache.plan(resident)  # recency / frequency of hits
                    if self.counters.evicted != evicted:  # never expected: re-read what is left
                        e, lengths, cls, slots, width = self.arena.locate(ids)
            spilled = np.flatnonzero(lengths == SPILLED)
            direct = alloc is not None and not spilled.size  # gathered straight into the reply
            rows = alloc(lengths, slots.size, width) if direct else np.empty((slots.size, width), np.uint8)
            self.arena.fill_rows(rows, cls, slots)
            if spilled.size:
                rows = self._merge_disk(ids, e, lengths, rows, spilled)
            if alloc is not None and not direct:
                out = alloc(lengths, rows.shape[0], rows.shape[1])
                out[...] = rows
                rows = out
            found = int(np.count_nonzero(lengths >= 0))
            self.counters.hits += found
            self.counters.misses += ids.size - found
            return lengths, rows

    def _check_reply(self, ids: np.ndarray, lengths: np.ndarray, n_rows: int, width: int) -> None:
        """Refuse a reply above the message cap before building it: 65,536 copies
        of one 32 KB value would otherwise be gathered into a 2 GB buffer first."""
        spilled = np.flatnonzero(lengths == SPILLED)
        if spilled.size:
            sizes = [self._spilled_len.get(i, 0) for i in ids[spilled].tolist()]
            width = max(width, max(sizes))
            n_rows += spilled.size
        size = 8 * ids.size + n_rows * width + 32
        cap = self.config.max_message_bytes
        if size > cap:
            raise ReplyTooLarge(
                f"the reply would be {size / (1 << 20):,.1f} MB, above the server's message cap "
                f"of {cap / (1 << 20):,.0f} MB (--max-message-mb): ask for fewer ids per call"
            )

    # ---------------------------------------------------------- writes
    def put(self, ids: np.ndarray, lengths: np.ndarray, data: np.ndarray) -> tuple[int, int, int, np.ndarray]:
        """Store a batch; returns (in memory, spilled, rejected, stored mask per request id)."""
        request_ids = ids
        offsets = np.zeros(ids.size, np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        rev_unique, rev_idx = np.unique(ids[::-1], return_index=True)
        if rev_unique.size != ids.size:  # the last write of an id in a batch wins
            keep = np.sort(ids.size - 1 - rev_idx)
            ids, lengths, offsets = ids[keep], lengths[keep], offsets[keep]
        with self.lock:
            far = self._unaffordable(ids)
            if far.any() and self.spill and self._open_disk() is not None:
                self._spill_for_index(int(ids.max()))
                far = self._unaffordable(ids)
            if far.any():  # refused outright: neither memory nor disk
                self.arena.mark(ids[far], ABSENT)
                self.counters.rejected += int(far.sum())
                keep = ~far
                ids, lengths, offsets = ids[keep], lengths[keep], offsets[keep]
            held = np.ones(ids.size, np.bool_)
            if self.policy is not None and ids.size:
                self._policy_capacity(ids, lengths)
                self.cache.plan(ids)  # inserts; evictions free slots via _on_evict
                # FIFO-like policies can evict, later in the same batch, an id they hit
                # earlier in it, and admission filters refuse: only what the policy holds
                # goes to memory, or a later read's plan would free slots it is reading
                held = self.policy.contains(ids)
            before = self.arena.entries(ids) if self.disk is not None else None
            admitted = np.zeros(ids.size, np.bool_)
            mine = np.flatnonzero(held)
            admitted[mine], _ = self.arena.put(
                ids[mine], lengths[mine], offsets[mine], data, self.manager.room(self)
            )
            rest = np.flatnonzero(~admitted)
            spilled = rejected = 0
            if rest.size:
                rest_ids = ids[rest]
                if self.spill and self._open_disk() is not None:
                    self._disk_put(
                        rest_ids, [data[offsets[i] : offsets[i] + lengths[i]].tobytes() for i in rest]
                    )
                    self._mark_spilled(rest_ids, lengths[rest])
                    spilled = rest.size
                else:
                    # an older value of a refused id must not outlive the newer write
                    self.arena.mark(rest_ids, ABSENT)
                    self._forget_spilled(rest_ids)
                    if self.disk is not None:
                        self.disk.delete_many(rest_ids)
                    if self.policy is not None:
                        self.policy.remove(rest_ids)
                    rejected = int(np.count_nonzero(held[rest]))  # the others count as evicted
                    self.counters.rejected += rejected
            sel = np.flatnonzero(admitted)
            self._forget_spilled(ids[sel])  # in memory now
            if self.disk is not None and sel.size:
                if self.config.persist:  # write-through: a crash loses nothing
                    self._disk_put(
                        ids[sel], [data[offsets[i] : offsets[i] + lengths[i]].tobytes() for i in sel]
                    )
                else:  # an older spilled copy must not linger on disk
                    stale = ids[sel][before[sel] == SPILLED]
                    if stale.size:
                        self.disk.delete_many(stale)
            ok = admitted.copy()
            if spilled:
                ok[rest] = True
            status = np.isin(request_ids, ids[ok])  # a repeated id shares the status of its last write
            return int(admitted.sum()), spilled, rejected + int(far.sum()), status

    def _unaffordable(self, ids: np.ndarray) -> np.ndarray:
        """Ids whose index entry (and policy state) would not fit in the room left:
        a put of id 2**32-1 must not grow a 32 GB index, in memory or for a spilled value."""
        if ids.size == 0 or int(ids.max()) < self.arena.index.size:
            return np.zeros(ids.size, np.bool_)
        per_id = 3 if self.policy is not None else 1  # policy state: ~16 B per id beside the index's 8
        if self.arena.index_cost(int(ids.max())) * per_id <= self.manager.room(self):
            return np.zeros(ids.size, np.bool_)
        return ids >= self.arena.index.size

    def _policy_capacity(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        """Items the budget holds: what the bookkeeping leaves of it (header, index
        grown to these ids, policy state, spill margin), over the biggest slot seen so far."""
        if lengths.size:
            self._policy_slot = max(self._policy_slot, int(SLOT_SIZES[slot_class(lengths).max()]))
        grow = self.arena.index_cost(int(ids.max()) if ids.size else 0)
        fixed = self.arena.overhead_bytes + grow * 3 + self.policy.state_bytes()
        capacity = max(1, (self.budget - fixed) // (self._policy_slot + SLOT_META_BYTES))
        if capacity != self.policy.capacity:
            self.policy.resize(capacity)

    def delete(self, ids: np.ndarray) -> int:
        with self.lock:
            e = self.arena.mark(ids, ABSENT)
            n = int(np.count_nonzero((e >= 0) | (e == SPILLED)))
            self._forget_spilled(ids)
            if self.disk is not None:
                self.disk.delete_many(ids)
            if self.policy is not None:
                self.policy.remove(ids)
            return n

    # ----------------------------------------------------------- stats
    def n_clients(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self.clients.values() if now - t < CLIENT_IDLE_SECONDS)

    def stats(self) -> dict:
        c = self.counters
        return dict(
            session_id=self.id,
            pipeline=self.pipeline or "",
            memory_budget=self.budget,
            memory_used=self.used_bytes,
            items_in_memory=self.arena.items,
            items_spilled=c.spilled_items,
            spilled_bytes=c.spilled_bytes,
            hits=c.hits,
            misses=c.misses,
            rejected=c.rejected,
            evicted=c.evicted,
            clients=self.n_clients(),
            spill=self.spill,
            sealed_items=self.sealed_items,
            overhead_bytes=self.overhead_bytes,
        )

    @property
    def overhead_bytes(self) -> int:
        """Memory beside the values: the arena's index and bookkeeping, the policy's state."""
        return self.arena.overhead_bytes + (self.policy.state_bytes() if self.policy is not None else 0)

    @property
    def used_bytes(self) -> int:
        return self.arena.used_bytes + (self.policy.state_bytes() if self.policy is not None else 0)

    def close(self, destroyed: bool) -> None:
        """Drop the shared memory (clients see the session destroyed); ``destroyed``:
        also its spill files, else they stay for a ``--persist`` restart."""
        with self.lock:
            self.arena.close(destroyed=True)
            if self.disk is not None:
                self.disk.close()
                self.disk = None
            if destroyed:
                remove_tree(self.disk_path)
