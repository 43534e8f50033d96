"""Shared-memory slot store: one copy of the cache for every DataLoader worker of a process tree.

Created in the main process before the workers start; its arrays live in
shared memory (``torch.Tensor.share_memory_``), so forked or spawned workers
read and write the same bytes. ``n_slots`` slots of ``slot_bytes`` each hold
encoded values of any size up to ``slot_bytes`` (a longer value is refused,
as a full ``MemoryStore`` refuses one); the whole arena is allocated once, so
the store never holds more than ``n_slots * slot_bytes`` bytes.

Which slot holds an id is decided by the one deciding process (the planner
calls ``allocator(delay)`` and writes ``table``); readers and writers in any
process only follow the table. Per slot: ``owner`` (the id held, -1 while a
write is in progress) and ``version`` (odd while a write is in progress): a
reader copies the bytes and keeps them only if the owner and version are the
same before and after, so a racing writer costs a miss, never wrong bytes
(and every value also carries the codec's checksum).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .base import Store, Value, check_batch


class ShmSlotStore(Store):
    name = "shm"
    # numpy views of the shared tensors in ``_t`` (made by ``_views``)
    data: np.ndarray
    length: np.ndarray
    owner: np.ndarray
    version: np.ndarray
    table: np.ndarray

    def __init__(self, n_ids: int, n_slots: int, slot_bytes: int, shared: bool = True) -> None:
        if n_slots < 1 or slot_bytes < 1:
            raise ValueError(f"need at least one slot of at least one byte, got {n_slots} x {slot_bytes}")
        self.n_ids, self.n_slots, self.slot_bytes = int(n_ids), int(n_slots), int(slot_bytes)
        self._t = {
            "data": torch.zeros((self.n_slots, self.slot_bytes), dtype=torch.uint8),
            "length": torch.zeros(self.n_slots, dtype=torch.int64),
            "owner": torch.full((self.n_slots,), -1, dtype=torch.int64),
            "version": torch.zeros(self.n_slots, dtype=torch.int64),
            "table": torch.full((self.n_ids,), -1, dtype=torch.int64),
        }
        if shared:
            for t in self._t.values():
                t.share_memory_()
        self._views()

    def _views(self) -> None:
        for k, t in self._t.items():
            setattr(self, k, t.numpy())

    def __getstate__(self):
        return {"n_ids": self.n_ids, "n_slots": self.n_slots, "slot_bytes": self.slot_bytes, "_t": self._t}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._views()

    @property
    def capacity_bytes(self) -> int:
        return self.n_slots * self.slot_bytes

    def allocator(self, delay: int):
        from ..plan import SlotAllocator

        return SlotAllocator(self.n_slots, delay, self.table)

    def _slots(self, keys) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(keys, np.int64).reshape(-1)
        ok = (ids >= 0) & (ids < self.n_ids)
        s = np.where(ok, self.table[np.where(ok, ids, 0)], -1)
        return ids, s

    def get_rows(self, keys, split: int = 0) -> tuple[np.ndarray, torch.Tensor, np.ndarray, np.ndarray]:
        """One seqlock-checked snapshot of the values of ``keys``, cut at byte ``split``.

        Returns ``(heads, bodies, lengths, ok)``: value ``k`` is the first
        ``lengths[k]`` bytes of ``heads[k]`` (a numpy array) followed by
        ``bodies[k]`` (a uint8 tensor), where ``ok[k]`` (absent, being
        written, or rewritten while it was copied: False). Each part is one
        gather out of the arena; a ``split`` equal to the values' payload
        offset makes ``bodies`` the payloads themselves. In a DataLoader
        worker ``bodies`` is gathered straight into shared memory, where the
        batch travels to the main process without another copy.
        """
        ids, s = self._slots(keys)
        ok = s >= 0
        s0 = np.where(ok, s, 0)
        v1 = self.version[s0].copy()
        ok &= ((v1 & 1) == 0) & (self.owner[s0] == ids)
        lengths = np.where(ok, self.length[s0], 0)
        split = min(max(int(split), 0), self.slot_bytes)
        width = max(int(lengths.max(initial=0)), split)
        heads = self.data[s0, :split]
        bodies = _rows_tensor(self.data[s0, split:width])
        # seqlock: a write that began after v1 was read changed the counter
        ok &= (self.version[s0] == v1) & (self.owner[s0] == ids)
        return heads, bodies, np.where(ok, lengths, 0), ok

    def get_many(self, keys) -> list[Value | None]:
        _, bodies, lengths, ok = self.get_rows(keys)
        rows = bodies.numpy()
        return [rows[k, : lengths[k]].tobytes() if ok[k] else None for k in range(len(ok))]

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        ids, s = self._slots(keys)
        check_batch(ids.tolist(), values)
        stored = np.zeros(ids.size, np.bool_)
        for k, (i, j) in enumerate(zip(ids.tolist(), s.tolist())):
            buf = memoryview(values[k]).cast("B")
            if j < 0 or buf.nbytes > self.slot_bytes:
                continue
            self.version[j] += 1
            self.owner[j] = -1
            self.data[j, : buf.nbytes] = np.frombuffer(buf, np.uint8)
            self.length[j] = buf.nbytes
            self.owner[j] = i
            self.version[j] += 1
            stored[k] = True
        return stored

    def delete_many(self, keys) -> None:
        ids, s = self._slots(keys)
        hit = (s >= 0) & (self.owner[np.where(s >= 0, s, 0)] == ids)
        for j in s[hit].tolist():
            self.version[j] += 1
            self.owner[j] = -1
            self.version[j] += 1

    def nbytes(self) -> int:
        return int(self.length[self.owner >= 0].sum())

    def __repr__(self) -> str:
        return f"ShmSlotStore({self.n_slots} slots x {self.slot_bytes} B)"


def _rows_tensor(rows: np.ndarray) -> torch.Tensor:
    """``rows`` (a fresh gather) as a tensor; copied into shared memory inside a DataLoader worker.

    (numpy's fancy indexing gathers; ``torch.index_select`` and ``np.take(out=)``
    over the arena's column slice were 30-100x slower here.) A worker's batch is
    pickled to the main process: from shared memory it goes as is, where
    ``share_memory_()`` at pickling time costs more than this one copy.
    """
    if rows.size == 0 or torch.utils.data.get_worker_info() is None:
        return torch.from_numpy(rows)
    out = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(rows.size)).view(rows.shape)
    np.copyto(out.numpy(), rows)
    return out
