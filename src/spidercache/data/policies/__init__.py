"""Training-data policies, one file each; ``make_training_policy`` builds one by name.

A new policy is one more file with a ``TrainingPolicy`` subclass and one line
in ``_BUILTIN`` (or a call to ``register``): the CLI, the loader and
``bench train`` pick it up from ``TRAINING_POLICIES``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ...errors import UserError
from .base import Lookup, TrainingPolicy, loss_rank_scores

# name -> "module:Class", imported on first use so a broken optional policy
# (e.g. one that needs hnswlib) cannot break the others.
_BUILTIN: dict[str, str] = {
    "none": "none:NoCache",
    "lru": "lru:LRUPolicy",
    "minio": "minio:MinIOPolicy",
    "shade": "shade:ShadePolicy",
    "icache": "icache:ICachePolicy",
    "spider": "spider:SpiderPolicy",
    "spider-noh": "spider:SpiderNoHomophily",
    "spider-nois": "spider:SpiderNoImportanceSampling",
}
TRAINING_POLICIES: dict[str, type[TrainingPolicy]] = {}

# What `spidercache train` uses when --policy is not given.
DEFAULT_POLICY = "spider"  # the project's own policy (importance + homophily caches)


def register(cls: type[TrainingPolicy]) -> type[TrainingPolicy]:
    """Add a policy class (usable as a decorator)."""
    TRAINING_POLICIES[cls.name] = cls
    return cls


def policy_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(TRAINING_POLICIES))


def policy_class(name: str) -> type[TrainingPolicy]:
    key = name.strip().lower()
    if key in TRAINING_POLICIES:
        return TRAINING_POLICIES[key]
    if key not in _BUILTIN:
        raise UserError(f"unknown training policy {name!r}; choose from {', '.join(policy_names())}")
    module_name, cls_name = _BUILTIN[key].split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls = getattr(module, cls_name)
    TRAINING_POLICIES[key] = cls
    return cls


def make_training_policy(
    name: str, n_samples: int, capacity: int, labels: np.ndarray | None = None, seed: int = 0, **options: Any
) -> TrainingPolicy:
    """Build the policy ``name`` for ``n_samples`` ids with room for ``capacity`` of them."""
    return policy_class(name)(n_samples, capacity, labels, seed, **options)


__all__ = [
    "TRAINING_POLICIES",
    "DEFAULT_POLICY",
    "Lookup",
    "TrainingPolicy",
    "loss_rank_scores",
    "make_training_policy",
    "policy_class",
    "policy_names",
    "register",
]
