"""The one binary max-heap over two parallel arrays (keys, ids) for the numba kernels.

The learned policy orders its rows by it (state array slot 4 holds the size), the
true-rate oracle uses it with negated rates as a min-heap and OPTgen keys it by
next use. The caller owns the size: each function takes it and returns the new
one. Entries may be lazy: callers skip or compact entries whose id left or whose
key changed since they were pushed, then ``heapify`` what is left.
"""

from __future__ import annotations

import numba as nb


@nb.njit(cache=True, inline="always")
def heap_push(hk, hv, size, key, v):
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if hk[parent] >= key:
            break
        hk[pos] = hk[parent]
        hv[pos] = hv[parent]
        pos = parent
    hk[pos] = key
    hv[pos] = v
    return size + 1


@nb.njit(cache=True, inline="always")
def sift_down(hk, hv, pos, size):
    """Move the entry at ``pos`` down until its children are no larger."""
    key, v = hk[pos], hv[pos]
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and hk[c + 1] > hk[c]:
            c += 1
        if hk[c] <= key:
            break
        hk[pos] = hk[c]
        hv[pos] = hv[c]
        pos = c
    hk[pos] = key
    hv[pos] = v


@nb.njit(cache=True, inline="always")
def heap_pop(hk, hv, size):
    """Drop the top entry; returns the new size."""
    size -= 1
    if size == 0:
        return 0
    hk[0], hv[0] = hk[size], hv[size]
    sift_down(hk, hv, 0, size)
    return size


@nb.njit(cache=True)
def heapify(hk, hv, size):
    """Make the first ``size`` entries a heap (after a caller compacted them)."""
    for j in range(size // 2 - 1, -1, -1):
        sift_down(hk, hv, j, size)
