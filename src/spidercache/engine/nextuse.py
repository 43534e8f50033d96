"""The one next-use (Belady) computation: for each request, where its id comes next.

``next_use_positions(ids)[t]`` is the position of the next request of
``ids[t]``, or ``NEVER`` (the largest int64) when it is not requested again.
OPT (``engine/policies/opt.py``), OPTgen's labels (``embedding/optgen.py``) and
the prefetch training data all read it.
"""

from __future__ import annotations

import numba as nb
import numpy as np

NEVER = np.iinfo(np.int64).max  # next use of an id that is never requested again


@nb.njit(cache=True)
def _next_use(ids, last):
    # One backward pass; ``last`` (int32 when positions fit: half the scattered
    # memory traffic, which is what this loop costs) holds each id's latest
    # position seen so far, -1 for none.
    out = np.empty(ids.size, np.int64)
    for t in range(ids.size - 1, -1, -1):
        i = ids[t]
        nxt = last[i]
        out[t] = NEVER if nxt < 0 else nxt
        last[i] = t
    return out


def next_use_positions(ids: np.ndarray, n_ids: int | None = None) -> np.ndarray:
    """Position of the next request of the same id for every request (``NEVER`` if none). O(n).

    ``ids`` are dense non-negative ids; ``n_ids`` (default ``max + 1``) bounds them.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.size == 0:
        return np.empty(0, np.int64)
    if int(ids.min()) < 0:
        raise ValueError("ids must be non-negative dense ids (remap keys first)")
    n_ids = max(int(ids.max()) + 1, int(n_ids or 0))
    last = np.full(n_ids, -1, np.int32 if ids.size < 2**31 else np.int64)
    return _next_use(ids, last)
