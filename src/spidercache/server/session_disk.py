"""A session's disk side: its LMDB under the spill directory, for spilled values
and (with ``--persist``) a write-through copy of every value.

``SessionDisk`` is mixed into ``Session``; it uses the session's ``arena``,
``lock``, ``counters``, ``policy``, ``config`` and ``manager``. A value is
*spilled* when it is on disk only: its index entry reads SPILLED, and the
counters follow every change of such an entry, so deleted or rewritten values
are not counted.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..engine.stores.lmdb_store import LMDBStore
from .shm import ABSENT, SLOT_SIZES, SPILLED, unpack


class SessionDisk:
    @property
    def disk_path(self) -> str | None:
        if not self.config.spill_dir:
            return None
        return os.path.join(self.config.spill_dir, f"session-{self.id}")

    def _open_disk(self) -> LMDBStore | None:
        if self.disk is None and self.disk_path is not None:
            self.disk = LMDBStore(self.disk_path, map_size=64 << 20)
        return self.disk

    def reload_from_disk(self, chunk_bytes: int = 64 << 20) -> int:
        """After a restart: values on disk go back into memory while the budget
        lasts (in id order); the rest stay on disk, marked SPILLED."""
        if self._open_disk() is None:
            return 0
        n = 0
        ids: list[int] = []
        values: list[bytes] = []
        size = 0
        with self.disk.env.begin() as txn:
            for key, value in txn.cursor():
                if key[:1] != b"i":
                    continue
                ids.append(struct.unpack(">q", key[1:9])[0])
                values.append(bytes(value))
                size += len(value)
                if size >= chunk_bytes:
                    n += self._reload_chunk(ids, values)
                    ids, values, size = [], [], 0
        if ids:
            n += self._reload_chunk(ids, values)
        return n

    def _reload_chunk(self, ids: list[int], values: list[bytes]) -> int:
        ids_a = np.array(ids, np.int64)
        lengths = np.fromiter((len(v) for v in values), np.int64, count=len(values))
        offsets = np.zeros(ids_a.size, np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        data = np.frombuffer(b"".join(values), np.uint8)
        with self.lock:
            admitted, _ = self.arena.put(ids_a, lengths, offsets, data, self.manager.room(self))
            if self.policy is not None and admitted.any():
                self._policy_capacity(ids_a[admitted], lengths[admitted])
                self.cache.plan(ids_a[admitted])
            rest = np.flatnonzero(~admitted)
            self._mark_spilled(ids_a[rest], lengths[rest])
        return ids_a.size

    # spilled = on disk only (index entry SPILLED); the counters follow every
    # change of such an entry, so deleted or rewritten values are not counted
    def _mark_spilled(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        if ids.size == 0:
            return
        self.arena.mark(ids, SPILLED)
        for i, n in zip(ids.tolist(), lengths.tolist()):
            old = self._spilled_len.get(i)
            if old is None:
                self.counters.spilled_items += 1
            else:
                self.counters.spilled_bytes -= old
            self._spilled_len[i] = int(n)
            self.counters.spilled_bytes += int(n)

    def _forget_spilled(self, ids: np.ndarray) -> None:
        if not self._spilled_len:
            return
        for i in ids.tolist():
            n = self._spilled_len.pop(i, None)
            if n is not None:
                self.counters.spilled_items -= 1
                self.counters.spilled_bytes -= n

    def _merge_disk(self, ids, e, lengths, rows, spilled) -> np.ndarray:
        values = self.disk.get_many(ids[spilled]) if self.disk is not None else [None] * spilled.size
        lengths[spilled] = [len(v) if v is not None else ABSENT for v in values]
        found = lengths >= 0
        rank = np.cumsum(found) - 1
        width = max(rows.shape[1] if rows.size else 0, int(lengths[spilled].max(initial=0)))
        out = np.zeros((int(found.sum()), width), np.uint8)
        if rows.size:
            out[rank[e >= 0], : rows.shape[1]] = rows
        for i, v in zip(spilled.tolist(), values):
            if v is not None:
                out[rank[i], : len(v)] = np.frombuffer(v, np.uint8)
        return out

    def _disk_put(self, ids: np.ndarray, values: list[bytes]) -> None:
        self.disk.put_many(ids, values)

    def _spill_for_index(self, max_id: int) -> None:
        """A spilling session whose memory is full still needs index entries for the
        ids it spills: move values of the highest resident ids to disk until the
        index (and policy state) for ``max_id`` fits. Freed slots grow the free
        lists a little, hence the margin and the second round."""
        per_id = 3 if self.policy is not None else 1
        for _ in range(3):
            need = self.arena.index_cost(max_id) * per_id - self.manager.room(self)
            resident = np.flatnonzero(self.arena.index >= 0)[::-1]
            if need <= 0 or resident.size == 0:
                return
            _, cls, _ = unpack(self.arena.index[resident])
            k = int(np.searchsorted(np.cumsum(SLOT_SIZES[cls]), need + need // 8 + (64 << 10))) + 1
            victims = resident[:k]
            _, lengths, rows = self.arena.gather(victims)
            self._disk_put(victims, [rows[r, :n].tobytes() for r, n in enumerate(lengths.tolist())])
            self._mark_spilled(victims, lengths)
            if self.policy is not None:
                self.policy.remove(victims)

    def _on_evict(self, ids: np.ndarray) -> None:
        self.counters.evicted += ids.size
        if self.spill and self._open_disk() is not None:
            ids = ids[self.arena.entries(ids) >= 0]
            _, lengths, rows = self.arena.gather(ids)
            self._disk_put(ids, [rows[r, :n].tobytes() for r, n in enumerate(lengths.tolist())])
            self._mark_spilled(ids, lengths)
        else:
            self.arena.mark(ids, ABSENT)


def remove_tree(path: str | None) -> None:
    if path and os.path.isdir(path):
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
