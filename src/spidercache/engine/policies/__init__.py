"""Eviction policies over dense int64 ids, one file each (libCacheSim style).

``make_policy("lru", capacity)`` builds any policy of any front-end by name from
the one lazy table in ``registry.py``; ``policy_names()`` lists them.
"""

from __future__ import annotations

from .base import Policy, PolicyStats
from .registry import ENGINE_POLICIES, POLICIES, make_policy, policy_class, policy_names

__all__ = [
    "ENGINE_POLICIES",
    "POLICIES",
    "Policy",
    "PolicyStats",
    "make_policy",
    "policy_class",
    "policy_names",
]
