"""Fixed-size slots in shared memory with a seqlock per slot: the one slot layout of the package.

Both shared-memory stores are built on it: the training cache's
``ShmSlotStore`` (one class of slots in torch shared tensors, handed to
DataLoader workers) and the cache server's session arena (``server/arena.py``:
one class per slot size in ``/dev/shm`` segments, read by other processes
through ``server/reader.py``). What lives here, once:

* the **layout** of a slot class: ``gens[cap]`` (int64), ``lens[cap]`` (int64)
  and ``data[cap, slot_size]`` (uint8); in a segment, ``gens`` and ``lens``
  first, ``data`` from the next page on (``class_layout``). Slot sizes step by
  quarters of a power of two (``SLOT_SIZES``, 64 B ... 112 MiB), so a value
  wastes at most 25% of its slot;
* the **seqlock**: a writer turns ``gens[slot]`` odd, writes the bytes and the
  length, and turns it even again (``write``); freeing a slot adds two
  (``free``), so any reader that saw the old generation fails;
* the **index entry** that names a slot to another process: ``pack`` /
  ``unpack``, ``gen(23 bits) << 40 | class(7) << 33 | slot(33)``;
* the **checked gather** (``gather.py``): one compiled pass that, per
  requested slot, reads the generation, copies the value into the caller's
  buffer, checks its checksum trailer while the bytes are still in cache
  (``checksum.py``), and reads the generation again; no Python per value.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import numpy as np

SHM_DIR = "/dev/shm"
SLOT_META_BYTES = 16  # gens + lens words of a slot

SLOT_BITS = 33
CLASS_BITS = 7
GEN_SHIFT = SLOT_BITS + CLASS_BITS
SLOT_MASK = (1 << SLOT_BITS) - 1
CLASS_MASK = (1 << CLASS_BITS) - 1
GEN_MASK = (1 << 23) - 1


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


def pack(gens: np.ndarray, cls: int, slots: np.ndarray) -> np.ndarray:
    return ((gens & GEN_MASK) << GEN_SHIFT) | (int(cls) << SLOT_BITS) | slots


def unpack(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return entries >> GEN_SHIFT, (entries >> SLOT_BITS) & CLASS_MASK, entries & SLOT_MASK


# --------------------------------------------------------------- segments
def page_round(n: int) -> int:
    return (n + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


class Segment:
    """One mapped region: a /dev/shm file (shared) or anonymous memory (private)."""

    def __init__(self, name: str | None, size: int, create: bool, shm_dir: str = SHM_DIR) -> None:
        self.name = name
        self.size = page_round(max(size, 1))
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
        start = page_round(offset)
        end = (offset + length) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start:
            advice = mmap.MADV_REMOVE if self.path else mmap.MADV_DONTNEED
            try:
                self.mm.madvise(advice, start, end - start)
            except (OSError, ValueError):
                pass


def class_layout(cap: int, slot_size: int) -> tuple[int, int, int, int]:
    """Offsets of ``gens``, ``lens`` and ``data`` in a class segment, and its size."""
    gens_off = 0
    lens_off = 8 * cap
    data_off = page_round(16 * cap)
    total = data_off + cap * slot_size
    return gens_off, lens_off, data_off, total


@dataclass
class SlotClass:
    """The arrays of one slot class (``data`` is ``(cap, slot_size)`` uint8, C order), however
    they were allocated: a mapped segment, or torch shared tensors (``segment`` None)."""

    slot_size: int
    gens: np.ndarray
    lens: np.ndarray
    data: np.ndarray
    segment: Segment | None = None
    data_offset: int = 0


def map_class(seg: Segment, cap: int, slot_size: int) -> SlotClass:
    g, ln, d, _ = class_layout(cap, slot_size)
    gens = seg.array(np.int64, cap, g)
    lens = seg.array(np.int64, cap, ln)
    data = seg.array(np.uint8, cap * slot_size, d).reshape(cap, slot_size)
    return SlotClass(slot_size, gens, lens, data, seg, d)


# --------------------------------------------------------------- writes
def write(
    view: SlotClass,
    slots: np.ndarray,
    src: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    owner: np.ndarray | None = None,
    keys: np.ndarray | None = None,
) -> None:
    """Copy values (concatenated in ``src``) into their slots under the seqlock.

    ``owner`` (optional, with ``keys``): a per-slot id word, -1 while the slot is
    written and the value's key after. Equal lengths (the usual case: one
    dataset, one sample size) take one numpy fancy assignment; mixed lengths a
    copy per item. (A numba loop was measured 20x slower than numpy here.)
    """
    if slots.size == 0:
        return
    view.gens[slots] += 1  # odd: being written
    if owner is not None:
        owner[slots] = -1
    n0 = int(lengths[0])
    if (lengths == n0).all() and (offsets == offsets[0] + n0 * np.arange(slots.size)).all():
        start = int(offsets[0])
        view.data[slots, :n0] = src[start : start + n0 * slots.size].reshape(slots.size, n0)
    else:
        for slot, off, n in zip(slots.tolist(), offsets.tolist(), lengths.tolist()):
            view.data[slot, :n] = src[off : off + n]
    view.lens[slots] = lengths
    if owner is not None:
        owner[slots] = keys
    view.gens[slots] += 1  # even: complete


def free(view: SlotClass, slots: np.ndarray) -> None:
    """Retire the values in ``slots``: their generation moves on by two (even and different), so
    a reader holding the old one fails."""
    view.gens[slots] += 2


def move(view: SlotClass, dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Move values from slots ``src`` to slots ``dst`` (compaction); returns the new generations.
    The caller publishes the new places before the old ones are freed."""
    view.gens[dst] += 1
    view.data[dst] = view.data[src]
    view.lens[dst] = view.lens[src]
    view.gens[dst] += 1
    return view.gens[dst]
