"""The one protocol every store implements.

A store holds encoded bytes for keys; it never interprets them (the codec
does). Keys are ints (dense ids or user keys); stores also accept str keys.
All operations are batched, because a network round trip per key would cost
more than the value is worth.

* ``get_many(keys)`` -> one entry per key: the bytes (or a memoryview / bytes
  object the store keeps alive) or ``None`` when the store does not hold it.
* ``put_many(keys, values)`` -> a bool mask, True where the value was stored.
  A store may refuse a value (byte budget full, item too large); it says so in
  the mask and never evicts on its own initiative: the policy decides eviction.
* ``delete_many(keys)`` drops keys; absent keys are ignored.
* ``close()`` releases connections / files.

Network stores raise ``StoreUnavailable`` (and only that) when their server
does not answer, at construction or at any later call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable, Sequence, Union

import numpy as np

from ...errors import StoreUnavailable

Key = Union[int, str]
Value = Union[bytes, bytearray, memoryview]


def as_key_list(keys: Iterable[Key] | np.ndarray) -> list[Key]:
    """Normalise a batch of keys (numpy ints become Python ints)."""
    if isinstance(keys, np.ndarray):
        return keys.tolist()
    return [k if isinstance(k, str) else int(k) for k in keys]


def key_text(key: Key) -> str:
    """Text form of a key for stores with string keys; ints and strs never collide."""
    if isinstance(key, str):
        return "s:" + key
    return "i:" + str(int(key))


class Store(ABC):
    """Base class of the stores (subclasses implement the four batch methods)."""

    name: str = "store"

    @abstractmethod
    def get_many(self, keys: Sequence[Key] | np.ndarray) -> list[Value | None]:
        """Values for ``keys`` in order, ``None`` where absent."""

    @abstractmethod
    def put_many(self, keys: Sequence[Key] | np.ndarray, values: Sequence[Value]) -> np.ndarray:
        """Store values; return a bool mask of the ones stored."""

    @abstractmethod
    def delete_many(self, keys: Sequence[Key] | np.ndarray) -> None:
        """Drop keys (absent keys are ignored)."""

    def close(self) -> None:  # noqa: B027  (optional: stores with nothing to release keep it)
        """Release resources; the store must not be used afterwards."""

    # ------------------------------------------------ conveniences on top
    def get(self, key: Key) -> Value | None:
        return self.get_many([key])[0]

    def put(self, key: Key, value: Value) -> bool:
        return bool(self.put_many([key], [value])[0])

    def delete(self, key: Key) -> None:
        self.delete_many([key])

    def __contains__(self, key: Key) -> bool:
        return self.get(key) is not None

    def nbytes(self) -> int:
        """Bytes of values held (or the store's own estimate of them); -1 if unknown."""
        return -1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_batch(keys: list, values: Sequence) -> None:
    if len(keys) != len(values):
        raise ValueError(f"put_many got {len(keys)} keys but {len(values)} values")


__all__ = ["Store", "Key", "Value", "StoreUnavailable", "as_key_list", "key_text", "check_batch"]
