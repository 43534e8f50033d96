"""Eviction policies over dense int64 ids, one file each (libCacheSim style).

``make_policy("lru", capacity)`` builds one by name; ``POLICIES`` lists them.
"""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from .base import Policy, PolicyStats
from .lru import LRU

POLICIES: dict[str, type[Policy]] = {
    LRU.name: LRU,
}


def register(cls: type[Policy]) -> type[Policy]:
    """Add a policy class to the registry (front-ends add their own)."""
    POLICIES[cls.name] = cls
    return cls


def make_policy(name: str, capacity: int, n_ids: int = 0, **kwargs: Any) -> Policy:
    """Build the policy called ``name`` (case-insensitive)."""
    cls = POLICIES.get(name.lower().replace("-", "").replace("_", ""))
    if cls is None:
        raise UserError(f"unknown policy {name!r}; choose from {', '.join(sorted(POLICIES))}")
    return cls(capacity, n_ids, **kwargs)


__all__ = ["POLICIES", "Policy", "PolicyStats", "make_policy", "register", "LRU"]
