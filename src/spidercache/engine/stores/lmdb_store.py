"""Persistent store on LMDB: survives close and reopen, one transaction per batch.

Keys are 9 bytes for ints (b"i" + signed big-endian int64) and b"s" + utf-8 for
strings. Writes are not fsynced per batch (``sync=False``): a cache does not
need every batch on the platter, and an fsync per batch would cost more than
the batch; ``close()`` syncs, so data written before a clean close is on disk,
and LMDB keeps the file consistent even after a crash (the last batches may
be lost). When the map fills up, it is grown (doubled) and the batch retried.

The environment is reopened lazily in a forked child (LMDB handles must not
cross ``fork``), and the store pickles as its path so DataLoader workers can
receive it.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Sequence

import lmdb
import numpy as np

from ...errors import UserError
from .base import Key, Store, Value, as_key_list, check_batch

_INT_KEY = struct.Struct(">q")
DEFAULT_MAP_SIZE = 1 << 30


def _lmdb_key(key: Key) -> bytes:
    if isinstance(key, str):
        return b"s" + key.encode("utf-8")
    return b"i" + _INT_KEY.pack(int(key))


class LMDBStore(Store):
    name = "lmdb"

    def __init__(
        self,
        path: str | os.PathLike,
        map_size: int = DEFAULT_MAP_SIZE,
        *,
        sync: bool = False,
        max_map_size: int = 1 << 40,
    ) -> None:
        self.path = os.fspath(path)
        self.map_size = int(map_size)
        self.sync = sync
        self.max_map_size = int(max_map_size)
        self._lock = threading.Lock()
        self._env: lmdb.Environment | None = None
        self._pid = -1
        self._open()

    def _open(self) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
            self._env = lmdb.open(
                self.path,
                map_size=self.map_size,
                subdir=True,
                sync=self.sync,
                readahead=False,
                max_dbs=0,
                lock=True,
            )
        except (OSError, lmdb.Error) as exc:
            raise UserError(f"cannot open LMDB store at {self.path}: {exc}") from exc
        self._pid = os.getpid()
        self.map_size = self._env.info()["map_size"]

    @property
    def env(self) -> lmdb.Environment:
        if self._env is None:
            raise ValueError(f"LMDB store {self.path} is closed")
        if self._pid != os.getpid():  # forked child: the parent's handle is not ours to use
            self._open()
        return self._env

    def get_many(self, keys) -> list[Value | None]:
        keys = as_key_list(keys)
        with self.env.begin(buffers=False) as txn:
            get = txn.get
            return [get(_lmdb_key(k)) for k in keys]

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        keys = as_key_list(keys)
        check_batch(keys, values)
        with self._lock:
            while True:
                try:
                    with self.env.begin(write=True) as txn:
                        for k, v in zip(keys, values):
                            txn.put(_lmdb_key(k), v)
                    break
                except lmdb.MapFullError:
                    if self.map_size * 2 > self.max_map_size:
                        return np.zeros(len(keys), np.bool_)
                    self.map_size *= 2
                    self.env.set_mapsize(self.map_size)
        return np.ones(len(keys), np.bool_)

    def delete_many(self, keys) -> None:
        keys = as_key_list(keys)
        if not keys:
            return
        with self._lock, self.env.begin(write=True) as txn:
            for k in keys:
                txn.delete(_lmdb_key(k))

    def __contains__(self, key: Key) -> bool:
        with self.env.begin(buffers=True) as txn:
            return txn.get(_lmdb_key(key)) is not None

    def __len__(self) -> int:
        return int(self.env.stat()["entries"])

    def nbytes(self) -> int:
        """Bytes of database pages in use (values plus B-tree overhead)."""
        st = self.env.stat()
        return int(st["psize"] * (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]))

    def clear(self) -> None:
        with self._lock:
            main_db = self.env.open_db()
            with self.env.begin(write=True) as txn:
                txn.drop(main_db, delete=False)

    def close(self) -> None:
        if self._env is not None and self._pid == os.getpid():
            self._env.sync(True)
            self._env.close()
        self._env = None

    def __getstate__(self) -> dict:
        return {
            "path": self.path,
            "map_size": self.map_size,
            "sync": self.sync,
            "max_map_size": self.max_map_size,
        }

    def __setstate__(self, state: dict) -> None:
        LMDBStore.__init__(
            self, state["path"], state["map_size"], sync=state["sync"], max_map_size=state["max_map_size"]
        )

    def __repr__(self) -> str:
        return f"LMDBStore({self.path!r}, map_size={self.map_size})"
