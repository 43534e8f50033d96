"""A cache is a policy (which ids are resident) plus a store (their bytes) plus statistics.

The policy decides, the store holds. For one batch of keys, ``Cache``:

1. maps keys to dense ids (``KeyRemapper``, or the keys themselves with
   ``dense_ids=True``) and lets the policy ``access`` them: the hit mask says
   which were resident, and the policy admits (or refuses) the misses and
   evicts to make room;
2. reads the hits' bytes from the store in one ``get_many`` and decodes them;
   a value the store lost, or one that fails its checksum, becomes a miss
   (counted as ``lost`` / ``errors``; damaged bytes are deleted) whose reloaded
   value is stored again -- the cache never returns data it could not verify;
3. deletes from the store the ids the batch evicted (after reading: an id can
   be a hit and then be evicted later in the same batch);
4. loads the misses (``get_or_load``) and puts the ones the policy admitted.

Keys name immutable values: a key always stands for the same value (a sample
index, an embedding row at a given version). Use ``invalidate`` when that is
not true any more.

When the store raises ``StoreUnavailable`` the cache counts it, serves every
request from the loader, and leaves the store alone for a back-off period
(doubling from ``retry_after`` up to ``max_retry_after`` seconds) before it
tries again, so a job never stops because its cache went away, and the cache
comes back by itself when its server does.

Thread-safety: policy state and statistics are guarded by one lock; store I/O
runs outside it. Races between threads can cost a spurious miss, never a
wrong value.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import CorruptValue, StoreUnavailable
from . import codec as default_codec
from .backoff import Backoff
from .ids import KeyRemapper
from .stores.base import Store

if TYPE_CHECKING:  # the policies package is only needed for the annotation
    from .policies.base import Policy

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
    """Policy + store + statistics. See the module docstring for the rules."""

    def __init__(
        self,
        policy: Policy,
        store: Store,
        *,
        codec: Any = default_codec,
        dense_ids: bool = False,
        compress: bool = False,
        retry_after: float = 1.0,
        max_retry_after: float = 30.0,
    ) -> None:
        self.policy = policy
        self.store = store
        self._encode = codec.encode
        self._decode = codec.decode
        self.compress = compress
        self.dense_ids = dense_ids
        self._remapper = None if dense_ids else KeyRemapper()
        self.retry_after = float(retry_after)
        self.max_retry_after = float(max_retry_after)
        self._backoff = Backoff(retry_after, max_retry_after)
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._stats = CacheStats()
        # _has_value[id]: the store holds this id's value (as far as we know).
        self._has_value = np.zeros(1024, np.bool_)
        self._evicted: list[np.ndarray] = []
        self._chained_on_evict = policy.on_evict
        policy.on_evict = self._on_evict

    # -------------------------------------------------------------- public
    def get_many(self, keys: Sequence[int] | np.ndarray) -> list[Any]:
        """Values for ``keys`` (``None`` for misses). Admitted misses await ``put_many``."""
        keys_arr, values, _ = self._lookup(keys)
        return values

    def put_many(self, keys: Sequence[int] | np.ndarray, values: Sequence[Any]) -> int:
        """Store values for keys the policy holds resident without a value; returns how many were stored."""
        keys_arr = self._as_keys(keys)
        if len(values) != keys_arr.size:
            raise ValueError(f"put_many got {keys_arr.size} keys but {len(values)} values")
        ids = self._to_ids(keys_arr)
        uniq, first = np.unique(ids, return_index=True)
        return self._store_values(uniq, keys_arr[first], [values[i] for i in first])

    def get_or_load(self, keys: Sequence[int] | np.ndarray, loader: Loader) -> list[Any]:
        """Values for all ``keys``: hits from the store, misses from ``loader(miss_keys)``.

        ``loader`` gets each missing key once (an int64 array, in order of first
        appearance) and returns their values in the same order.
        """
        keys_arr, values, ids = self._lookup(keys)
        missing = [i for i, v in enumerate(values) if v is None]
        if not missing:
            return values
        miss_pos = np.asarray(missing, np.int64)
        uniq, first = np.unique(ids[miss_pos], return_index=True)
        order = np.argsort(first)  # first appearance order for the loader
        uniq, first = uniq[order], first[order]
        load_keys = keys_arr[miss_pos[first]]
        loaded = list(loader(load_keys))
        if len(loaded) != load_keys.size:
            raise ValueError(f"loader returned {len(loaded)} values for {load_keys.size} keys")
        with self._lock:
            self._stats.loaded += len(loaded)
        by_id = dict(zip(uniq.tolist(), loaded))
        for i in missing:
            values[i] = by_id[int(ids[i])]
        self._store_values(uniq, load_keys, loaded)
        return values

    def invalidate(self, keys: Sequence[int] | np.ndarray) -> None:
        """Forget keys (their value changed): out of the policy and the store."""
        keys_arr = self._as_keys(keys)
        ids = self._to_ids(keys_arr)
        with self._lock:
            self.policy.remove(ids)
            self._has_value[ids] = False
        self._store_call(self.store.delete_many, keys_arr)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(**asdict(self._stats))

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = CacheStats()

    @property
    def store_down(self) -> bool:
        """True while the cache is backing off from an unavailable store."""
        return self._backoff.down

    def close(self) -> None:
        try:
            self.store.close()
        except StoreUnavailable:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cache({self.policy!r}, {self.store!r})"

    # ----------------------------------------------------------- internals
    def _as_keys(self, keys) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(keys, dtype=np.int64).reshape(-1))

    def _to_ids(self, keys_arr: np.ndarray) -> np.ndarray:
        if self._remapper is None:
            if keys_arr.size and int(keys_arr.min()) < 0:
                raise ValueError("dense_ids=True needs non-negative integer keys")
            return keys_arr
        with self._lock:
            return self._remapper.ids(keys_arr)

    def _store_keys(self, ids: np.ndarray) -> np.ndarray:
        return ids if self._remapper is None else self._remapper.keys(ids)

    def _grow_has_value(self, n: int) -> None:
        if n > self._has_value.size:
            grown = np.zeros(max(n, 2 * self._has_value.size), np.bool_)
            grown[: self._has_value.size] = self._has_value
            self._has_value = grown

    def _on_evict(self, ids: np.ndarray) -> None:
        # Deletes are deferred until the batch's hits have been read (see _lookup).
        self._evicted.append(ids)
        if self._chained_on_evict is not None:
            self._chained_on_evict(ids)

    def _note_unavailable(self, exc: StoreUnavailable) -> None:
        with self._lock:
            self._stats.store_unavailable += 1
            self.last_error = str(exc)
            self._backoff.failed()

    def _note_available(self) -> None:
        if self._backoff.wait != self.retry_after:
            with self._lock:
                self._backoff.succeeded()

    def _store_call(self, fn, *args):
        """Run a store call; on StoreUnavailable count it, start the back-off and return None."""
        if self.store_down:
            return None
        try:
            result = fn(*args)
        except StoreUnavailable as exc:
            self._note_unavailable(exc)
            return None
        self._note_available()
        return result

    def _lookup(self, keys) -> tuple[np.ndarray, list[Any], np.ndarray]:
        keys_arr = self._as_keys(keys)
        ids = self._to_ids(keys_arr)
        n = keys_arr.size
        values: list[Any] = [None] * n
        if n == 0:
            return keys_arr, values, ids
        if self.store_down:
            # Leave the policy alone: it must not admit what cannot be stored.
            with self._lock:
                st = self._stats
                st.requests += n
                st.misses += n
                st.bypassed += n
            return keys_arr, values, ids

        with self._lock:
            self._evicted = []
            hits = self.policy.access(ids)
            self._grow_has_value(self.policy._n_ids)
            uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
            resident_before = hits[first]  # a first occurrence that hits was resident before the batch
            has_value = self._has_value[uniq]
            to_read = uniq[resident_before & has_value]
            # resident, but its value never reached the store (put_many not called yet):
            # a miss; the value the caller loads will be stored
            never_put = uniq[resident_before & ~has_value]
            evicted = np.concatenate(self._evicted) if self._evicted else np.empty(0, np.int64)
            self._evicted = []
            if evicted.size:
                evicted = np.unique(evicted)
                evicted = evicted[~self.policy.contains(evicted)]
                # only values that reached the store need deleting (an id admitted and
                # evicted within this batch never got there)
                evicted = evicted[self._has_value[evicted]]
                self._has_value[evicted] = False
                self._stats.evictions += int(evicted.size)

        # Read the hits before deleting the evicted: an id can hit and be evicted in one batch.
        good: dict[int, Any] = {}
        bad_ids: list[int] = []
        corrupt_keys: list[int] = []
        n_errors = n_lost = n_bytes = 0
        if to_read.size:
            raw = self._store_call(self.store.get_many, self._store_keys(to_read))
            if raw is None:
                bad_ids = to_read.tolist()  # store went away: serve these from the loader
            else:
                for i, buf in zip(to_read.tolist(), raw):
                    if buf is None:
                        n_lost += 1
                        bad_ids.append(i)
                        continue
                    n_bytes += len(buf)
                    try:
                        good[i] = self._decode(buf)
                    except CorruptValue:
                        n_errors += 1
                        bad_ids.append(i)
                        corrupt_keys.append(i)
        if evicted.size:
            self._store_call(self.store.delete_many, self._store_keys(evicted))
        if corrupt_keys:
            self._store_call(self.store.delete_many, self._store_keys(np.asarray(corrupt_keys, np.int64)))

        with self._lock:
            if bad_ids and (n_lost or n_errors):
                # The store answered but had no good value. The id stays resident (the
                # policy's judgement stands); the loader's value will be stored again.
                self._has_value[np.asarray(bad_ids, np.int64)] = False
            # Every position whose id has a verified value gets it (even a policy miss:
            # the value is right, so loading it again would be waste).
            if good:
                for pos, i in enumerate(ids.tolist()):
                    v = good.get(i)
                    if v is not None:
                        values[pos] = v
            # Hits: policy hits served from the store, plus repeats of a miss admitted
            # earlier in this batch (the loader's value serves them; the policy counts
            # them as hits, and so does the simulator).
            first_was_hit = hits[first[inverse]]
            served = (
                np.isin(ids, np.fromiter(good.keys(), np.int64, len(good))) if good else np.zeros(n, np.bool_)
            )
            n_hits = int(np.count_nonzero(hits & (served | ~first_was_hit)))
            st = self._stats
            st.requests += n
            st.hits += n_hits
            st.misses += n - n_hits
            st.errors += n_errors
            st.lost += n_lost + int(never_put.size)
            st.bytes_read += n_bytes
        return keys_arr, values, ids

    def _store_values(self, uniq_ids: np.ndarray, keys: np.ndarray, values: Sequence[Any]) -> int:
        """Put the values of ids the policy holds resident without a stored value."""
        if uniq_ids.size == 0:
            return 0
        with self._lock:
            self._grow_has_value(int(uniq_ids.max()) + 1)
            want = self.policy.contains(uniq_ids) & ~self._has_value[uniq_ids]
        idx = np.flatnonzero(want)
        if idx.size == 0:
            return 0
        put_ids = uniq_ids[idx]
        if self.store_down:
            with self._lock:
                self.policy.remove(put_ids)  # resident without a value would only be a lost hit
            return 0
        blobs = [
            self._encode(values[i], compress=self.compress) if self.compress else self._encode(values[i])
            for i in idx.tolist()
        ]
        stored = self._store_call(self.store.put_many, keys[idx], blobs)
        with self._lock:
            if stored is None:
                self.policy.remove(put_ids)
                return 0
            stored = np.asarray(stored, np.bool_)
            ok_ids = put_ids[stored]
            self._has_value[ok_ids] = True
            refused = put_ids[~stored]
            if refused.size:
                self.policy.remove(refused)
            st = self._stats
            st.admissions += int(ok_ids.size)
            st.rejected += int(refused.size)
            st.bytes_written += sum(len(b) for b, s in zip(blobs, stored.tolist()) if s)
            return int(ok_ids.size)
