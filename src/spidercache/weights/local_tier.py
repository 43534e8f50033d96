"""This process's copy of weight chunks: the engine's ``Cache`` in front of the memcached pool.

A node that reads the same neighbours' weights every round would fetch every
chunk of every version from memcached every time. ``LocalChunks`` keeps them in
this process (LRU over an in-memory store of ``budget`` bytes) and fetches only
what it does not hold. A chunk's key names its version and a version never
changes, so a kept chunk is never stale: the manifest, which says which version
is current, is still read from memcached on every ``get``, and a new version is
a new set of keys. Kept chunks are checked (the codec's checksum) when read, and
``WeightCache`` checks each whole layer against its xxh3 when it assembles it.
"""

from __future__ import annotations

import numpy as np
import xxhash

from ..checks import positive
from ..engine.cache import Cache
from ..engine.policies import make_policy
from ..engine.stores.memory import MemoryStore


class LocalChunks:
    """``get_many(keys)`` like the pool's, served from this process when it can.

    >>> chunks = LocalChunks(pool_store, budget=256 << 20, chunk_bytes=1 << 20)
    >>> chunks.get_many(["sc/job/node01/w/3f2a/0"])   # memcached once, then this process
    """

    def __init__(self, pool, budget: int, chunk_bytes: int) -> None:
        positive(local_bytes=budget)
        self.pool = pool
        self.cache = Cache(make_policy("lru", max(1, budget // chunk_bytes)), MemoryStore(budget))

    def get_many(self, keys: list[str]) -> list:
        """Chunks by key, None where the pool lost one (not kept: the next read asks the pool again)."""
        ids = np.array(
            [xxhash.xxh3_64_intdigest(k.encode()) >> 1 for k in keys], np.int64
        )  # non-negative ids
        by_id = dict(zip(ids.tolist(), keys))
        return self.cache.get_or_load(ids, lambda miss: self.pool.get_many([by_id[i] for i in miss.tolist()]))

    def stats(self):
        """The local tier's ``CacheStats`` (hits: chunks not fetched from memcached)."""
        return self.cache.stats()
