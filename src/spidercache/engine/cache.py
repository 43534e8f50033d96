"""A cache is a policy (which ids are resident) plus a store (their bytes) plus statistics.

The policy decides, the store holds. A batch runs in two steps, the same for
every front-end:

1. ``plan`` (in the one process that holds the policy): ``engine.plan.Planner``
   asks the policy (``decide``: which id serves each request, hits, admitted
   misses, evicted ids, stand-ins) and writes the answer as a ``BatchPlan``;
2. ``run`` (wherever the bytes are): ``engine.execute`` reads and verifies the
   hits (a value the store lost, or one that fails its checksum, is served from
   the source and written back: never data it could not verify), loads the
   misses, stores the admissions, drops the evictions.

``get_or_load`` / ``get_many`` / ``put_many`` do both in one process and keep
``CacheStats``. The training loader plans in its main process and runs the
plans in its DataLoader workers with this same object (pickled without its
policy). Keys name immutable values (``invalidate`` when one changes); they are
any ints (mapped by ``KeyRemapper``), or dense ids with ``dense_ids=True``.

A store that raises ``StoreUnavailable`` is counted and left alone for a
back-off period (``StoreHandle``: doubling from ``retry_after`` to
``max_retry_after`` seconds) while every request is served from the loader and
the policy is left alone: a job never stops because its cache went away, and
the cache comes back by itself when its server does.

Thread-safety: planning and statistics hold one lock; store I/O and loading
run outside it. A race between threads can cost a spurious miss, never a
wrong value.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import StoreUnavailable
from . import codec
from .execute import Executed, Opened, StoreHandle, _keys, execute
from .ids import KeyRemapper
from .plan import BatchPlan, Planner, distinct

Loader = Callable[[np.ndarray], Sequence[Any]]


@dataclass
class CacheStats:
    requests: int = 0
    hits: int = 0
    misses: int = 0
    admissions: int = 0  # values put into the store
    rejected: int = 0  # admitted by the policy but refused by the store (e.g. byte budget)
    # values dropped from the store because the policy evicted them (an id evicted and
    # re-admitted within one batch keeps its value, so this can be below the policy's count)
    evictions: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    errors: int = 0  # values that failed their checksum / header (served as misses)
    lost: int = 0  # resident per the policy, but the store had no value (served as misses)
    store_unavailable: int = 0  # StoreUnavailable raised by the store
    bypassed: int = 0  # requests served without the store while it was down
    loaded: int = 0  # values produced by the loader

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hit_ratio"] = self.hit_ratio
        return d


class Cache:
    """Policy + store(s) + statistics: ``plan`` then ``run`` (see the module docstring).

    ``store``: a store object, or ``StoreHandle`` s (one per cache level, as the
    training loader opens them: lazily in each process). ``key`` maps a dense id
    to its store key (default: the caller's key, or the id with ``dense_ids``).
    ``rank`` / ``world`` / ``delay`` / ``shared_store``: see ``Planner``.
    """

    def __init__(
        self,
        policy,
        store: Any = (),
        *,
        key: Callable | None = None,
        dense_ids: bool = False,
        compress: bool = False,
        retry_after: float = 1.0,
        max_retry_after: float = 30.0,
        write_back: bool = True,
        rank: int = 0,
        world: int = 1,
        delay: int = 4,
        shared_store: bool = True,
    ) -> None:
        self.policy = policy
        if isinstance(store, (list, tuple)):
            self.stores = list(store)
            self.store = None
        else:
            self.stores = [
                StoreHandle(Opened(store), retry_after=retry_after, max_retry_after=max_retry_after)
            ]
            self.store = store
        opener = self.stores[0].opener if self.stores else None
        # a store that lives in this process tree (the slot store) gets its slots planned here
        here = opener.store if isinstance(opener, Opened) else None
        self.planner = Planner(policy, here, rank, world, delay, shared_store)
        self._remapper = None if dense_ids else KeyRemapper()
        self.key = key or (int if self._remapper is None else self._remapper)
        self.encode = functools.partial(codec.encode, compress=True) if compress else codec.encode
        self.write_back = bool(write_back)
        self._lock = threading.RLock()
        self._stats = CacheStats()
        self._step = 0
        self._awaiting: set[int] = set()  # resident ids whose value get_many's caller has yet to put

    # ----------------------------------------------------- plan / run
    def plan(self, ids: np.ndarray, own: slice | None = None, epoch: int = 0, step: int | None = None):
        """The policy's ``BatchPlan`` for dense ``ids`` (``own``: this rank's part of a global batch)."""
        with self._lock:
            self._step += 1
            own = slice(None) if own is None else own
            return self.planner.plan(ids, own, epoch, self._step if step is None else step)

    def run(self, plan: BatchPlan, load: Callable[[np.ndarray], list]) -> Executed:
        """Execute ``plan`` against the stores, misses from ``load(ids)`` (any process)."""
        return execute(plan, self.stores, load, self.key, self.write_back, self.encode)

    # ---------------------------------------------------------- public
    def get_or_load(self, keys: Sequence[int] | np.ndarray, loader: Loader) -> list[Any]:
        """Values for all ``keys``: hits from the store, misses from ``loader(miss_keys)``.

        ``loader`` gets each missing key once (an int64 array, in order of first
        appearance) and returns their values in the same order. ``None`` from it
        means "no value": returned as such, never cached (it is the store's "absent").
        """
        return self._batch(keys, loader)

    def get_many(self, keys: Sequence[int] | np.ndarray) -> list[Any]:
        """Values for ``keys`` (``None`` for misses). Admitted misses await ``put_many``."""
        return self._batch(keys, None)

    def put_many(self, keys: Sequence[int] | np.ndarray, values: Sequence[Any]) -> int:
        """Store values for keys the policy holds resident without a value; returns how many were stored."""
        ids = self._ids(keys)
        if len(values) != ids.size:
            raise ValueError(f"put_many got {ids.size} keys but {len(values)} values")
        uniq, first = np.unique(ids, return_index=True)
        with self._lock:
            want = self.policy.contains(uniq) & np.isin(uniq, list(self._awaiting))
        n = int(want.sum())
        if not n or self.store_down:
            return 0
        no = np.zeros(n, np.bool_)
        plan = BatchPlan(0, 0, uniq[want], uniq[want], no, no, ~no, uniq[:0])
        by_id = dict(zip(uniq.tolist(), (values[i] for i in first.tolist())))
        failures = self._failures()
        ex = self.run(plan, lambda ids: [by_id[i] for i in ids.tolist()])
        with self._lock:
            self._settle(plan, ex, failures, requests=False)
        return len(ex.written)

    def invalidate(self, keys: Sequence[int] | np.ndarray) -> None:
        """Forget keys (their value changed): out of the policy and the store."""
        ids = self._ids(keys)
        with self._lock:
            self.policy.remove(ids)
        for st in self.stores:
            st.call("delete_many", _keys(self.key, ids))

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(**asdict(self._stats))

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = CacheStats()

    @property
    def store_down(self) -> bool:
        """True while the cache is backing off from an unavailable store."""
        return any(st.backoff.down for st in self.stores)

    @property
    def last_error(self) -> str | None:
        return next((st.last_error for st in self.stores if st.last_error), None)

    def close(self) -> None:
        if self.store is None:
            for st in self.stores:
                st.close()
            return
        try:
            self.store.close()
        except StoreUnavailable:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        """What a worker process needs to ``run`` plans: no policy, no planner, no lock."""
        return {k: v for k, v in self.__dict__.items() if k not in ("policy", "planner", "_lock")}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()  # a copy that gets its policy and planner back can plan

    def __repr__(self) -> str:
        return f"Cache({self.policy!r}, {self.store if self.store is not None else self.stores!r})"

    # ------------------------------------------------------- internals
    def _ids(self, keys) -> np.ndarray:
        keys_arr = np.ascontiguousarray(np.asarray(keys, dtype=np.int64).reshape(-1))
        if self._remapper is None:
            if keys_arr.size and int(keys_arr.min()) < 0:
                raise ValueError("dense_ids=True needs non-negative integer keys")
            return keys_arr
        with self._lock:
            return self._remapper.ids(keys_arr)

    def _failures(self) -> int:
        return sum(st.failures for st in self.stores)

    def _batch(self, keys, loader: Loader | None) -> list[Any]:
        ids = self._ids(keys)
        if ids.size == 0:
            return []
        failures = self._failures()
        down = self.store_down
        if down:  # the policy is left alone: it must not admit what cannot be stored
            no = np.zeros(ids.size, np.bool_)
            plan = BatchPlan(0, 0, ids, ids, no, no, no, ids[:0])
        else:
            plan = self.plan(ids)
        ex = self.run(plan, self._loader(plan.served, loader))
        with self._lock:
            if down:
                self._stats.bypassed += ids.size
            self._settle(plan, ex, failures, loaded=loader is not None)
        return ex.values

    def _loader(self, served: np.ndarray, loader: Loader | None):
        """``execute``'s load (distinct ids, sorted) as ``loader`` called with keys in first-request order."""
        u, first = np.unique(served, return_index=True)
        where = dict(zip(u.tolist(), first.tolist()))

        def load(ids: np.ndarray) -> list:
            if loader is None:
                return [None] * ids.size
            order = np.argsort([where.get(i, served.size) for i in ids.tolist()], kind="stable")
            keys = self._remapper.keys(ids[order]) if self._remapper is not None else ids[order]
            got = list(loader(keys))
            if len(got) != keys.size:
                raise ValueError(f"loader returned {len(got)} values for {keys.size} keys")
            out: list = [None] * ids.size
            for j, v in zip(order.tolist(), got):
                out[j] = v
            with self._lock:
                self._stats.loaded += len(got)
            return out

        return load

    def record(self, plan: BatchPlan) -> None:
        """Count a batch that ran as planned (a store that cannot lose a value: the bag's fast tier)."""
        with self._lock:
            self._count(plan, plan.hit)
            self._stats.admissions += int(distinct(plan.served[plan.admit]).size)

    def _count(self, plan: BatchPlan, hit: np.ndarray) -> None:
        st = self._stats
        n, n_hits = plan.requested.size, int(np.count_nonzero(hit))
        st.requests += n
        st.hits += n_hits
        st.misses += n - n_hits
        st.evictions += int(plan.evict.size)

    def _settle(
        self, plan: BatchPlan, ex: Executed, failures: int, requests: bool = True, loaded: bool = False
    ) -> None:
        """Statistics of one run, and the policy set right where the store did not take a value."""
        if requests:  # not put_many's: its keys were counted when they were asked for
            self._count(plan, ex.hit)
        st = self._stats
        n = plan.requested.size
        st.errors += ex.damaged
        st.lost += ex.lost - ex.damaged - ex.unread
        st.bytes_read += ex.bytes_read
        st.admissions += len(ex.written)
        st.bytes_written += sum(ex.written.values())
        down = self._failures() - failures
        st.store_unavailable += down
        relost = plan.hit & ~ex.hit  # planned hits the store could not serve
        has = np.fromiter((v is not None for v in ex.values), np.bool_, n)
        written = np.fromiter(ex.written, np.int64, len(ex.written))
        self._awaiting.difference_update(written.tolist())
        missing = ex.served[(plan.admit | relost) & ~has]
        if not loaded:  # get_many: its caller will put_many them
            self._awaiting.update(missing.tolist())
        drop = np.setdiff1d(ex.served[plan.admit & has], written)
        if not down:  # refused by the store, not lost with it: a resident id without a value helps no one
            drop = np.union1d(drop, np.setdiff1d(ex.served[relost & has], written))
            st.rejected += int(drop.size)
        if loaded and missing.size:  # the loader gave None: no value to hold (None marks "absent")
            drop = np.union1d(drop, missing)
        if drop.size:
            self.policy.remove(drop)
