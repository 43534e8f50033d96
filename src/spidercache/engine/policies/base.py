"""The one interface every eviction policy implements.

A policy decides which dense ``int64`` ids are resident; it never sees values.
State lives in flat numpy arrays indexed by id (grown on demand) plus a small
``int64`` array of scalars, and a numba-compiled kernel walks a whole batch of
ids at once. The same object therefore serves a live cache (a few thousand ids
per call) and the trace simulator (millions per call).

Hooks:

* admission: ``access(ids, admit=mask)`` or a callable ``admission(ids) ->
  mask`` given at construction; a miss whose ``admit`` entry is False is not
  inserted (it still counts as a miss).
* eviction: ``on_evict(ids)`` is called after each batch with the ids the batch
  evicted, so a store can drop their values.

Subclasses write three kernels (access, remove, shrink) and declare their per-id
arrays in ``_id_arrays``; everything else is here. A kernel evicts at most one
id per access (net), so an eviction buffer of ``len(ids) + 16`` always suffices.

Links between ids are ``int32`` (half the memory traffic of ``int64``), so a
policy holds at most ``MAX_IDS`` distinct ids; ``reserve`` says so beyond that.
``_where`` is ``int8`` unless a subclass sets ``_where_dtype`` (LRU, FIFO and
OPT store a slot number + 1 there, so one load answers both "resident?" and
"where is its state?").

Object sizes: a policy built with ``by_bytes=True`` has a capacity in bytes and
takes ``access(ids, sizes=...)``, one size per request, with libCacheSim's
definition: a miss whose object is larger than the whole cache is not inserted;
otherwise the policy evicts until the newcomer fits, then inserts it; a hit
keeps the size the object was inserted with (libCacheSim's ``cache_find_base``
does not update it either). Policies
that implement it set ``supports_sizes`` and write ``_access_sized``; the
per-id size array ``_osize`` and the bytes in use (``_used``) live here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, ClassVar

import numba as nb
import numpy as np

AdmissionHook = Callable[[np.ndarray], np.ndarray]
EvictionCallback = Callable[[np.ndarray], None]

# ``where[id]`` codes shared by all policies: 0 = unknown / absent,
# positive = resident (the policy may use several queue numbers),
# negative = remembered in a ghost list (not resident).
ABSENT = 0
# int32 links and slot numbers: one value (-1) is the NIL link.
MAX_IDS = 2**31 - 2
# Capacities are int64 scalars; anything larger holds every object anyway.
MAX_CAPACITY = 2**62


@dataclass
class PolicyStats:
    requests: int = 0
    hits: int = 0
    admissions: int = 0
    rejections: int = 0
    evictions: int = 0
    # byte counts (only for a policy built with ``by_bytes=True``)
    bytes_requested: int = 0
    bytes_hit: int = 0

    @property
    def misses(self) -> int:
        return self.requests - self.hits

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def byte_hit_ratio(self) -> float:
        return self.bytes_hit / self.bytes_requested if self.bytes_requested else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["misses"] = self.misses
        d["hit_ratio"] = self.hit_ratio
        return d


@nb.njit(cache=True)
def hit_bytes(sizes: np.ndarray, hits: np.ndarray) -> int:
    """The bytes of the requests that hit (one pass; ``sizes[hits].sum()`` gathers a copy first)."""
    total = 0
    for k in range(sizes.size):
        if hits[k]:
            total += sizes[k]
    return total


_NO_ADMIT = np.ones(1, np.bool_)
_NO_EVICT = np.empty(0, np.int64)


class Policy:
    """Base class. Subclasses set ``name``, ``_id_arrays`` and the kernels."""

    name: ClassVar[str] = "base"
    # per-id arrays: attribute name -> (dtype, fill value). ``_where`` is always present.
    _id_arrays: ClassVar[dict[str, tuple[type, int]]] = {}
    # dtype of ``_where``: int8 codes, or a wider int where a subclass keeps slot + 1.
    _where_dtype: ClassVar[type] = np.int8
    # number of int64 scalars a subclass keeps in ``self._s`` (index 0 is capacity, 1 is size).
    _n_scalars: ClassVar[int] = 2
    # whether ``_access_sized`` exists (capacity in bytes, one size per request)
    supports_sizes: ClassVar[bool] = False
    # whether one access may evict more than one id even with object counts (room for the evicted ids)
    evicts_many: ClassVar[bool] = False

    def __init__(
        self,
        capacity: int,
        n_ids: int = 0,
        *,
        admission: AdmissionHook | None = None,
        on_evict: EvictionCallback | None = None,
        by_bytes: bool = False,
    ) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if by_bytes and not self.supports_sizes:
            raise ValueError(f"policy {self.name!r} does not run with object sizes")
        self.admission = admission
        self.on_evict = on_evict
        self.by_bytes = bool(by_bytes)
        self._s = np.zeros(self._n_scalars, np.int64)
        self._s[0] = min(int(capacity), MAX_CAPACITY)
        self._used = np.zeros(1, np.int64)  # bytes in use (by_bytes only)
        self._osize = np.zeros(0, np.int64)
        self._n_ids = 0
        self._where: np.ndarray = np.zeros(0, self._where_dtype)
        for attr in self._id_arrays:
            setattr(self, attr, np.zeros(0, self._id_arrays[attr][0]))
        self._init_scalars()
        self._stats = PolicyStats()
        self.reserve(max(int(n_ids), 16))

    # ----------------------------------------------------------- public API
    @property
    def capacity(self) -> int:
        return int(self._s[0])

    @property
    def size(self) -> int:
        """Number of resident ids."""
        return int(self._s[1])

    @property
    def used_bytes(self) -> int:
        """Bytes held (a policy built with ``by_bytes=True``)."""
        return int(self._used[0])

    def access(
        self, ids: np.ndarray, admit: np.ndarray | None = None, sizes: np.ndarray | None = None
    ) -> np.ndarray:
        """Serve a batch of requests in order; return the hit mask.

        ``sizes`` (one per request, bytes) is required by, and only accepted
        by, a policy built with ``by_bytes=True``.
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if (sizes is not None) != self.by_bytes:
            raise ValueError("sizes are required with by_bytes=True and refused without it")
        if ids.size == 0:
            return np.zeros(0, np.bool_)
        self._check_ids(ids)
        if sizes is not None:
            sizes = np.ascontiguousarray(sizes, dtype=np.int64)
            if sizes.shape != ids.shape:
                raise ValueError("sizes must have the shape of ids")
            if sizes.size and int(sizes.min()) < 0:
                raise ValueError("object sizes must be >= 0")
        if admit is None and self.admission is not None:
            admit = self.admission(ids)
        use_admit = admit is not None
        admit_arr = np.ascontiguousarray(admit, dtype=np.bool_) if use_admit else _NO_ADMIT
        if use_admit and admit_arr.shape != ids.shape:
            raise ValueError("admit mask must have the shape of ids")
        hits = np.empty(ids.size, np.bool_)
        record = self.on_evict is not None
        # with sizes one miss may evict many (at most everything resident plus every newcomer), and
        # a policy whose one access may evict several (Cacheus) may empty the cache in one batch
        n_buf = ids.size + 16 + (self.size if sizes is not None or self.evicts_many else 0)
        evicted = np.empty(n_buf, np.int64) if record else _NO_EVICT
        st = self._stats
        if sizes is None:
            n_ev, n_adm, n_rej = self._access(ids, admit_arr, use_admit, hits, evicted, record)
        else:
            n_ev, n_adm, n_rej = self._access_sized(ids, sizes, admit_arr, use_admit, hits, evicted, record)
            st.bytes_requested += int(sizes.sum())
            st.bytes_hit += int(hit_bytes(sizes, hits))
        st.requests += ids.size
        st.hits += int(np.count_nonzero(hits))
        st.admissions += int(n_adm)
        st.rejections += int(n_rej)
        st.evictions += int(n_ev)
        if record and n_ev and self.on_evict is not None:
            self.on_evict(evicted[:n_ev].copy())
        return hits

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Mask of which ids are resident (does not count as an access)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape, np.bool_)
        ok = (ids >= 0) & (ids < self._n_ids)
        out[ok] = self._where[ids[ok]] > 0
        return out

    def remove(self, ids: np.ndarray) -> int:
        """Drop ids from the cache (e.g. their value was lost); returns how many were resident."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < self._n_ids)]
        if ids.size == 0:
            return 0
        return int(self._remove(ids))

    def resize(self, capacity: int) -> None:
        """Change the capacity; shrinking evicts (and reports) what no longer fits."""
        if int(capacity) < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._s[0] = min(int(capacity), MAX_CAPACITY)
        self._on_resize()
        excess = (
            (self.size if self.used_bytes > self.capacity else 0)
            if self.by_bytes
            else self.size - self.capacity
        )
        if excess > 0:
            evicted = np.empty(excess + 16, np.int64)
            n_ev = int(self._shrink(evicted))
            self._stats.evictions += n_ev
            if self.on_evict is not None and n_ev:
                self.on_evict(evicted[:n_ev].copy())

    def stats(self) -> PolicyStats:
        return PolicyStats(**asdict(self._stats))

    def reset_stats(self) -> None:
        self._stats = PolicyStats()

    def resident_ids(self) -> np.ndarray:
        return np.flatnonzero(self._where[: self._n_ids] > 0).astype(np.int64)

    def state_bytes(self) -> int:
        """Bytes of policy state (all arrays), for the memory figure."""
        total = self._where.nbytes + self._s.nbytes + self._osize.nbytes
        for attr in self._id_arrays:
            total += getattr(self, attr).nbytes
        total += sum(a.nbytes for a in self._extra_arrays())
        return int(total)

    def reserve(self, n_ids: int) -> None:
        """Make room for ids ``0 .. n_ids-1`` (grows by doubling)."""
        if n_ids <= self._n_ids:
            return
        if n_ids > MAX_IDS:
            raise ValueError(f"a policy holds at most {MAX_IDS} distinct ids, got id {n_ids - 1}")
        new_n = min(max(n_ids, 2 * self._n_ids), MAX_IDS) if self._n_ids else n_ids
        self._where = _grown(self._where, new_n, 0)
        for attr, (_dtype, fill) in self._id_arrays.items():
            setattr(self, attr, _grown(getattr(self, attr), new_n, fill))
        if self.by_bytes:
            self._osize = _grown(self._osize, new_n, 0)
        self._n_ids = new_n

    # ------------------------------------------------------ subclass hooks
    def _init_scalars(self) -> None:
        """Set scalars and any fixed-size arrays (called once, after capacity)."""

    def _on_resize(self) -> None:
        """Capacity changed: adjust derived sizes (e.g. queue targets)."""

    def _extra_arrays(self) -> list[np.ndarray]:
        return []

    def _access(self, ids, admit, use_admit, hits, evicted, record):  # pragma: no cover
        raise NotImplementedError

    def _access_sized(self, ids, sizes, admit, use_admit, hits, evicted, record):  # pragma: no cover
        raise NotImplementedError

    def _remove(self, ids):  # pragma: no cover
        raise NotImplementedError

    def _shrink(self, evicted):  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------- helpers
    def _check_ids(self, ids: np.ndarray) -> None:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0:
            raise ValueError("policy ids must be non-negative dense ids (remap keys first)")
        if hi >= self._n_ids:
            self.reserve(hi + 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capacity={self.capacity}, size={self.size})"


def _grown(arr: np.ndarray, n: int, fill) -> np.ndarray:
    out = np.empty(n, arr.dtype)
    out[: arr.size] = arr
    out[arr.size :] = fill
    return out
