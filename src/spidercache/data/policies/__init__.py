"""Training-data policies, one file each; ``make_training_policy`` builds one by name.

A new policy is one more file with a ``TrainingPolicy`` subclass and one
``train-NAME`` line in the engine's one table (``engine/policies/registry.py``):
the CLI, the loader and ``bench train`` pick it up from there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...engine.policies import registry
from .base import Lookup, TrainingPolicy, loss_rank_scores

# What `spidercache train` uses when --policy is not given.
DEFAULT_POLICY = "spider"  # the project's own policy (importance + homophily caches)


def policy_names() -> list[str]:
    return registry.policy_names("training")


def _key(name: str) -> str:
    key = name.strip().lower()
    if key not in policy_names():
        raise registry.UserError(f"unknown training policy {name!r}; choose from {', '.join(policy_names())}")
    return registry.TRAINING + key


def policy_class(name: str) -> type[TrainingPolicy]:
    return registry.policy_class(_key(name))


def make_training_policy(
    name: str, n_samples: int, capacity: int, labels: np.ndarray | None = None, seed: int = 0, **options: Any
) -> TrainingPolicy:
    """Build the policy ``name`` for ``n_samples`` ids with room for ``capacity`` of them."""
    return registry.make_policy(_key(name), capacity, n_samples, labels=labels, seed=seed, **options)


__all__ = [
    "DEFAULT_POLICY",
    "Lookup",
    "TrainingPolicy",
    "loss_rank_scores",
    "make_training_policy",
    "policy_class",
    "policy_names",
]
