"""Fixed-size slots in shared memory: where a session's values live.

The server owns, per session, a few memory-mapped segments (files under
``/dev/shm``, mode 0600, so only the same user can map them):

* a **header** (256 int64): layout version, server pid, heartbeat, state, and
  where the other segments are;
* one **class segment** per slot size in use: ``gens[cap]``, ``lens[cap]`` and
  ``data[cap, slot_size]``. Slot sizes step by quarters of a power of two
  (64 B ... 64 MiB), so a value wastes at most 25% of its slot. A class segment
  is created with the session's whole budget as its (sparse, untouched) size and
  never moves, so clients map it once;
* an **index**: ``int64[max id + 1]``, one packed entry per id:
  ``gen(23 bits) << 40 | class(7) << 33 | slot(33)``, ``-1`` absent,
  ``-2`` spilled to disk (ask the server). It grows by doubling into a new
  segment; the header's layout version tells clients to re-map.

Reading a batch is then two numpy fancy-indexes (index, then slots) and no
per-item Python. Writes follow a seqlock per slot: ``gens[slot]`` turns odd
while the slot is written and even when done, and freeing a slot bumps it by
two. A reader copies the slots, then checks that every slot's generation is
even, unchanged, and equal to the one packed in the index entry it used; any
item that fails is re-read through the server. A stale index (one the server
has since replaced) is therefore harmless: its generations no longer match.
This relies on loads and stores not being reordered across numpy calls, which
holds on x86-64 (TSO), the platform this is tested on.
"""

from __future__ import annotations

import mmap
import os
import time
from dataclasses import dataclass

import numpy as np

SHM_DIR = "/dev/shm"
MAGIC = 0x53504944_43414348  # "SPIDCACH"

# header fields (int64 positions)
H_MAGIC, H_VERSION, H_PID, H_HEARTBEAT, H_STATE, H_INDEX_CAP, H_INDEX_GEN, H_SERVER_READS = range(8)
H_CLASS0 = 16  # H_CLASS0 + c: capacity (slots) of class c, 0 = not created
HEADER_WORDS = 256
STATE_LIVE, STATE_DESTROYED = 1, 2

ABSENT = -1
SPILLED = -2

SLOT_BITS = 33
CLASS_BITS = 7
GEN_SHIFT = SLOT_BITS + CLASS_BITS
SLOT_MASK = (1 << SLOT_BITS) - 1
CLASS_MASK = (1 << CLASS_BITS) - 1
GEN_MASK = (1 << 23) - 1

MAX_ID = (1 << 32) - 1


def _slot_sizes() -> np.ndarray:
    sizes = set()
    for k in range(6, 27):
        for q in (4, 5, 6, 7):
            s = (q << k) // 4
            sizes.add(max(64, (s + 63) // 64 * 64))
    return np.array(sorted(sizes), np.int64)


SLOT_SIZES = _slot_sizes()  # 64 B .. 112 MiB, at most 25% waste
MAX_VALUE_BYTES = 64 << 20


def slot_class(lengths: np.ndarray) -> np.ndarray:
    """Class number (index in SLOT_SIZES) of the smallest slot that holds each length."""
    return np.searchsorted(SLOT_SIZES, lengths, side="left").astype(np.int64)


def copy_in(data: np.ndarray, slots: np.ndarray, src: np.ndarray, offsets: np.ndarray,
            lengths: np.ndarray) -> None:
    """Copy values (concatenated in ``src``) into their slots.

    Equal lengths (the usual case: one dataset, one sample size) take one numpy
    fancy assignment; mixed lengths fall back to a copy per item. (A numba loop
    was measured 20x slower than numpy's fancy indexing here.)
    """
    if slots.size == 0:
        return
    n0 = int(lengths[0])
    if (lengths == n0).all() and (offsets == offsets[0] + n0 * np.arange(slots.size)).all():
        start = int(offsets[0])
        data[slots, :n0] = src[start: start + n0 * slots.size].reshape(slots.size, n0)
        return
    for slot, off, n in zip(slots.tolist(), offsets.tolist(), lengths.tolist()):
        data[slot, :n] = src[off: off + n]


# --------------------------------------------------------------- segments
def _page_round(n: int) -> int:
    return (n + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


class Segment:
    """One mapped region: a /dev/shm file (shared) or anonymous memory (private)."""

    def __init__(self, name: str | None, size: int, create: bool, shm_dir: str = SHM_DIR) -> None:
        self.name = name
        self.size = _page_round(max(size, 1))
        self.path = os.path.join(shm_dir, name) if name else None
        if self.path is None:
            self.mm = mmap.mmap(-1, self.size)
        else:
            flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
            fd = os.open(self.path, flags, 0o600)
            try:
                if create:
                    os.ftruncate(fd, self.size)
                else:
                    self.size = os.fstat(fd).st_size
                self.mm = mmap.mmap(fd, self.size)
            finally:
                os.close(fd)

    def array(self, dtype, count: int, offset: int = 0) -> np.ndarray:
        return np.frombuffer(self.mm, dtype=dtype, count=count, offset=offset)

    def unlink(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def release_pages(self, offset: int, length: int) -> None:
        """Give pages of freed slots back to the OS (keeps RSS within the budget)."""
        start = _page_round(offset)
        end = (offset + length) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start:
            advice = mmap.MADV_REMOVE if self.path else mmap.MADV_DONTNEED
            try:
                self.mm.madvise(advice, start, end - start)
            except (OSError, ValueError):
                pass


def _class_layout(cap: int, slot_size: int) -> tuple[int, int, int, int]:
    gens_off = 0
    lens_off = 8 * cap
    data_off = _page_round(16 * cap)
    total = data_off + cap * slot_size
    return gens_off, lens_off, data_off, total


@dataclass
class ClassView:
    """The arrays of one slot class, as mapped by a reader or the writer."""

    slot_size: int
    gens: np.ndarray
    lens: np.ndarray
    data: np.ndarray  # (cap, slot_size) uint8
    segment: Segment
    data_offset: int


def _map_class(seg: Segment, cap: int, slot_size: int) -> ClassView:
    g, l, d, _ = _class_layout(cap, slot_size)
    gens = seg.array(np.int64, cap, g)
    lens = seg.array(np.int64, cap, l)
    data = seg.array(np.uint8, cap * slot_size, d).reshape(cap, slot_size)
    return ClassView(slot_size, gens, lens, data, seg, d)


def pack(gens: np.ndarray, cls: int, slots: np.ndarray) -> np.ndarray:
    return ((gens & GEN_MASK) << GEN_SHIFT) | (int(cls) << SLOT_BITS) | slots


def unpack(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return entries >> GEN_SHIFT, (entries >> SLOT_BITS) & CLASS_MASK, entries & SLOT_MASK


# ------------------------------------------------------------------ writer
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
        self.classes: dict[int, ClassView] = {}
        self.free: dict[int, tuple[np.ndarray, list[int]]] = {}  # class -> (stack, [top])
        self.index_seg: Segment | None = None
        self.index = np.full(0, ABSENT, np.int64)
        self.slot_bytes = 0
        self.items = 0

    # ---------------------------------------------------------------- sizes
    @property
    def used_bytes(self) -> int:
        return self.slot_bytes + self.index.nbytes

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

    def _class(self, c: int) -> ClassView:
        view = self.classes.get(c)
        if view is None:
            slot_size = int(SLOT_SIZES[c])
            cap = max(1, self.budget // slot_size)
            _, _, _, total = _class_layout(cap, slot_size)
            seg = Segment(f"{self.prefix}-c{c}" if self.prefix else None, total, True, self.shm_dir)
            view = _map_class(seg, cap, slot_size)
            self.classes[c] = view
            # free stack: pop from the top; slot 0 is used first
            self.free[c] = (np.arange(cap - 1, -1, -1, dtype=np.int64), [cap])
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

    def read_one(self, entry: int) -> bytes:
        _, c, s = (int(x) for x in unpack(np.array([entry], np.int64)))
        view = self.classes[c]
        return view.data[s, : int(view.lens[s])].tobytes()

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
        cost = SLOT_SIZES[cls]
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
            stack, top = self.free[c]
            sel = np.flatnonzero(admitted & (cls == c))
            if sel.size > top[0]:  # class full (budget shared with other classes)
                admitted[sel[top[0] :]] = False
                sel = sel[: top[0]]
            k = sel.size
            if k == 0:
                continue
            slots = stack[top[0] - k : top[0]].copy()
            top[0] -= k
            view.gens[slots] += 1  # odd: being written
            copy_in(view.data, slots, src, offsets[sel], lengths[sel])
            view.lens[slots] = lengths[sel]
            view.gens[slots] += 1  # even: complete
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
            view.gens[s] += 2  # even and different: old entries no longer validate
            stack, top = self.free[c]
            stack[top[0] : top[0] + s.size] = s
            top[0] += s.size
            self.slot_bytes -= s.size * view.slot_size
            self.items -= s.size
            if view.slot_size >= 4 * mmap.PAGESIZE:
                # big slots: hand their pages back so RSS follows the budget
                for slot in s.tolist():
                    view.segment.release_pages(view.data_offset + slot * view.slot_size, view.slot_size)

    def ids_in_memory(self) -> np.ndarray:
        return np.flatnonzero(self.index >= 0).astype(np.int64)

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


# ------------------------------------------------------------------ reader
class StaleMapping(Exception):
    """The server behind a mapping is gone or the session was destroyed."""


class ShmReader:
    """A client's read-only view of one session's slots (same host only)."""

    def __init__(self, header_name: str, shm_dir: str = SHM_DIR) -> None:
        self.shm_dir = shm_dir
        self.prefix = header_name[: -len("-hdr")]
        self.header_seg = Segment(header_name, HEADER_WORDS * 8, False, shm_dir)
        self.header = self.header_seg.array(np.int64, HEADER_WORDS)
        if int(self.header[H_MAGIC]) != MAGIC:
            raise StaleMapping("not a Spider Cache segment")
        self.server_pid = int(self.header[H_PID])
        self.version = -1
        self.index = np.full(0, ABSENT, np.int64)
        self.classes: dict[int, ClassView] = {}
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
                _, _, _, total = _class_layout(cap, slot_size)
                seg = Segment(f"{self.prefix}-c{c}", total, False, self.shm_dir)
                self.classes[c] = _map_class(seg, cap, slot_size)
        self.version = version

    def check_alive(self) -> None:
        if int(self.header[H_STATE]) != STATE_LIVE:
            raise StaleMapping("the session was destroyed")
        try:
            os.kill(self.server_pid, 0)
        except ProcessLookupError:
            raise StaleMapping("the cache server process is gone") from None
        except PermissionError:
            pass

    def read(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gather a batch: (lengths, values[n, width]).

        ``lengths[i]`` is -1 when ids[i] is not cached, -2 when it must be read
        through the server (spilled to disk, or a slot changed while it was
        copied); row i of ``values`` holds the value's bytes in ``[:lengths[i]]``.
        One fancy-index per slot class, no per-item Python.
        """
        self.check_alive()
        self._refresh()
        ids = np.asarray(ids, np.int64)
        e = np.full(ids.shape, ABSENT, np.int64)
        ok = (ids >= 0) & (ids < self.index.size)
        e[ok] = self.index[ids[ok]]
        present = e >= 0
        lengths = np.where(e == SPILLED, SPILLED, ABSENT).astype(np.int64)
        if not present.any():
            return lengths, np.empty((ids.size, 0), np.uint8)
        gen, cls, slots = unpack(e)
        first = int(cls[np.argmax(present)])
        if (cls[present] == first).all():
            view = self.classes.get(first)
            if view is None:
                lengths[present] = SPILLED
                return lengths, np.empty((ids.size, 0), np.uint8)
            rows = np.where(present, slots, 0)
            g1 = view.gens[rows]
            values = view.data[rows]
            lens = view.lens[rows]
            g2 = view.gens[rows]
            good = present & (g1 == g2) & ((g1 & 1) == 0) & ((g1 & GEN_MASK) == gen)
            lengths[good] = lens[good]
            lengths[present & ~good] = SPILLED  # changed under us: ask the server
            return lengths, values
        width = max(self.classes[int(c)].slot_size for c in np.unique(cls[present]) if int(c) in self.classes)
        values = np.empty((ids.size, width), np.uint8)
        for c in np.unique(cls[present]):
            sel = np.flatnonzero(present & (cls == c))
            view = self.classes.get(int(c))
            if view is None:
                lengths[sel] = SPILLED
                continue
            rows = slots[sel]
            g1 = view.gens[rows]
            values[sel, : view.slot_size] = view.data[rows]
            lens = view.lens[rows]
            g2 = view.gens[rows]
            good = (g1 == g2) & ((g1 & 1) == 0) & ((g1 & GEN_MASK) == gen[sel])
            lengths[sel] = np.where(good, lens, SPILLED)
        return lengths, values

    def views(self, ids: np.ndarray) -> "ShmViews":
        """Zero-copy views of cached values (None for those not in memory)."""
        self.check_alive()
        self._refresh()
        ids = np.asarray(ids, np.int64)
        e = np.full(ids.shape, ABSENT, np.int64)
        ok = (ids >= 0) & (ids < self.index.size)
        e[ok] = self.index[ids[ok]]
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
