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

import glob
import mmap
import os
from dataclasses import dataclass

import numpy as np

from .limits import STALE_AFTER_SECONDS

STALE_AFTER_NS = int(STALE_AFTER_SECONDS * 1e9)
SHM_DIR = "/dev/shm"
MAGIC = 0x53504944_43414348  # "SPIDCACH"

# header fields (int64 positions)
H_MAGIC, H_VERSION, H_PID, H_HEARTBEAT, H_STATE, H_INDEX_CAP, H_INDEX_GEN, H_SERVER_READS = range(8)
H_CLASS0 = 16  # H_CLASS0 + c: capacity (slots) of class c, 0 = not created
HEADER_WORDS = 256
HEADER_BYTES = 4096  # one page
SLOT_META_BYTES = 16  # gens + lens words of a slot
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


def copy_in(
    data: np.ndarray, slots: np.ndarray, src: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
) -> None:
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
        data[slots, :n0] = src[start : start + n0 * slots.size].reshape(slots.size, n0)
        return
    for slot, off, n in zip(slots.tolist(), offsets.tolist(), lengths.tolist()):
        data[slot, :n] = src[off : off + n]


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
    g, ln, d, _ = _class_layout(cap, slot_size)
    gens = seg.array(np.int64, cap, g)
    lens = seg.array(np.int64, cap, ln)
    data = seg.array(np.uint8, cap * slot_size, d).reshape(cap, slot_size)
    return ClassView(slot_size, gens, lens, data, seg, d)


def pack(gens: np.ndarray, cls: int, slots: np.ndarray) -> np.ndarray:
    return ((gens & GEN_MASK) << GEN_SHIFT) | (int(cls) << SLOT_BITS) | slots


def unpack(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return entries >> GEN_SHIFT, (entries >> SLOT_BITS) & CLASS_MASK, entries & SLOT_MASK


class FreeSlots:
    """The free slots of one class: a stack of released slots plus a high-water
    mark below which every slot has been used once. Its memory follows the slots
    used, not the class's capacity (a 256 MB class of 64 B slots would otherwise
    carry a 32 MB free list from its first value on)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.fresh = 0  # slots fresh..cap-1 were never used (or their pages were handed back)
        self.high = 0  # most slots ever used: their generation and length words stay resident
        self.stack = np.empty(0, np.int64)
        self.top = 0

    @property
    def used(self) -> int:
        return self.fresh - self.top

    def compacted(self, keep: int) -> None:
        """Slots 0..keep-1 hold every value now; the pages above were handed back."""
        self.fresh, self.top = keep, 0

    @property
    def available(self) -> int:
        return self.top + self.cap - self.fresh

    @property
    def nbytes(self) -> int:
        return self.stack.nbytes

    def take(self, k: int) -> np.ndarray:
        reused = min(k, self.top)
        out = np.empty(k, np.int64)
        out[:reused] = self.stack[self.top - reused : self.top]
        self.top -= reused
        out[reused:] = np.arange(self.fresh, self.fresh + k - reused)
        self.fresh += k - reused
        self.high = max(self.high, self.fresh)
        return out

    def give(self, slots: np.ndarray) -> None:
        need = self.top + slots.size
        if need > self.stack.size:
            grown = np.empty(max(need, 2 * self.stack.size, 64), np.int64)
            grown[: self.top] = self.stack[: self.top]
            self.stack = grown
        self.stack[self.top : need] = slots
        self.top = need


def retire_segments(prefix: str, shm_dir: str = SHM_DIR) -> int:
    """Remove the segments a killed server left under ``prefix``; first mark each
    header DESTROYED, so that a client still mapping one stops reading it at once
    (the files go, but a mapping outlives its file). Returns how many were removed."""
    n = 0
    for path in glob.glob(os.path.join(shm_dir, glob.escape(prefix) + "-*")):
        if path.endswith("-hdr"):
            try:
                seg = Segment(os.path.basename(path), HEADER_WORDS * 8, False, shm_dir)
                header = seg.array(np.int64, HEADER_WORDS)
                if int(header[H_MAGIC]) == MAGIC:
                    header[H_STATE] = STATE_DESTROYED
                del header
                seg.mm.close()
            except (OSError, ValueError, BufferError):
                pass
        try:
            os.unlink(path)
            n += 1
        except OSError:
            pass
    return n
