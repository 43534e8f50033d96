"""The checked gather out of the slot store (``slots.py``): seqlock, copy and checksum in one pass.

Per requested value, one compiled loop body (``_copy_one``) reads the slot's
generation, copies the value into the caller's buffer with ``memcpy``, checks
the checksum trailer of ``checksum.py`` over the bytes just copied (still in
cache, so memory is crossed once, not twice), and reads the generation again.
It answers per value: the length, ``TORN`` (being written, changed while it
was copied, or not the generation the caller expected: read it again
elsewhere) or ``BAD`` (stable but wrong: its checksum or its length does not
hold; a miss and a counted error, never bytes). No Python runs per value.

Two entry points share that body: ``gather`` (slots given: the training
cache's ``ShmSlotStore``, whose values carry the codec's own checksum) and
``gather_entries`` (ids looked up in a packed index, ``slots.pack``: the cache
server's sessions, read by ``server/reader.py``).

Memory order: the copy and the hash are calls into C (``memcpy``, XXH3) that
the compiler cannot move the generation loads across, and x86-64 keeps loads
in order (TSO), the platform this is tested on.
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
import numba as nb
import numpy as np

from .checksum import CHECKSUM_BYTES, trailer
from .slots import CLASS_MASK, GEN_MASK, GEN_SHIFT, SLOT_BITS, SLOT_MASK, SlotClass

TORN = -2  # not there as expected: read it again elsewhere (the index's "spilled" marker too)
BAD = -3  # stable but wrong: a miss and a counted error


def _bind_memcpy() -> None:
    """libc's memcpy under our own symbol name (see checksum.py: cached kernels name symbols)."""
    libc = ctypes.CDLL(None)
    llvm.add_symbol("spidercache_memcpy", ctypes.cast(libc.memcpy, ctypes.c_void_p).value)


_bind_memcpy()
_MEMCPY = nb.types.ExternalFunction(
    "spidercache_memcpy", nb.types.voidptr(nb.types.voidptr, nb.types.voidptr, nb.types.uintp)
)


@nb.njit(cache=True, inline="always")
def _copy_one(gens, lens, data, s, want, key, head, body, p, checksum):
    """Slot ``s`` into ``head[p]`` (first bytes) and ``body[p]`` (the rest): its length
    (without the trailer when ``checksum``, which needs an empty ``head``), TORN or BAD.
    ``want`` < 0: any generation."""
    n_slots, slot_size = data.shape
    if s < 0 or s >= n_slots:
        return TORN
    g1 = gens[s]
    if (g1 & 1) != 0 or (want >= 0 and (g1 & GEN_MASK) != want):
        return TORN
    split = head.shape[1]
    n = lens[s]
    fits = n >= 0 and n <= slot_size and n <= split + body.shape[1]
    if fits:
        src = data.ctypes.data + s * data.strides[0]
        if min(n, split) > 0:
            _MEMCPY(head.ctypes.data + p * head.strides[0], src, min(n, split))
        if n > split:
            _MEMCPY(body.ctypes.data + p * body.strides[0], src + split, n - split)
    if fits and checksum:  # over the bytes copied, while they are in cache
        k = n - CHECKSUM_BYTES
        if k < 0:
            fits = False
        else:
            stored = np.uint64(0)
            for b in range(CHECKSUM_BYTES):
                stored |= np.uint64(body[p, k + b]) << np.uint64(8 * b)
            fits = trailer(body.ctypes.data + p * body.strides[0], k, key) == stored
            n = k
    if gens[s] != g1:
        return TORN
    return n if fits else BAD


@nb.njit(nogil=True, cache=True)
def _gather(gens, lens, data, pos, slots, want, keys, head, body, out, checksum):
    n_bad = 0
    for j in range(pos.size):
        w = want[j] if want.size else -1
        key = keys[j] if checksum else 0
        r = _copy_one(gens, lens, data, slots[j], w, key, head, body, pos[j], checksum)
        out[pos[j]] = r
        n_bad += r == BAD
    return n_bad


@nb.njit(nogil=True, cache=True)
def _gather_entries(index, ids, c, gens, lens, data, body, out, checksum):
    n_bad = 0
    head = body[:, :0]
    for p in range(ids.size):
        i = ids[p]
        e = index[i] if i >= 0 and i < index.size else -1
        if e < 0:
            out[p] = e
        elif ((e >> SLOT_BITS) & CLASS_MASK) == c:
            r = _copy_one(gens, lens, data, e & SLOT_MASK, e >> GEN_SHIFT, i, head, body, p, checksum)
            out[p] = r
            n_bad += r == BAD
    return n_bad


@nb.njit(nogil=True, cache=True)
def entry_classes(index, ids):
    """(class of the first id with a slot or -1, whether other ids have slots of other classes)."""
    first, mixed = -1, False
    for p in range(ids.size):
        i = ids[p]
        e = index[i] if i >= 0 and i < index.size else -1
        if e >= 0:
            c = (e >> SLOT_BITS) & CLASS_MASK
            if first < 0:
                first = c
            elif c != first:
                mixed = True
    return first, mixed


_NONE = np.empty(0, np.int64)


def gather(
    view: SlotClass,
    pos: np.ndarray,
    slots: np.ndarray,
    head: np.ndarray,
    body: np.ndarray,
    out: np.ndarray,
    want: np.ndarray | None = None,
    keys: np.ndarray | None = None,
) -> int:
    """Copy the values in ``slots`` into rows ``pos`` of ``head`` / ``body`` (uint8, contiguous rows):
    the first ``head.shape[1]`` bytes of each into ``head``, the rest into ``body``.

    ``out[pos[j]]`` becomes the value's length, ``TORN`` (the slot was being
    written, changed while it was copied, or does not hold generation
    ``want[j]``) or ``BAD``. With ``keys``, every value carries the checksum
    trailer of ``checksum.py`` for its key: it is checked over the copied bytes
    (``head`` must then be empty) and left out of the length; a value that
    fails is BAD. Returns how many were BAD."""
    checksum = keys is not None
    if checksum and head.shape[1]:
        raise ValueError("a checksummed gather copies into body only")
    return int(
        _gather(
            view.gens,
            view.lens,
            view.data,
            np.ascontiguousarray(pos, np.int64),
            np.ascontiguousarray(slots, np.int64),
            _NONE if want is None else np.ascontiguousarray(want, np.int64),
            _NONE if keys is None else np.ascontiguousarray(keys, np.int64),
            head,
            body,
            out,
            checksum,
        )
    )


def gather_entries(
    view: SlotClass,
    c: int,
    index: np.ndarray,
    ids: np.ndarray,
    rows: np.ndarray,
    out: np.ndarray,
    checksum: bool,
) -> int:
    """Look ``ids`` up in ``index`` (packed entries, ``slots.pack``) and copy those in class ``c``
    (``view``) into their rows of ``rows``, checked as ``gather`` does (the key of a
    trailer is the id). ``out[p]``: the length, TORN or BAD for ids of class ``c``;
    the entry itself for ids without a slot (negative: the index's own markers, -1
    for ids past its end); untouched for ids in other classes. Returns how many were BAD."""
    return int(_gather_entries(index, ids, int(c), view.gens, view.lens, view.data, rows, out, checksum))
