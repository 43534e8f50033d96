"""A binary max-heap over two parallel arrays (keys, row ids) for the numba kernels.

The learned policy orders its rows by it (state array slot 4 holds the size) and the
true-rate oracle uses it with negated rates as a min-heap. The caller owns the size:
each function takes it and returns the new one. Entries are lazy: callers skip or
compact entries whose row left or whose key changed since they were pushed.
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
def heap_pop(hk, hv, size):
    size -= 1
    if size == 0:
        return 0
    key, v = hk[size], hv[size]
    pos = 0
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
    return size
