"""Memory over disk: values go to memory while its budget lasts, the rest to disk.

Reads look in memory first, then on disk. A value written to disk drops any
older copy in memory (memory is read first, so a stale copy there would win);
a value written to memory drops any older copy on disk so nothing stale is
left behind for later. Values are not promoted from disk to memory on read:
which values deserve memory is the policy's business, not the store's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Store, Value, as_key_list, check_batch
from .lmdb_store import LMDBStore
from .memory import MemoryStore


class SpillStore(Store):
    name = "spill"

    def __init__(self, memory: MemoryStore, disk: Store) -> None:
        self.memory = memory
        self.disk = disk

    def get_many(self, keys) -> list[Value | None]:
        keys = as_key_list(keys)
        out = self.memory.get_many(keys)
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            found = self.disk.get_many([keys[i] for i in missing])
            for i, v in zip(missing, found):
                out[i] = v
        return out

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        keys = as_key_list(keys)
        check_batch(keys, values)
        in_memory = self.memory.put_many(keys, values)
        stored = in_memory.copy()
        rest = np.flatnonzero(~in_memory)
        if rest.size:
            rest_keys = [keys[int(i)] for i in rest]
            self.memory.delete_many(rest_keys)
            stored[rest] = self.disk.put_many(rest_keys, [values[int(i)] for i in rest])
        put_in_memory = [k for k, m in zip(keys, in_memory) if m]
        if put_in_memory and _may_hold_anything(self.disk):
            self.disk.delete_many(put_in_memory)
        return stored

    def delete_many(self, keys) -> None:
        keys = as_key_list(keys)
        self.memory.delete_many(keys)
        self.disk.delete_many(keys)

    def __contains__(self, key) -> bool:
        return key in self.memory or key in self.disk

    def nbytes(self) -> int:
        return self.memory.nbytes() + max(self.disk.nbytes(), 0)

    def close(self) -> None:
        self.memory.close()
        self.disk.close()

    def __repr__(self) -> str:
        return f"SpillStore({self.memory!r}, {self.disk!r})"


def _may_hold_anything(store: Store) -> bool:
    # An empty LMDB needs no delete transaction; other stores: assume it might.
    if isinstance(store, LMDBStore):
        return len(store) > 0
    return True
