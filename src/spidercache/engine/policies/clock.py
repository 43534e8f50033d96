"""CLOCK (second chance) with a 1-bit counter, as libCacheSim's ``Clock``.

A hit sets the object's bit. To evict, look at the oldest object: if its bit
is set, clear it and give it another lap (it moves to the newest end); evict the
first oldest object whose bit is clear. Object counts and object sizes. State:
``_slotbits``'s slot list, 17 bytes per distinct id.
"""

from __future__ import annotations

from ._slotbits import CLOCK, SlotBitsPolicy


class Clock(SlotBitsPolicy):
    name = "clock"
    kind = CLOCK
