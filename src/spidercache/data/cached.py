"""The cached dataset: decisions in the main process, reads and writes in the workers.

Three parts, in the order a batch meets them:

* ``CachePlanner`` (main process) asks the policy about a batch of requested
  ids and turns the answer into a ``BatchPlan``: what each request is served
  by, which reads come from the cache, what to load and insert, what to drop,
  and (for the in-process store) which memory slot each value lives in.
* ``CachedDataset.__getitems__(plan)`` (a DataLoader worker, or the main
  process with ``workers=0``) executes the plan with batch operations: one
  cache read for the hits, one storage read for the misses, one cache write
  for the admissions, then the transform over the whole batch.
* A backend holds the values: ``SlotBackend`` (in-process memory; shared
  memory that every worker sees, so there is one copy, not one per worker),
  or ``StoreBackend`` over any store of the engine (LMDB, Redis, Redis
  Cluster, memcached, the cache server), which other processes and ranks see.

A cache never returns wrong data: a slot carries the id it holds and a
sequence counter (a reader that races a writer sees a changed counter or a
different id and falls back to storage); a store value carries the codec's
checksum. A planned hit that cannot be read (store down, slot overwritten,
damaged value) is read from storage and counted as *lost*; with a store the
loader writes it back, so the policy's view and the store agree again.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import CorruptValue, StoreUnavailable, UserError
from .policies.base import TrainingPolicy
from .storage import SlowStorage
from .transforms import describe, is_random


# ----------------------------------------------------------------- plans
@dataclass
class BatchPlan:
    """What one rank must do for one batch (small, pickled to a worker)."""

    epoch: int
    step: int
    requested: np.ndarray
    served: np.ndarray
    hit: np.ndarray          # read ``served`` from the cache
    substituted: np.ndarray  # served != requested (a resident stand-in)
    admit: np.ndarray        # load ``served`` from storage and insert it
    slots: np.ndarray        # slot of each hit / admitted value (SlotBackend), else -1
    evict: np.ndarray        # ids this rank drops from a store
    level: np.ndarray | None = None  # cache level of each hit / admission (None: level 0)


@dataclass
class LoadedBatch:
    """A batch as the training loop sees it, with what the cache did for it."""

    x: torch.Tensor
    y: torch.Tensor
    ids: np.ndarray          # the ids actually trained on (= served)
    requested: np.ndarray
    hit: np.ndarray          # served from the cache (true hit or substitution)
    substituted: np.ndarray
    lost: int = 0            # planned cache reads that had to go to storage
    store_errors: int = 0    # store calls that failed (server down, damaged value)
    storage_reads: int = 0
    storage_seconds: float = 0.0
    epoch: int = 0
    step: int = 0

    @property
    def true_hits(self) -> int:
        return int(np.count_nonzero(self.hit & ~self.substituted))

    @property
    def substitutions(self) -> int:
        return int(np.count_nonzero(self.substituted))


# ------------------------------------------------------------- slot store
class SlotBackend:
    """Fixed-size values in ``capacity`` slots of one shared-memory array.

    Created in the main process before the DataLoader starts its workers; the
    tensors are in shared memory (``share_memory_``), so forked or spawned
    workers read and write the same bytes. Per slot: ``owner`` (the id held,
    -1 while being written) and ``version`` (odd while a write is in progress).
    The planner guarantees at most one writer per slot at a time by holding
    freed slots back for longer than the DataLoader's prefetch window.
    """

    kind = "slots"
    shared_scope = False  # one per process tree (per rank), not across ranks

    def __init__(self, n_slots: int, sample_shape: tuple[int, ...], dtype: np.dtype, shared: bool) -> None:
        self.n_slots = int(n_slots)
        self.sample_shape = tuple(sample_shape)
        tdtype = torch.from_numpy(np.empty(0, dtype)).dtype
        self._data_t = torch.zeros((self.n_slots, *self.sample_shape), dtype=tdtype)
        self._owner_t = torch.full((self.n_slots,), -1, dtype=torch.int64)
        self._version_t = torch.zeros(self.n_slots, dtype=torch.int64)
        if shared:
            for t in (self._data_t, self._owner_t, self._version_t):
                t.share_memory_()
        self._views()

    def _views(self) -> None:
        self.data = self._data_t.numpy()
        self.owner = self._owner_t.numpy()
        self.version = self._version_t.numpy()

    def __getstate__(self):
        return {"n_slots": self.n_slots, "sample_shape": self.sample_shape,
                "_data_t": self._data_t, "_owner_t": self._owner_t, "_version_t": self._version_t}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._views()

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def read(self, ids: np.ndarray, slots: np.ndarray, levels=None) -> tuple[np.ndarray, np.ndarray, int]:
        """Values for ``ids`` from ``slots``; ok mask; errors (always 0 here)."""
        ok = slots >= 0
        s = np.where(ok, slots, 0)
        v1 = self.version[s].copy()
        ok &= (v1 & 1) == 0
        ok &= self.owner[s] == ids
        values = self.data[s]  # one gather for the whole batch
        # seqlock: a write that began after v1 was read changed the counter
        ok &= self.version[s] == v1
        ok &= self.owner[s] == ids
        return values, ok, 0

    def write(self, ids: np.ndarray, slots: np.ndarray, values: np.ndarray, levels=None) -> int:
        keep = slots >= 0
        if not keep.all():
            ids, slots, values = ids[keep], slots[keep], values[keep]
        if slots.size == 0:
            return 0
        self.version[slots] += 1
        self.owner[slots] = -1
        self.data[slots] = values
        self.owner[slots] = ids
        self.version[slots] += 1
        return 0

    def delete(self, ids: np.ndarray) -> int:
        return 0  # slots are recycled by the planner; nothing to drop

    def describe(self) -> str:
        return f"in-process shared memory, {self.n_slots} slots"


class SlotAllocator:
    """Maps ids to slots (main process). Freed slots wait ``delay`` plans before reuse."""

    def __init__(self, n_ids: int, n_slots: int, delay: int) -> None:
        self.slot_of = np.full(n_ids, -1, np.int64)
        self.free: deque[int] = deque(range(n_slots))
        self.held: deque[tuple[int, np.ndarray]] = deque()
        self.delay = int(delay)
        self.clock = 0

    def tick(self) -> None:
        self.clock += 1
        while self.held and self.held[0][0] <= self.clock:
            self.free.extend(self.held.popleft()[1].tolist())

    def assign(self, ids: np.ndarray) -> np.ndarray:
        out = np.full(ids.size, -1, np.int64)
        for k, i in enumerate(ids.tolist()):
            s = self.slot_of[i]
            if s < 0 and self.free:
                s = self.free.popleft()
                self.slot_of[i] = s
            out[k] = s
        return out

    def release(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        slots = self.slot_of[ids]
        slots = slots[slots >= 0]
        self.slot_of[ids] = -1
        if slots.size:
            self.held.append((self.clock + self.delay, np.unique(slots)))


# ------------------------------------------------------------ store backend
class StoreBackend:
    """Values in engine stores, encoded with the codec, keyed ``<fingerprint>:<id>``.

    ``openers`` has one picklable callable per cache *level* (SpiderCache's
    layout puts important samples on one Redis and unimportant / homophily
    samples on another; a single store serves every level). Stores are opened
    lazily in each process, because a network connection must not cross a fork.

    When a store stops answering, calls to it are skipped for ``retry_after``
    seconds (the reads count as lost, the job goes on from storage) instead of
    paying a connection timeout on every batch.
    """

    kind = "store"
    shared_scope = True  # every process and rank that opens it sees the same values

    def __init__(self, openers: list[Callable[[], Any]], fingerprint: str, sample_shape: tuple[int, ...],
                 dtype: np.dtype, label: str = "store", retry_after: float = 5.0,
                 int_keys: bool = False) -> None:
        self.openers = list(openers)
        # int_keys: the store is already private to this data (the cache
        # server's session checks the pipeline fingerprint itself).
        self.int_keys = bool(int_keys)
        self.prefix = fingerprint[:16] + ":"
        self.sample_shape = tuple(sample_shape)
        self.dtype = np.dtype(dtype)
        self.label = label
        self.retry_after = float(retry_after)
        self._stores: list[Any] = [None] * len(self.openers)
        self._down_until = [0.0] * len(self.openers)
        self._pid = -1

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_stores"] = [None] * len(self.openers)
        d["_down_until"] = [0.0] * len(self.openers)
        d["_pid"] = -1
        return d

    def _store(self, level: int):
        if self._pid != os.getpid():
            self._stores = [None] * len(self.openers)
            self._pid = os.getpid()
        if time.monotonic() < self._down_until[level]:
            raise StoreUnavailable("store marked down")
        if self._stores[level] is None:
            try:
                self._stores[level] = self.openers[level]()
            except StoreUnavailable:
                self._mark_down(level)
                raise
        return self._stores[level]

    def _mark_down(self, level: int) -> None:
        self._down_until[level] = time.monotonic() + self.retry_after
        st = self._stores[level]
        self._stores[level] = None
        if st is not None:
            try:
                st.close()
            except Exception:  # closing a dead connection may fail; nothing to keep
                pass

    def _level_groups(self, n: int, levels: np.ndarray | None):
        if levels is None or len(self.openers) == 1:
            return [(0, np.arange(n))]
        lv = np.clip(levels, 0, len(self.openers) - 1)
        return [(int(l), np.flatnonzero(lv == l)) for l in np.unique(lv)]

    def keys(self, ids: np.ndarray) -> list:
        if self.int_keys:
            return ids.tolist()
        p = self.prefix
        return [p + str(i) for i in ids.tolist()]

    def read(self, ids: np.ndarray, slots=None, levels: np.ndarray | None = None):
        from ..engine.codec import decode

        values = np.zeros((ids.size, *self.sample_shape), self.dtype)
        ok = np.zeros(ids.size, np.bool_)
        errors = 0
        for level, pos in self._level_groups(ids.size, levels):
            if pos.size == 0:
                continue
            try:
                raw = self._store(level).get_many(self.keys(ids[pos]))
            except StoreUnavailable:
                self._mark_down(level)
                errors += 1
                continue
            for k, buf in zip(pos.tolist(), raw):
                if buf is None:
                    continue
                try:
                    v = np.asarray(decode(buf))
                except CorruptValue:
                    errors += 1
                    continue
                if v.shape != self.sample_shape or v.dtype != self.dtype:
                    errors += 1  # a value of another shape is never served
                    continue
                values[k] = v
                ok[k] = True
        return values, ok, errors

    def write(self, ids: np.ndarray, slots, values: np.ndarray, levels: np.ndarray | None = None) -> int:
        from ..engine.codec import encode

        errors = 0
        for level, pos in self._level_groups(ids.size, levels):
            if pos.size == 0:
                continue
            try:
                self._store(level).put_many(self.keys(ids[pos]), [encode(np.ascontiguousarray(values[k]))
                                                                   for k in pos.tolist()])
            except StoreUnavailable:
                self._mark_down(level)
                errors += 1
        return errors

    def delete(self, ids: np.ndarray) -> int:
        errors = 0
        if ids.size == 0:
            return 0
        for level in range(len(self.openers)):  # an evicted id may sit on any level: drop it everywhere
            try:
                self._store(level).delete_many(self.keys(ids))
            except StoreUnavailable:
                self._mark_down(level)
                errors += 1
        return errors

    def check(self) -> None:
        """Open every level now (main process): a server that does not answer is a UserError."""
        for level, opener in enumerate(self.openers):
            try:
                opener().close()
            except StoreUnavailable as exc:
                raise UserError(f"cache backend {self.label}: {exc}") from None

    def close(self) -> None:
        if self._pid == os.getpid():
            for st in self._stores:
                if st is not None:
                    st.close()
        self._stores = [None] * len(self.openers)

    def describe(self) -> str:
        return self.label


# ----------------------------------------------------------------- planner
class CachePlanner:
    """Turns the policy's decisions into plans (main process only)."""

    def __init__(self, policy: TrainingPolicy, backend, rank: int = 0, world: int = 1,
                 slot_delay: int = 4) -> None:
        self.policy = policy
        self.backend = backend
        self.rank = int(rank)
        self.world = int(world)
        # A shared backend (Redis, LMDB, ...) under DDP: every rank plans the
        # whole global batch, so all hold the same policy state.
        self.global_scope = bool(getattr(backend, "shared_scope", False)) and self.world > 1
        self.slots: SlotAllocator | None = None
        if getattr(backend, "kind", "") == "slots":
            self.slots = SlotAllocator(policy.n, backend.n_slots, slot_delay)
        # Under DDP the ranks run a global batch concurrently: an id that one
        # rank's part of the batch reads as a hit may be evicted by an admission
        # in another rank's part, and deleting it at once races that read. So
        # deletes wait ``slot_delay`` plans (the same bound on how far ranks and
        # prefetching workers run ahead that holds freed slots back) and skip
        # ids the policy has re-admitted meanwhile.
        self.evict_delay = max(1, int(slot_delay))
        self._pending_evict: list[np.ndarray] = []

    def _delayed_evictions(self, evicted: np.ndarray) -> np.ndarray:
        """This rank's share of the deletes that are now safe (see __init__)."""
        self._pending_evict.append(evicted)
        if len(self._pending_evict) <= self.evict_delay:
            return np.empty(0, np.int64)
        due = np.unique(self._pending_evict.pop(0))
        due = due[~self.policy.contains(due)] if due.size else due
        return due[self.rank:: self.world]  # deletes are spread over the ranks

    def plan(self, chunk: np.ndarray, own: slice, epoch: int, step: int) -> BatchPlan:
        ids = chunk if self.global_scope else chunk[own]
        lk = self.policy.lookup(ids)
        level = lk.level
        if self.global_scope:
            sel = own
            served, hit, sub, admit = lk.served[sel], lk.hit[sel], lk.substituted[sel], lk.admit[sel]
            level = None if level is None else level[sel]
            requested = chunk[sel]
            evict = self._delayed_evictions(np.asarray(lk.evicted, np.int64))
        else:
            served, hit, sub, admit, requested = lk.served, lk.hit, lk.substituted, lk.admit, ids
            evict = lk.evicted
        slots = np.full(served.size, -1, np.int64)
        if self.slots is not None:
            self.slots.tick()
            # Hits read the slots as they were when the batch began (a slot
            # freed below is held back, so its bytes stay put during this
            # batch); a hit on an id admitted in this batch is served from the
            # loaded value. Then evictions, then admissions.
            if hit.any():
                slots[hit] = self.slots.slot_of[served[hit]]
            self.slots.release(np.asarray(lk.evicted, np.int64))
            if admit.any():
                slots[admit] = self.slots.assign(served[admit])
                # admitted and evicted within this batch: the slot goes back too
                gone = served[admit][~self.policy.contains(served[admit])]
                if gone.size:
                    self.slots.release(gone)
            evict = np.empty(0, np.int64)
        return BatchPlan(epoch, step, np.asarray(requested, np.int64), np.asarray(served, np.int64),
                         hit, sub, admit, slots, np.asarray(evict, np.int64),
                         None if level is None else np.asarray(level, np.int8))


# ----------------------------------------------------------- the dataset
class CachedDataset(torch.utils.data.Dataset):
    """A map-style dataset whose batches are served through a cache.

    ``cache_point="decoded"`` (default) caches samples as read from storage and
    applies ``transform`` after the cache, so random augmentation stays random.
    ``cache_point="transformed"`` caches the transform's output; it refuses a
    random transform unless ``allow_random=True`` (then every epoch sees the
    same augmented copy, which is rarely what anyone wants).
    """

    def __init__(self, storage: SlowStorage, backend=None, transform: Callable | None = None,
                 cache_point: str = "decoded", allow_random: bool = False,
                 cached_shape: tuple[int, ...] | None = None) -> None:
        if cache_point not in ("decoded", "transformed"):
            raise UserError(f"cache point must be 'decoded' or 'transformed', got {cache_point!r}")
        if cache_point == "transformed" and is_random(transform) and not allow_random:
            raise UserError(f"refusing to cache after a random transform ({describe(transform)}): "
                            "cache decoded samples, or pass allow_random=True")
        self.storage = storage
        self.backend = backend
        self.transform = transform
        self.cache_point = cache_point
        self.write_back = True

    def __len__(self) -> int:
        return len(self.storage)

    @property
    def targets(self) -> np.ndarray:
        return self.storage.targets

    def fingerprint_extra(self) -> dict:
        return {"cache_point": self.cache_point,
                "cached_transform": describe(self.transform) if self.cache_point == "transformed" else "none"}

    def _prepare(self, raw: np.ndarray) -> np.ndarray:
        """Samples as they are cached: raw, or transformed when caching after the transform."""
        if self.cache_point == "transformed" and self.transform is not None:
            return self.transform(torch.from_numpy(raw)).numpy()
        return raw

    def _finish(self, values: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(values)
        if self.cache_point == "decoded" and self.transform is not None:
            x = self.transform(x)
        return x

    def __getitem__(self, index: int):
        """Uncached single read (for code that indexes the dataset directly)."""
        raw = self._prepare(self.storage.read_many(np.asarray([index])))
        return self._finish(raw)[0], int(self.storage.targets[index])

    def __getitems__(self, plan: BatchPlan) -> LoadedBatch:
        if not isinstance(plan, BatchPlan):  # a plain list of indices: no cache
            ids = np.asarray(plan, np.int64)
            raw = self._prepare(self.storage.read_many(ids))
            n = ids.size
            return LoadedBatch(self._finish(raw), torch.from_numpy(self.storage.targets[ids]), ids, ids,
                               np.zeros(n, np.bool_), np.zeros(n, np.bool_), storage_reads=n)
        served = plan.served.copy()
        hit = plan.hit.copy()
        sub = plan.substituted.copy()
        n = served.size
        backend = self.backend
        errors = 0
        values = None
        hit_pos = np.flatnonzero(hit)
        in_batch = np.empty(0, np.int64)
        if hit_pos.size and plan.admit.any():
            # A hit on an id this very batch admits (a repeat, or a stand-in
            # admitted a moment ago) is copied from the loaded value below.
            same = np.isin(served[hit_pos], served[plan.admit])
            in_batch, hit_pos = hit_pos[same], hit_pos[~same]
        if hit_pos.size and backend is not None:
            lv = None if plan.level is None else plan.level[hit_pos]
            got, ok, e = backend.read(served[hit_pos], plan.slots[hit_pos], levels=lv)
            errors += e
            values = np.empty((n, *got.shape[1:]), got.dtype)
            values[hit_pos[ok]] = got[ok]
            failed = hit_pos[~ok]
        else:
            failed = hit_pos
        lost = int(failed.size)
        if lost:
            # A failed stand-in is pointless: read what was asked for instead.
            served[failed] = np.where(sub[failed], plan.requested[failed], served[failed])
            hit[failed] = False
            sub[failed] = False
        miss_pos = np.flatnonzero(~hit)
        if in_batch.size:
            miss_pos = np.union1d(miss_pos, in_batch)
        t0 = time.perf_counter()
        storage_reads = 0
        if miss_pos.size:
            # Each distinct id is read once even if the batch asks twice.
            uniq, inv = np.unique(served[miss_pos], return_inverse=True)
            loaded = self._prepare(self.storage.read_many(uniq))
            storage_reads = int(uniq.size)
            if values is None:
                values = np.empty((n, *loaded.shape[1:]), loaded.dtype)
            values[miss_pos] = loaded[inv]
            if backend is not None:
                # Write what the plan admits, plus planned hits that were lost
                # (the policy still counts them resident: repair the store).
                want = np.zeros(n, np.bool_)
                want[miss_pos] = plan.admit[miss_pos] & ~hit[miss_pos]
                if lost and getattr(backend, "kind", "") == "store" and self.write_back:
                    want[failed] = True
                w = np.flatnonzero(want)
                if w.size:
                    wid, first = np.unique(served[w], return_index=True)
                    lv = None if plan.level is None else plan.level[w][first]
                    errors += backend.write(wid, plan.slots[w][first], values[w][first], levels=lv)
        storage_seconds = time.perf_counter() - t0
        if backend is not None and plan.evict.size:
            errors += backend.delete(plan.evict)
        x = self._finish(values)
        y = torch.from_numpy(self.storage.targets[served])
        return LoadedBatch(x, y, served, plan.requested, hit, sub, lost, errors, storage_reads,
                           storage_seconds, plan.epoch, plan.step)


def unwrap_batch(batch: LoadedBatch) -> LoadedBatch:
    """collate_fn: ``__getitems__`` already built the batch."""
    return batch
