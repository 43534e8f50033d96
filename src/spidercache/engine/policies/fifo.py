"""FIFO: evict the id that was admitted longest ago; hits change nothing.

State: the same dense-slot linked list as LRU (see ``_slotlist``), 16 bytes per
distinct id. A hit costs a single load (``where[id]``).
"""

from __future__ import annotations

from ._slotlist import SlotListPolicy


class FIFO(SlotListPolicy):
    name = "fifo"
    move_on_hit = False
