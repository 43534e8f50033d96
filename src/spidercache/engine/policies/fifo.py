"""FIFO: evict the id that was admitted longest ago; hits change nothing.

State: the same dense-slot linked list as LRU (see ``_slotlist``), 16 bytes per
distinct id. A hit costs a single load (``where[id]``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _slotlist as sl
from .base import Policy

NIL = sl.NIL


@nb.njit(cache=True)
def _fifo_access(ids, admit, use_admit, hits, evicted, record, where, sid, sprev, snext, s):
    cap, size, head, tail = s[0], s[1], s[2], s[3]
    n_ev = 0
    n_adm = 0
    n_rej = 0
    for k in range(ids.size):
        i = ids[k]
        if where[i] > 0:
            hits[k] = True
            continue
        hits[k] = False
        if use_admit and not admit[k]:
            n_rej += 1
            continue
        n_adm += 1
        if size >= cap:
            slot = tail
            victim = sid[slot]
            where[victim] = 0
            if record:
                evicted[n_ev] = victim
            n_ev += 1
            if slot != head:
                p = sprev[slot]
                snext[p] = NIL
                tail = p
                sprev[slot] = NIL
                snext[slot] = head
                sprev[head] = slot
                head = slot
        else:
            slot = size
            size += 1
            sprev[slot] = NIL
            snext[slot] = head
            if head != NIL:
                sprev[head] = slot
            else:
                tail = slot
            head = slot
        sid[slot] = i
        where[i] = slot + 1
    s[1] = size
    s[2] = head
    s[3] = tail
    return n_ev, n_adm, n_rej


class FIFO(Policy):
    name = "fifo"
    _where_dtype = np.int32
    _id_arrays = {"_sid": (np.int32, NIL), "_sprev": (np.int32, NIL), "_snext": (np.int32, NIL)}
    _n_scalars = 4

    def _init_scalars(self) -> None:
        self._s[2] = NIL
        self._s[3] = NIL

    def _access(self, ids, admit, use_admit, hits, evicted, record):
        return _fifo_access(ids, admit, use_admit, hits, evicted, record,
                            self._where, self._sid, self._sprev, self._snext, self._s)

    def _remove(self, ids):
        return sl.remove_ids(ids, self._where, self._sid, self._sprev, self._snext, self._s)

    def _shrink(self, evicted):
        return sl.shrink_to_capacity(evicted, self._where, self._sid, self._sprev, self._snext, self._s)
