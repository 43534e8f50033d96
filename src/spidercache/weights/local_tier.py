"""This process's copy of weight chunks: the engine's ``Cache`` in front of the memcached pool.

A node that reads the same neighbours' weights every round would fetch every
chunk of every version from memcached every time, and on a Dask worker every
map task of a round reads the same reduced version. ``LocalChunks`` keeps
chunks in this process (LRU over an in-memory store of ``budget`` bytes) and
fetches only what it does not hold. The kept chunks belong to the process, not
to one ``WeightCache``: every ``WeightCache`` of the same pool, key prefix and
budget in this process (one per task, on a Dask worker) reads through one tier.

A chunk's key names its version and a version never changes, so a kept chunk
is never stale: the manifest, which says which version is current, is still
read from memcached on every ``get``, and a new version is a new set of keys.
Kept chunks are checked (the codec's checksum) when read, and ``WeightCache``
checks each whole layer against its xxh3 when it assembles it.
"""

from __future__ import annotations

import threading

import numpy as np
import xxhash

from ..checks import at_least
from ..engine.cache import Cache
from ..engine.policies import make_policy
from ..engine.stores.memory import MemoryStore

_TIERS: dict[tuple, tuple[Cache, threading.Lock]] = {}  # (scope, budget, chunk bytes) -> this process's tier
_TIERS_LOCK = threading.Lock()


class LocalChunks:
    """``get_many(keys)`` like the pool's, served from this process when it can.

    >>> chunks = LocalChunks(pool, budget=256 << 20, chunk_bytes=1 << 20, scope=(("10.0.0.1", 11211),))
    >>> chunks.get_many(["sc/job/node01/w/3f2a/0"])   # memcached once per process, then this process
    >>> chunks.requested, chunks.fetched               # this object's chunk reads, and those memcached served
    """

    def __init__(self, pool, budget: int, chunk_bytes: int, scope: tuple = ()) -> None:
        at_least(0, local_bytes=budget)
        self.pool = pool
        self.cache: Cache | None = None  # budget 0: no tier, every read goes to the pool (and is counted)
        if budget:
            with _TIERS_LOCK:
                key = (scope, budget, chunk_bytes)
                if key not in _TIERS:
                    cache = Cache(make_policy("lru", max(1, budget // chunk_bytes)), MemoryStore(budget))
                    _TIERS[key] = (cache, threading.Lock())
                self.cache, self._lock = _TIERS[key]
        self.requested = 0
        self.fetched = 0

    def get_many(self, keys: list[str]) -> list:
        """Chunks by key, None where the pool lost one (not kept: the next read asks the pool again)."""
        self.requested += len(keys)
        if self.cache is None:
            self.fetched += len(keys)
            return self.pool.get_many(keys)
        ids = np.array(
            [xxhash.xxh3_64_intdigest(k.encode()) >> 1 for k in keys], np.int64
        )  # non-negative ids
        by_id = dict(zip(ids.tolist(), keys))

        def from_pool(miss: np.ndarray) -> list:
            self.fetched += miss.size
            return self.pool.get_many([by_id[i] for i in miss.tolist()])

        # One reader at a time: two tasks that miss the same chunk fetch it once.
        with self._lock:
            return self.cache.get_or_load(ids, from_pool)

    def stats(self):
        """The process tier's ``CacheStats`` (hits: chunks not fetched from memcached), all users together."""
        return None if self.cache is None else self.cache.stats()
