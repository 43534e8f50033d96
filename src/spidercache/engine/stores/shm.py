"""Shared-memory slot store: one copy of the cache for every DataLoader worker of a process tree.

Created in the main process before the workers start; its arrays live in
shared memory (``torch.Tensor.share_memory_``), so forked or spawned workers
read and write the same bytes. ``n_slots`` slots of ``slot_bytes`` each hold
encoded values of any size up to ``slot_bytes`` (a longer value is refused,
as a full ``MemoryStore`` refuses one); the whole arena is allocated once, so
the store never holds more than ``n_slots * slot_bytes`` bytes.

Which slot holds an id is decided by the one deciding process (the planner
calls ``allocator(delay)`` and writes ``table``); readers and writers in any
process only follow the table. The slots are one class of the package's
one slot store (``slots.py``: layout, seqlock, checked gather), with
``version`` as its generation words and ``length`` as its lengths, plus an
``owner`` word per slot (the id held, -1 while a write is in progress): a
reader keeps a value only if the owner and the version are the same before
and after its copy, so a racing writer costs a miss, never wrong bytes (and
every value also carries the codec's checksum).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...errors import UserError
from . import slots
from .base import Store, Value, check_batch
from .gather import gather


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
        # load the gather kernel here, in the process that forks the DataLoader workers, so that
        # they inherit it rather than each loading it (numba's first use in a process: ~0.4 s)
        self.get_rows(np.empty(0, np.int64))

    def _views(self) -> None:
        for k, t in self._t.items():
            setattr(self, k, t.numpy())
        self.slots = slots.SlotClass(self.slot_bytes, self.version, self.length, self.data)

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

    def _slots(self, keys, puts: bool = False) -> tuple[np.ndarray, np.ndarray]:
        arr = np.asarray(keys)
        if arr.size and arr.dtype.kind not in "iu":  # "7" must not become id 7
            raise UserError("the shared-memory slot store takes integer ids")
        ids = arr.astype(np.int64, copy=False).reshape(-1)
        ok = (ids >= 0) & (ids < self.n_ids)
        if puts and not ok.all():
            raise UserError(f"the shared-memory slot store holds ids 0..{self.n_ids - 1}")
        s = np.where(ok, self.table[np.where(ok, ids, 0)], -1)
        return ids, s

    def get_rows(self, keys, split: int = 0) -> tuple[np.ndarray, torch.Tensor, np.ndarray, np.ndarray]:
        """One seqlock-checked snapshot of the values of ``keys``, cut at byte ``split``.

        Returns ``(heads, bodies, lengths, ok)``: value ``k`` is the first
        ``lengths[k]`` bytes of ``heads[k]`` (a numpy array) followed by
        ``bodies[k]`` (a uint8 tensor), where ``ok[k]`` (absent, being
        written, or rewritten while it was copied: False). Both are filled by
        one compiled pass over the slots (``gather.py``); a ``split`` equal
        to the values' payload offset makes ``bodies`` the payloads
        themselves. In a DataLoader worker ``bodies`` lies in shared memory,
        where the batch travels to the main process without another copy.
        """
        ids, s = self._slots(keys)
        ok = s >= 0
        s0 = np.where(ok, s, 0)
        ok &= self.owner[s0] == ids
        split = min(max(int(split), 0), self.slot_bytes)
        width = max(min(int(self.length[s0[ok]].max(initial=0)), self.slot_bytes), split)
        heads = np.empty((ids.size, split), np.uint8)
        bodies = _rows_tensor(ids.size, width - split)
        lengths = np.zeros(ids.size, np.int64)
        pos = np.flatnonzero(ok)
        gather(self.slots, pos, s[pos], heads, bodies.numpy(), lengths)
        # seqlock: the slot still holds this id after the copy
        ok &= (lengths >= 0) & (self.owner[s0] == ids)
        return heads, bodies, np.where(ok, lengths, 0), ok

    def get_many(self, keys) -> list[Value | None]:
        _, bodies, lengths, ok = self.get_rows(keys)
        rows = bodies.numpy()
        return [rows[k, : lengths[k]].tobytes() if ok[k] else None for k in range(len(ok))]

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        ids, s = self._slots(keys, puts=True)
        check_batch(ids.tolist(), values)
        views = [memoryview(v).cast("B") for v in values]
        lengths = np.fromiter((v.nbytes for v in views), np.int64, count=len(views))
        stored = (s >= 0) & (lengths <= self.slot_bytes)
        sel = np.flatnonzero(stored)
        if sel.size:
            src = np.frombuffer(b"".join(views[k] for k in sel.tolist()), np.uint8)
            offsets = np.zeros(sel.size, np.int64)
            np.cumsum(lengths[sel][:-1], out=offsets[1:])
            slots.write(self.slots, s[sel], src, offsets, lengths[sel], self.owner, ids[sel])
        return stored

    def delete_many(self, keys) -> None:
        ids, s = self._slots(keys)
        hit = (s >= 0) & (self.owner[np.where(s >= 0, s, 0)] == ids)
        j = s[hit]
        self.version[j] += 1
        self.owner[j] = -1
        self.version[j] += 1

    def nbytes(self) -> int:
        return int(self.length[self.owner >= 0].sum())

    def __repr__(self) -> str:
        return f"ShmSlotStore({self.n_slots} slots x {self.slot_bytes} B)"


def _rows_tensor(n: int, width: int) -> torch.Tensor:
    """An empty ``(n, width)`` uint8 tensor for a batch's rows; in shared memory inside a DataLoader worker.

    A worker's batch is pickled to the main process: from shared memory it goes
    as is, so the gather writes straight into it (``share_memory_()`` at
    pickling time would cost one more copy).
    """
    if n * width == 0 or torch.utils.data.get_worker_info() is None:
        return torch.empty((n, width), dtype=torch.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(n * width)).view(n, width)
