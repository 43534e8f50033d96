"""A client's read-only view of one session's slots (same host only).

The header and index are in ``shm.py``, the slots and their checked gather in
the engine's ``stores/slots.py``; this side maps the segments, gathers a batch
with one compiled pass per slot class (seqlock, copy and checksum together),
and checks, before every read, that the server behind the mapping is alive
(``check_alive``).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from ..engine.stores.gather import BAD, TORN, entry_classes, gather_entries
from ..engine.stores.slots import GEN_MASK, SLOT_SIZES, Segment, SlotClass, class_layout, map_class, unpack
from .shm import (
    ABSENT,
    H_CLASS0,
    H_HEARTBEAT,
    H_INDEX_CAP,
    H_INDEX_GEN,
    H_MAGIC,
    H_PID,
    H_STATE,
    H_VERSION,
    HEADER_WORDS,
    MAGIC,
    SHM_DIR,
    SPILLED,
    STALE_AFTER_NS,
    STATE_LIVE,
)

assert TORN == SPILLED  # a value torn under the reader is asked of the server, as a spilled one


class StaleMapping(Exception):
    """The server behind a mapping is gone or the session was destroyed."""


class ShmReader:
    """A client's read-only view of one session's slots (same host only)."""

    def __init__(
        self, header_name: str, shm_dir: str = SHM_DIR, confirm: Callable[[], bool] | None = None
    ) -> None:
        self.shm_dir = shm_dir
        # confirm(): asks the server (over gRPC) whether it is still the process that
        # made this mapping; called when the heartbeat is late (see limits.py)
        self.confirm = confirm
        self._confirmed_ns = 0
        self.prefix = header_name[: -len("-hdr")]
        self.header_seg = Segment(header_name, HEADER_WORDS * 8, False, shm_dir)
        self.header = self.header_seg.array(np.int64, HEADER_WORDS)
        if int(self.header[H_MAGIC]) != MAGIC:
            raise StaleMapping("not a Spider Cache segment")
        self.server_pid = int(self.header[H_PID])
        self.version = -1
        self.index = np.full(0, ABSENT, np.int64)
        self.classes: dict[int, SlotClass] = {}
        self._refresh()

    def _refresh(self) -> None:
        version = int(self.header[H_VERSION])
        if version == self.version:
            return
        gen = int(self.header[H_INDEX_GEN])
        if gen > 0:
            cap = int(self.header[H_INDEX_CAP])
            try:
                seg = Segment(f"{self.prefix}-idx{gen}", cap * 8, False, self.shm_dir)
                self.index = seg.array(np.int64, cap)
            except FileNotFoundError:
                return  # replaced again meanwhile; the next call retries
        for c in np.flatnonzero(self.header[H_CLASS0 : H_CLASS0 + SLOT_SIZES.size]):
            c = int(c)
            if c not in self.classes:
                cap = int(self.header[H_CLASS0 + c])
                slot_size = int(SLOT_SIZES[c])
                _, _, _, total = class_layout(cap, slot_size)
                seg = Segment(f"{self.prefix}-c{c}", total, False, self.shm_dir)
                self.classes[c] = map_class(seg, cap, slot_size)
        self.version = version

    def check_alive(self) -> None:
        """Raise StaleMapping unless the server behind this mapping is alive.

        ``os.kill(pid, 0)`` catches a reaped server at once, but it succeeds on a
        zombie (a killed server whose parent does not reap it, e.g. a container
        without an init) and on a frozen one; the heartbeat catches those: a stamp
        older than STALE_AFTER_SECONDS is confirmed with the server over gRPC."""
        if int(self.header[H_STATE]) != STATE_LIVE:
            raise StaleMapping("the session was destroyed, or its server was restarted")
        try:
            os.kill(self.server_pid, 0)
        except ProcessLookupError:
            raise StaleMapping("the cache server process is gone") from None
        except PermissionError:
            pass
        now = time.monotonic_ns()
        age = now - int(self.header[H_HEARTBEAT])
        if age <= STALE_AFTER_NS or now - self._confirmed_ns <= STALE_AFTER_NS:
            return
        if self.confirm is None or not self.confirm():
            raise StaleMapping(
                f"the cache server's heartbeat is {age / 1e9:.1f} s old and it does not answer"
            )
        self._confirmed_ns = time.monotonic_ns()

    def read(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gather a batch of values stored without checksums: (lengths, values[n, width]).

        ``lengths[i]`` is -1 when ids[i] is not cached, -2 when it must be read
        through the server (spilled to disk, or a slot changed while it was
        copied); row i of ``values`` holds the value's bytes in ``[:lengths[i]]``.
        """
        lengths, rows, _ = self._gather(ids, checksum=False)
        return lengths, rows

    def read_checked(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """As ``read``, for values that carry the checksum trailer (``checksum.py``): each is
        checked while it is copied and returned without its trailer; one that fails is a
        miss (-1). Returns (lengths, values, how many failed)."""
        return self._gather(ids, checksum=True)

    def _gather(self, ids: np.ndarray, checksum: bool) -> tuple[np.ndarray, np.ndarray, int]:
        self.check_alive()
        self._refresh()
        ids = np.ascontiguousarray(ids, np.int64)
        lengths = np.empty(ids.size, np.int64)
        first, mixed = entry_classes(self.index, ids)
        if first < 0:  # nothing in memory: the index's markers (absent, spilled) are the answer
            return self._entries(ids), np.empty((ids.size, 0), np.uint8), 0
        classes = [int(first)]
        if mixed:
            e = self._entries(ids)
            classes = np.unique(unpack(e[e >= 0])[1]).tolist()
        width = max((self.classes[c].slot_size for c in classes if c in self.classes), default=0)
        rows = np.empty((ids.size, width), np.uint8)
        bad = 0
        for c in classes:
            view = self.classes.get(c)
            if view is None:  # a class this mapping does not know yet: ask the server
                e = self._entries(ids)
                lengths[(e >= 0) & (unpack(e)[1] == c)] = SPILLED
                continue
            bad += gather_entries(view, c, self.index, ids, rows, lengths, checksum)
        if bad:
            lengths[lengths == BAD] = ABSENT  # a counted error, served as a miss
        return lengths, rows, bad

    def _entries(self, ids: np.ndarray) -> np.ndarray:
        e = np.full(ids.shape, ABSENT, np.int64)
        ok = (ids >= 0) & (ids < self.index.size)
        e[ok] = self.index[ids[ok]]
        return e

    def views(self, ids: np.ndarray) -> ShmViews:
        """Zero-copy views of cached values (None for those not in memory)."""
        self.check_alive()
        self._refresh()
        ids = np.asarray(ids, np.int64)
        e = self._entries(ids)
        out: list[np.ndarray | None] = []
        gen, cls, slots = unpack(e)
        for i in range(ids.size):
            if e[i] < 0 or int(cls[i]) not in self.classes:
                out.append(None)
                continue
            view = self.classes[int(cls[i])]
            s = int(slots[i])
            out.append(view.data[s, : int(view.lens[s])])
        return ShmViews(self, e, out)

    def close(self) -> None:
        # mappings are released when the arrays are garbage-collected
        self.classes.clear()
        self.index = np.full(0, ABSENT, np.int64)


class ShmViews:
    """Views straight into the server's slots. They stay readable, but the
    server may reuse a slot once the item is deleted or evicted: call
    ``valid()`` after using them; an item marked False must be discarded."""

    def __init__(self, reader: ShmReader, entries: np.ndarray, arrays: list[np.ndarray | None]) -> None:
        self.reader = reader
        self.entries = entries
        self.arrays = arrays

    def valid(self) -> np.ndarray:
        gen, cls, slots = unpack(self.entries)
        out = np.zeros(self.entries.size, np.bool_)
        for i in range(self.entries.size):
            if self.arrays[i] is not None:
                g = int(self.reader.classes[int(cls[i])].gens[int(slots[i])])
                out[i] = (g & 1) == 0 and (g & GEN_MASK) == int(gen[i])
        return out
