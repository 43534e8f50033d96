"""The 8-byte trailer every value of the cache server carries: computed and
checked for a whole batch in one compiled call (and, fused with the copy out of
shared memory, by ``slots.gather``).

The trailer of value ``v`` stored under id ``i`` is, little-endian,

    xxh3_64(v) ^ (i * 0x9E3779B97F4A7C15 mod 2**64)

The writer (``DatasetCache.put_many``) fills the trailers of a whole Put
payload with ``fill_trailers``; every reader checks a batch: the
shared-memory gather while it copies (``slots.gather``), a gRPC reply with
``verify_rows``, a zero-copy view with ``verify_one``. All of them call one
function, ``trailer``, so writer and reader cannot disagree.

Why this hash. ``xxh3_64`` is the C function of the ``xxhash`` package we
already depend on, called from numba through its exported symbol
(``XXH3_64bits_dispatch``), not a re-implementation: the trailers stay exactly those
earlier versions wrote (and ``xxhash.xxh3_64_intdigest`` checks them in the
tests). XXH3 passes SMHasher's avalanche and collision tests: each input bit
flips each output bit with probability ~1/2, so a flipped bit, a torn value
(part old bytes, part new) or a value overwritten by other bytes keeps its
old trailer with probability about 2**-64. The id term is odd-multiplier
(Fibonacci) hashing, a bijection of 64-bit words, so two different ids give
different masks and a value stored under another id fails unless its hash
differs from ours by exactly the XOR of the two masks (again ~2**-64 for
unrelated data). It is not a MAC: a process that can write the segment can
also write a matching trailer; what it catches is change and mix-up, not an
attacker (the segments are mode 0600 for that).

Why a kernel. One ``xxhash`` call from Python per value cost more than the
hashing itself at 3 KB (256 calls a batch); here the loop over values runs in
compiled code and each value costs one C call. Lengths and row numbers come
from shared memory another process can write, so both are bounds-checked
before any byte is read: a value whose length does not fit its row fails.
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
import numba as nb
import numpy as np
import xxhash._xxhash as _xxhash_ext

CHECKSUM_BYTES = 8
MIX = 0x9E3779B97F4A7C15


def _bind_xxh3() -> None:
    """Bind our own symbol name to xxhash's C XXH3 for numba-compiled code.

    Compiled code refers to the function by that name, not by address, so the
    kernels go into numba's on-disk cache like the others in the package: each
    new process (a DataLoader worker, say) loads them rather than compiling
    (about 0.3 s a kernel)."""
    try:
        lib = ctypes.CDLL(_xxhash_ext.__file__)
    except OSError as exc:
        raise ImportError(f"spidercache cannot load the xxhash package's library ({exc})") from None
    # the dispatching entry picks AVX2/AVX-512 at run time, as xxhash's Python functions do; the
    # plain one is SSE2 only (256 x 150 KB: 1926 us against 1521 us for the Python calls)
    fn = getattr(lib, "XXH3_64bits_dispatch", None) or getattr(lib, "XXH3_64bits", None)
    if fn is None:  # a build of xxhash that hides its C symbols
        raise ImportError("spidercache needs the XXH3_64bits symbol of the xxhash package's library")
    llvm.add_symbol(_SYMBOL, ctypes.cast(fn, ctypes.c_void_p).value)


_SYMBOL = "spidercache_xxh3_64"
_bind_xxh3()
_XXH3 = nb.types.ExternalFunction(_SYMBOL, nb.types.uint64(nb.types.voidptr, nb.types.uintp))
_MIX = np.uint64(MIX)


@nb.njit(cache=True, inline="always")
def trailer(address, n, key):
    return _XXH3(address, n) ^ (np.uint64(key) * _MIX)


@nb.njit(nogil=True, cache=True)
def fill_trailers(payload, offsets, ids):
    """Write the trailer of value j, ``payload[offsets[j] : offsets[j+1] - 8]``,
    into the last 8 bytes of its span."""
    base = payload.ctypes.data
    for j in range(ids.size):
        end = offsets[j + 1] - CHECKSUM_BYTES
        h = trailer(base + offsets[j], end - offsets[j], ids[j])
        for b in range(CHECKSUM_BYTES):
            payload[end + b] = np.uint8((h >> np.uint64(8 * b)) & np.uint64(0xFF))


@nb.njit(nogil=True, cache=True)
def verify_rows(rows, row_index, lengths, ids):
    """Check and strip the trailers of a batch in place: value i (``lengths[i]``
    >= 0) is ``rows[row_index[i], :lengths[i]]``. A value that passes loses its
    8 trailer bytes from ``lengths[i]``; one that fails becomes a miss (-1).
    Rows must be contiguous within a row. Returns how many failed."""
    bad = 0
    base = rows.ctypes.data
    stride = rows.strides[0]
    n_rows, width = rows.shape
    for i in range(lengths.size):
        m = lengths[i]
        if m < 0:
            continue
        r = row_index[i]
        k = m - CHECKSUM_BYTES
        if k < 0 or m > width or r < 0 or r >= n_rows:
            lengths[i] = -1
            bad += 1
            continue
        stored = np.uint64(0)
        for b in range(CHECKSUM_BYTES):
            stored |= np.uint64(rows[r, k + b]) << np.uint64(8 * b)
        if trailer(base + r * stride, k, ids[i]) == stored:
            lengths[i] = k
        else:
            lengths[i] = -1
            bad += 1
    return bad


@nb.njit(nogil=True, cache=True)
def verify_one(value, key):
    """The length of ``value`` (1-D, contiguous) without its trailer, or -1 if it fails."""
    k = value.size - CHECKSUM_BYTES
    if k < 0:
        return -1
    stored = np.uint64(0)
    for b in range(CHECKSUM_BYTES):
        stored |= np.uint64(value[k + b]) << np.uint64(8 * b)
    return k if trailer(value.ctypes.data, k, key) == stored else -1


def as_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` as ``verify_rows`` needs it: 2-D uint8, contiguous within a row."""
    if rows.ndim == 2 and rows.dtype == np.uint8 and (rows.shape[1] <= 1 or rows.strides[1] == 1):
        return rows
    return np.ascontiguousarray(rows, np.uint8).reshape(len(rows), -1)
