"""SIEVE (Zhang et al., NSDI '24): a FIFO with a visited bit and a hand that sifts it.

A hit sets the object's bit; a miss, when the cache is full, moves the hand from
where it stopped (the tail at first) towards the newer end, clearing set bits,
and evicts the first object whose bit is clear; new objects go to the head.
libCacheSim's ``Sieve``, hit for hit (object counts and object sizes). State:
``_slotbits``'s slot list, 17 bytes per distinct id.
"""

from __future__ import annotations

from ._slotbits import SIEVE, SlotBitsPolicy


class Sieve(SlotBitsPolicy):
    name = "sieve"
    kind = SIEVE
