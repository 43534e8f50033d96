"""The server's side of a session's shared memory: allocates slots, writes
values, publishes index entries (the header and index: ``shm.py``; the slots,
their seqlock and the checked gather: the engine's ``stores/slots.py``)."""

from __future__ import annotations

import mmap
import os
import time

import numpy as np

from ..engine.stores import slots as slotstore
from ..engine.stores.slots import (
    CLASS_MASK,
    SLOT_BITS,
    SLOT_MASK,
    SLOT_META_BYTES,
    SLOT_SIZES,
    Segment,
    SlotClass,
    class_layout,
    map_class,
    pack,
    slot_class,
    unpack,
)
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
    HEADER_BYTES,
    HEADER_WORDS,
    MAGIC,
    SHM_DIR,
    SPILLED,
    STATE_DESTROYED,
    STATE_LIVE,
    FreeSlots,
)

# slots at least this big hand their pages back one by one when freed
BIG_SLOT = 4 * mmap.PAGESIZE


class SlotArena:
    """The server's side: allocates slots, writes values, publishes index entries.

    Single writer: the session serialises calls with its lock. ``budget`` is the
    byte budget this arena may use (slots plus index); the caller passes how
    many bytes are still free on each put (the server-wide budget also counts).
    """

    def __init__(self, prefix: str | None, budget: int, shm_dir: str = SHM_DIR) -> None:
        self.prefix = prefix
        self.shm_dir = shm_dir
        self.budget = int(budget)
        self.header_seg = Segment(f"{prefix}-hdr" if prefix else None, HEADER_WORDS * 8, True, shm_dir)
        self.header = self.header_seg.array(np.int64, HEADER_WORDS)
        self.header[H_MAGIC] = MAGIC
        self.header[H_PID] = os.getpid()
        self.header[H_STATE] = STATE_LIVE
        self.header[H_HEARTBEAT] = time.monotonic_ns()
        self.classes: dict[int, SlotClass] = {}
        self.free: dict[int, FreeSlots] = {}
        self.index_seg: Segment | None = None
        self.index = np.full(0, ABSENT, np.int64)
        self.slot_bytes = 0
        self.items = 0

    # ---------------------------------------------------------------- sizes
    @property
    def used_bytes(self) -> int:
        """Slots in use, plus the bookkeeping (``overhead_bytes``). Freed big slots
        hand their pages back at once; freed small ones stay resident (and are
        reused first) until their whole class is empty (``release``)."""
        return self.slot_bytes + self.overhead_bytes

    @property
    def overhead_bytes(self) -> int:
        """Memory beside the values: the header page, the index, each class's
        generation and length words of every slot ever used, the free lists."""
        meta = sum(SLOT_META_BYTES * f.high + f.nbytes for f in self.free.values())
        return HEADER_BYTES + self.index.nbytes + meta

    def index_cost(self, max_id: int) -> int:
        """Extra bytes the index needs to hold ids up to ``max_id``."""
        if max_id < self.index.size:
            return 0
        return 8 * _index_capacity(max_id) - self.index.nbytes

    # ---------------------------------------------------------------- index
    def _grow_index(self, max_id: int) -> None:
        cap = _index_capacity(max_id)
        gen = int(self.header[H_INDEX_GEN]) + 1
        name = f"{self.prefix}-idx{gen}" if self.prefix else None
        seg = Segment(name, cap * 8, True, self.shm_dir)
        new = seg.array(np.int64, cap)
        new[: self.index.size] = self.index
        new[self.index.size :] = ABSENT
        old_seg = self.index_seg
        self.index_seg, self.index = seg, new
        self.header[H_INDEX_CAP] = cap
        self.header[H_INDEX_GEN] = gen
        self.header[H_VERSION] += 1
        if old_seg is not None:
            old_seg.unlink()  # readers still holding it keep a valid (stale) map

    def _class(self, c: int) -> SlotClass:
        view = self.classes.get(c)
        if view is None:
            slot_size = int(SLOT_SIZES[c])
            cap = max(1, self.budget // slot_size)
            _, _, _, total = class_layout(cap, slot_size)
            seg = Segment(f"{self.prefix}-c{c}" if self.prefix else None, total, True, self.shm_dir)
            view = map_class(seg, cap, slot_size)
            self.classes[c] = view
            self.free[c] = FreeSlots(cap)
            self.header[H_CLASS0 + c] = cap
            self.header[H_VERSION] += 1
        return view

    # ---------------------------------------------------------------- reads
    def entries(self, ids: np.ndarray) -> np.ndarray:
        out = np.full(ids.shape, ABSENT, np.int64)
        ok = ids < self.index.size
        out[ok] = self.index[ids[ok]]
        return out

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Where a batch lives, without copying any value: (entries, lengths, classes,
        slots, width).

        ``lengths`` is -1 for absent, -2 for spilled; ``classes`` / ``slots`` hold
        one entry per id found in memory, in request order; ``width`` is the widest
        slot among them (the row width of a reply).
        """
        e = self.entries(ids)
        lengths = np.where(e == SPILLED, SPILLED, ABSENT).astype(np.int64)
        present = np.flatnonzero(e >= 0)
        if present.size == 0:
            empty = np.empty(0, np.int64)
            return e, lengths, empty, empty, 0
        _, cls, slots = unpack(e[present])
        first = int(cls[0])
        if (cls == first).all():
            view = self.classes[first]
            lengths[present] = view.lens[slots]
            return e, lengths, cls, slots, view.slot_size
        width = 0
        for c in np.unique(cls):
            sel = np.flatnonzero(cls == c)
            view = self.classes[int(c)]
            lengths[present[sel]] = view.lens[slots[sel]]
            width = max(width, view.slot_size)
        return e, lengths, cls, slots, width

    def fill_rows(self, out: np.ndarray, cls: np.ndarray, slots: np.ndarray) -> None:
        """Copy the slots ``locate`` found into ``out`` (rows x width, C order): one
        gather straight into the caller's buffer (e.g. the reply message itself)."""
        if slots.size == 0:
            return
        first = int(cls[0])
        view = self.classes[first]
        if out.shape[1] == view.slot_size and (cls == first).all():
            # mode="clip": "raise" would gather into a temporary first and copy again
            np.take(view.data, slots, axis=0, out=out, mode="clip")
            return
        out[:] = 0
        for c in np.unique(cls):
            sel = np.flatnonzero(cls == c)
            view = self.classes[int(c)]
            out[sel, : view.slot_size] = view.data[slots[sel]]

    def gather(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(entries, lengths, rows) for ids.

        ``lengths`` is -1 for absent, -2 for spilled; ``rows`` holds one row per
        id found in memory, in request order, as wide as the widest slot among
        them (a value fills ``row[:length]``).
        """
        e, lengths, cls, slots, width = self.locate(ids)
        rows = np.empty((slots.size, width), np.uint8)
        self.fill_rows(rows, cls, slots)
        return e, lengths, rows

    # --------------------------------------------------------------- writes
    def put(
        self, ids: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, src: np.ndarray, room: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Store values while they fit in ``room`` bytes, in request order.

        ``ids`` must be unique. Returns (admitted mask, entries the puts replaced).
        """
        admitted = np.zeros(ids.size, np.bool_)
        if ids.size == 0:
            return admitted, np.empty(0, np.int64)
        cls = slot_class(lengths)
        cost = SLOT_SIZES[cls] + SLOT_META_BYTES
        max_id = int(ids.max())
        room -= self.index_cost(max_id)
        if room < 0:
            return admitted, np.empty(0, np.int64)
        admitted = np.cumsum(cost) <= room
        if not admitted.any():
            return admitted, np.empty(0, np.int64)
        if max_id >= self.index.size:
            self._grow_index(max_id)
        replaced: list[np.ndarray] = []
        for c in np.unique(cls[admitted]):
            c = int(c)
            view = self._class(c)
            free = self.free[c]
            sel = np.flatnonzero(admitted & (cls == c))
            if sel.size > free.available:  # class full (budget shared with other classes)
                admitted[sel[free.available :]] = False
                sel = sel[: free.available]
            k = sel.size
            if k == 0:
                continue
            slots = free.take(k)
            slotstore.write(view, slots, src, offsets[sel], lengths[sel])
            sid = ids[sel]
            old = self.index[sid]
            self.index[sid] = pack(view.gens[slots], c, slots)
            replaced.append(old)
            self.slot_bytes += k * view.slot_size
            self.items += k
        old = np.concatenate(replaced) if replaced else np.empty(0, np.int64)
        self.release(old[old >= 0])
        return admitted, old

    def mark(self, ids: np.ndarray, value: int) -> np.ndarray:
        """Set index entries (e.g. SPILLED / ABSENT) and free the slots they held."""
        if ids.size == 0:
            return np.empty(0, np.int64)
        max_id = int(ids.max())
        if max_id >= self.index.size:
            if value == ABSENT:
                ids = ids[ids < self.index.size]
            else:
                self._grow_index(max_id)
        old = self.index[ids]
        self.index[ids] = value
        self.release(old[old >= 0])
        return old

    def release(self, entries: np.ndarray) -> None:
        """Free the slots of (already unpublished) entries."""
        if entries.size == 0:
            return
        _, cls, slots = unpack(entries)
        for c in np.unique(cls):
            c = int(c)
            view = self.classes[c]
            s = slots[cls == c]
            slotstore.free(view, s)  # old entries no longer validate
            self.free[c].give(s)
            self.slot_bytes -= s.size * view.slot_size
            self.items -= s.size
            if view.slot_size >= BIG_SLOT:
                # big slots: hand their pages back so RSS follows the budget
                for slot in s.tolist():
                    view.segment.release_pages(view.data_offset + slot * view.slot_size, view.slot_size)
        waste = {
            c: (f.fresh - f.used) * self.classes[c].slot_size
            for c, f in self.free.items()
            if self.classes[c].slot_size < BIG_SLOT
        }
        if waste and sum(waste.values()) > max(1 << 20, self.budget // 20):
            self.compact(max(waste, key=waste.get))

    def compact(self, c: int) -> None:
        """Small slots share pages, so freed ones stay resident. Move the values of
        class ``c`` that sit above its first ``used`` slots into the free slots below,
        then hand back the pages above: what is resident follows what is stored
        (within 5% of the budget, see ``release``), and the moves cost no more than
        the slots freed since the last compaction. Readers stay safe by the seqlock:
        a moved value is published at its new slot before the old slot's generation
        changes, and the pages go back only after that."""
        view, free = self.classes[c], self.free[c]
        keep = free.used
        if keep:
            e = self.index
            mine = np.flatnonzero((e >= 0) & (((e >> SLOT_BITS) & CLASS_MASK) == c))
            slots = e[mine] & SLOT_MASK
            high = slots >= keep
            movers, ids = slots[high], mine[high]
            occupied = np.zeros(keep, np.bool_)
            occupied[slots[~high]] = True
            holes = np.flatnonzero(~occupied)
            if holes.size != movers.size:  # the index and the free list disagree: leave the class alone
                return
            self.index[ids] = pack(slotstore.move(view, holes, movers), c, holes)
            slotstore.free(view, movers)  # the old places no longer validate
        view.segment.release_pages(
            view.data_offset + keep * view.slot_size, (free.fresh - keep) * view.slot_size
        )
        free.compacted(keep)

    def heartbeat(self) -> None:
        self.header[H_HEARTBEAT] = time.monotonic_ns()

    def close(self, destroyed: bool = True) -> None:
        if destroyed:
            self.header[H_STATE] = STATE_DESTROYED
        for seg in [self.header_seg, self.index_seg, *(v.segment for v in self.classes.values())]:
            if seg is not None:
                seg.unlink()

    @property
    def header_name(self) -> str:
        return self.header_seg.name or ""


def _index_capacity(max_id: int) -> int:
    cap = 1024
    while cap <= max_id:
        cap *= 2
    return cap
