"""Eviction policies over dense int64 ids, one file each (libCacheSim style).

``make_policy("lru", capacity)`` builds one by name; ``POLICIES`` lists them.
"""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from .arc import ARC
from .base import Policy, PolicyStats
from .clock import Clock
from .fifo import FIFO
from .gdsf import GDSF
from .lecar import LeCaR
from .lfu import LFU
from .lru import LRU
from .opt import OPT, next_use_positions, opt_hits
from .s3fifo import S3FIFO
from .sieve import Sieve
from .twoq import TwoQ
from .wtinylfu import WTinyLFU

POLICIES: dict[str, type[Policy]] = {
    LRU.name: LRU,
    FIFO.name: FIFO,
    LFU.name: LFU,
    ARC.name: ARC,
    S3FIFO.name: S3FIFO,
    OPT.name: OPT,
    Sieve.name: Sieve,
    Clock.name: Clock,
    TwoQ.name: TwoQ,
    GDSF.name: GDSF,
    WTinyLFU.name: WTinyLFU,
    LeCaR.name: LeCaR,
}

# other names people use for the same policies
_ALIASES = {"belady": "opt", "min": "opt", "2q": "twoq", "tinylfu": "wtinylfu"}


def register(cls: type[Policy]) -> type[Policy]:
    """Add a policy class to the registry (front-ends add their own)."""
    POLICIES[cls.name] = cls
    return cls


def make_policy(name: str, capacity: int, n_ids: int = 0, **kwargs: Any) -> Policy:
    """Build the policy called ``name`` (case-insensitive)."""
    key = name.lower().replace("-", "").replace("_", "")
    cls = POLICIES.get(_ALIASES.get(key, key))
    if cls is None:
        raise UserError(f"unknown policy {name!r}; choose from {', '.join(sorted(POLICIES))}")
    return cls(capacity, n_ids, **kwargs)


__all__ = ["POLICIES", "Policy", "PolicyStats", "make_policy", "register",
           "LRU", "FIFO", "LFU", "ARC", "S3FIFO", "OPT", "Sieve", "Clock", "TwoQ", "GDSF", "WTinyLFU",
           "LeCaR", "next_use_positions", "opt_hits"]
