"""In-process store: a dict with a hard byte budget.

Values are kept as given (no copy): ``bytes`` are immutable, and a caller who
hands over a ``bytearray`` or ``memoryview`` gives up the right to change it.
A put that would take the total over ``budget_bytes`` is refused (False in the
returned mask): the policy decides what to evict, the store only enforces the
budget. ``budget_bytes=None`` means no budget.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from .base import Key, Store, Value, as_key_list, check_batch


def _size(value: Value) -> int:
    return value.nbytes if isinstance(value, memoryview) else len(value)


class MemoryStore(Store):
    name = "memory"

    def __init__(self, budget_bytes: int | None = None) -> None:
        if budget_bytes is not None and int(budget_bytes) < 0:
            raise ValueError(f"budget_bytes must be non-negative, got {budget_bytes}")
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        self._data: dict[Key, Value] = {}
        self._nbytes = 0
        self._lock = threading.Lock()

    def get_many(self, keys) -> list[Value | None]:
        get = self._data.get
        return [get(k) for k in as_key_list(keys)]

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        keys = as_key_list(keys)
        check_batch(keys, values)
        stored = np.zeros(len(keys), np.bool_)
        with self._lock:
            for i, (k, v) in enumerate(zip(keys, values)):
                size = _size(v)
                old = self._data.get(k)
                freed = _size(old) if old is not None else 0
                if self.budget_bytes is not None and self._nbytes - freed + size > self.budget_bytes:
                    continue
                self._data[k] = v
                self._nbytes += size - freed
                stored[i] = True
        return stored

    def delete_many(self, keys) -> None:
        with self._lock:
            for k in as_key_list(keys):
                old = self._data.pop(k, None)
                if old is not None:
                    self._nbytes -= _size(old)

    def free_bytes(self) -> int | None:
        """Bytes left under the budget (None when unbounded)."""
        return None if self.budget_bytes is None else self.budget_bytes - self._nbytes

    def nbytes(self) -> int:
        return self._nbytes

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Key) -> bool:
        return (key if isinstance(key, str) else int(key)) in self._data

    def keys(self) -> list[Key]:
        return list(self._data)

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self._nbytes = 0

    def __repr__(self) -> str:
        return (
            f"MemoryStore(budget_bytes={self.budget_bytes}, nbytes={self._nbytes}, items={len(self._data)})"
        )
