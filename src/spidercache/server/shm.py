"""A session's shared memory, the server's part: the header, the index, free slots.

The slots themselves (layout, seqlock, index entries, checked gather) are the
engine's one slot store, ``engine/stores/slots.py``. The server owns, per
session, a few memory-mapped segments (files under ``/dev/shm``, mode 0600, so
only the same user can map them):

* a **header** (256 int64): layout version, server pid, heartbeat, state
  (live or destroyed), and where the other segments are;
* one **class segment** per slot size in use (``slots.class_layout``). A
  class segment is created with the session's whole budget as its (sparse,
  untouched) size and never moves, so clients map it once;
* an **index**: ``int64[max id + 1]``, one packed entry per id
  (``slots.pack``), ``-1`` absent, ``-2`` spilled to disk (ask the server). It
  grows by doubling into a new segment; the header's layout version tells
  clients to re-map.

A reader checks every slot's generation before and after its copy against the
one packed in the index entry it used (``slots.gather``); any item that fails
is re-read through the server. A stale index (one the server has since
replaced) is therefore harmless: its generations no longer match.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from ..engine.stores.slots import (
    MAX_VALUE_BYTES,
    SHM_DIR,
    SLOT_META_BYTES,
    SLOT_SIZES,
    Segment,
    slot_class,
    unpack,
)
from .limits import STALE_AFTER_SECONDS

# the slot names the server's modules use, from the engine's slot store
__all__ = ["MAX_VALUE_BYTES", "SHM_DIR", "SLOT_META_BYTES", "SLOT_SIZES", "slot_class", "unpack"]

STALE_AFTER_NS = int(STALE_AFTER_SECONDS * 1e9)
MAGIC = 0x53504944_43414348  # "SPIDCACH"

# header fields (int64 positions)
H_MAGIC, H_VERSION, H_PID, H_HEARTBEAT, H_STATE, H_INDEX_CAP, H_INDEX_GEN, H_SERVER_READS = range(8)
H_CLASS0 = 16  # H_CLASS0 + c: capacity (slots) of class c, 0 = not created
HEADER_WORDS = 256
HEADER_BYTES = 4096  # one page
STATE_LIVE, STATE_DESTROYED = 1, 2

ABSENT = -1
SPILLED = -2

MAX_ID = (1 << 32) - 1


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
