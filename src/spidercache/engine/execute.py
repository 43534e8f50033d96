"""Execute: wherever the bytes are, a ``BatchPlan`` runs against the stores and the source.

One batch, in order: one ``get_many`` per level for the planned hits (a
value that is absent, or fails the codec's checksum, is *lost*: the request
is served from the source instead, and a stand-in that cannot be read gives
way to the requested id); one ``load`` call for every distinct id that must
come from the source; one ``put_many`` per level for the admissions (and,
with ``write_back``, for the lost hits, so the store agrees with the policy
again); then the deletes of the evictions.

``StoreHandle`` opens a store lazily in each process (a connection must not
cross a fork) and, when it stops answering, leaves it alone for a back-off
period (``Backoff``: doubling from ``retry_after`` to ``max_retry_after``)
during which its reads count as lost and the job goes on from the source.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import StoreUnavailable
from . import codec, codec_rows
from .backoff import Backoff
from .plan import BatchPlan

DOWN = object()  # what ``StoreHandle.call`` returns while the store is unavailable


class StoreHandle:
    """A store opened on first use in each process, with a back-off when it fails."""

    def __init__(
        self,
        opener: Callable[[], Any],
        label: str = "store",
        retry_after: float = 1.0,
        max_retry_after: float = 30.0,
    ) -> None:
        self.opener = opener
        self.label = label
        self.retry = (float(retry_after), float(max_retry_after))
        self._reset()

    def _reset(self) -> None:
        self.failures = 0  # StoreUnavailable raised by the store (each starts a back-off)
        self.last_error: str | None = None
        self.partial_errors = 0  # failed servers behind the last call that still answered
        self.row_split = 0  # where get_rows cuts values: the last batch's payload offset
        self._store = None
        self._pid = os.getpid()
        self.backoff = Backoff(*self.retry)

    def __getstate__(self):
        return {"opener": self.opener, "label": self.label, "retry": self.retry}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._reset()

    def _open(self):
        """The store, opened in this process if need be; None while it is unavailable."""
        if self._pid != os.getpid():
            self._reset()
        if self._store is None and not self.backoff.down:
            try:
                self._store = self.opener()
            except StoreUnavailable as exc:
                self._drop(exc)
        return self._store

    def call(self, method: str, *args):
        """``store.method(*args)``; ``DOWN`` when the store is unavailable (counted by the caller)."""
        st = self._open()
        if st is None:
            return DOWN
        try:
            before = getattr(st, "node_errors", 0)
            result = getattr(st, method)(*args)
            # a store over several servers answers for the live ones and counts the dead
            self.partial_errors = getattr(st, "node_errors", 0) - before
        except StoreUnavailable as exc:
            self._drop(exc)
            return DOWN
        self.backoff.succeeded()
        return result

    def offers(self, method: str) -> bool:
        """Whether the store, once open, has ``method`` (e.g. the slot store's ``get_rows``)."""
        return callable(getattr(self._open(), method, None))

    def _drop(self, exc: StoreUnavailable) -> None:
        self.failures += 1
        self.last_error = str(exc)
        self.backoff.failed()
        st, self._store = self._store, None
        if st is not None and not isinstance(self.opener, Opened):  # a store given to us stays usable
            try:
                st.close()
            except Exception:  # closing a dead connection may fail; nothing to keep
                pass

    def close(self) -> None:
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None


@dataclass
class Executed:
    """A plan after it ran: the values per request and what it cost."""

    values: list
    served: np.ndarray
    hit: np.ndarray  # read from a store (planned hits whose read failed are False)
    substituted: np.ndarray
    lost: int = 0  # planned cache reads that had to go to the source
    store_errors: int = 0  # failed store calls and damaged values
    source_reads: int = 0
    source_seconds: float = 0.0
    written: dict = field(default_factory=dict)  # id -> encoded bytes stored
    runs: list = field(default_factory=list)  # codec_rows.Run: hits decoded as views of one array
    damaged: int = 0  # values that failed their checksum / header (part of ``lost``)
    unread: int = 0  # planned reads skipped or failed because the store was down (part of ``lost``)
    bytes_read: int = 0


def _levels(n: int, level: np.ndarray | None, n_levels: int):
    if level is None or n_levels == 1:
        return [(0, np.arange(n))]
    lv = np.clip(level, 0, n_levels - 1)
    return [(int(x), np.flatnonzero(lv == x)) for x in np.unique(lv)]


def _keys(key: Any, ids: np.ndarray) -> list:
    many = getattr(key, "many", None)  # a key function that maps a whole batch at once
    return many(ids) if many is not None else [key(i) for i in ids.tolist()]


def _read(plan: BatchPlan, pos: np.ndarray, stores: Sequence[StoreHandle], key: Any, out: Executed):
    """Read the hits at ``pos`` into ``out.values``; returns the positions that failed."""
    failed: list[int] = []
    lv = None if plan.level is None else plan.level[pos]
    for level, sub in _levels(pos.size, lv, len(stores)):
        p = pos[sub]
        st = stores[level]
        keys = _keys(key, plan.served[p])
        rows: Any = None
        raw: Any = None
        if st.offers("get_rows"):
            rows = st.call("get_rows", keys, st.row_split)
        else:
            raw = st.call("get_many", keys)
        if rows is DOWN or raw is DOWN:
            out.store_errors += 1
            out.unread += p.size
            failed.extend(p.tolist())
            continue
        out.store_errors += st.partial_errors
        if raw is None:
            got = codec_rows.decode_rows(*rows)
            st.row_split = got.split
            out.damaged += len(got.bad)
            out.bytes_read += int(rows[2][rows[3]].sum())
            out.runs += [codec_rows.Run(p[r.positions], r.batch) for r in got.runs]
            decoded = got.values
        else:
            found = [b for b in raw if b is not None]
            values_ok, bad = codec.decode_many(found)
            out.damaged += len(bad)
            out.bytes_read += sum(len(b) for b in found)
            it = iter(values_ok)
            decoded = [None if buf is None else next(it) for buf in raw]
        for k, v in zip(p.tolist(), decoded):
            if v is None:
                failed.append(k)
            else:
                out.values[k] = v
    out.store_errors += out.damaged
    return np.asarray(failed, np.int64)


def execute(
    plan: BatchPlan,
    stores: Sequence[StoreHandle],
    load: Callable[[np.ndarray], list],
    key: Any = int,  # store key of an id: a function, or with ``many(ids)`` for a whole batch
    write_back: bool = True,
    encode: Callable[[Any], bytes] = codec.encode,
) -> Executed:
    """Run ``plan``: hits from ``stores`` (one per level), misses from ``load(ids)``."""
    served, hit, sub = plan.served.copy(), plan.hit.copy(), plan.substituted.copy()
    n = served.size
    out = Executed([None] * n, served, hit, sub)
    values = out.values
    hit_pos = np.flatnonzero(hit)
    in_batch = np.empty(0, np.int64)
    if 0 < hit_pos.size < n:
        # a hit on an id this very batch loads anyway (a miss or an admission) is copied from the loaded value
        same = np.isin(served[hit_pos], served[~hit])
        in_batch, hit_pos = hit_pos[same], hit_pos[~same]
    failed = _read(plan, hit_pos, stores, key, out) if hit_pos.size and stores else hit_pos
    if failed.size:  # a failed stand-in is pointless: read what was asked for instead
        served[failed] = np.where(sub[failed], plan.requested[failed], served[failed])
        hit[failed] = sub[failed] = False
    out.lost = int(failed.size)
    miss_pos = np.union1d(np.flatnonzero(~hit), in_batch)
    if miss_pos.size:
        uniq, inv = np.unique(served[miss_pos], return_inverse=True)
        t0 = time.perf_counter()
        loaded = load(uniq)
        out.source_seconds = time.perf_counter() - t0
        out.source_reads = int(uniq.size)
        for k, j in zip(miss_pos.tolist(), inv.reshape(-1).tolist()):
            values[k] = loaded[j]
        if stores:
            want = np.zeros(n, np.bool_)
            want[miss_pos] = plan.admit[miss_pos] & ~hit[miss_pos]
            if write_back and failed.size:
                want[failed] = True
            out.store_errors += _write(plan, served, want, values, stores, key, encode, out.written)
    if stores and plan.evict.size:
        for st in stores:  # an evicted id may sit on any level: drop it everywhere
            if st.call("delete_many", _keys(key, plan.evict)) is DOWN:
                out.store_errors += 1
    return out


def _write(plan, served, want, values, stores, key, encode, written: dict) -> int:
    w = np.flatnonzero(want)
    if not w.size:
        return 0
    wid, first = np.unique(served[w], return_index=True)
    pos = w[first]
    pos = pos[[values[k] is not None for k in pos.tolist()]]
    errors = 0
    lv = None if plan.level is None else plan.level[pos]
    for level, sub in _levels(pos.size, lv, len(stores)):
        p = pos[sub]
        blobs = [encode(values[k]) for k in p.tolist()]
        if blobs:  # the next reads cut values where these payloads start
            stores[level].row_split = codec.header_size(blobs[0])
        ok = stores[level].call("put_many", _keys(key, served[p]), blobs)
        if ok is DOWN:
            errors += 1
            continue
        errors += stores[level].partial_errors
        for k, b, good in zip(p.tolist(), blobs, ok):
            if good:
                written[int(served[k])] = len(b)
    return errors


class Opened:
    """An opener for a store that already exists (the shared-memory store travels with it)."""

    def __init__(self, store) -> None:
        self.store = store

    def __call__(self):
        return self.store
