"""LRU: evict the least recently used id.

State: a doubly linked list over dense slots (see ``_slotlist``): ``where[id]``
holds slot + 1, the slots hold the id and ``int32`` links; the head is the most
recent, the tail the next victim. 16 bytes of state per distinct id (4 for
``where``, 12 for the slot arrays, which are grown with the ids).
"""

from __future__ import annotations

from ._slotlist import SlotListPolicy


class LRU(SlotListPolicy):
    name = "lru"
    move_on_hit = True
