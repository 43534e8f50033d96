"""Sizing a training cache in bytes: estimate what a sample costs, turn a budget into a capacity.

The policies count samples; the budget is bytes. ``estimate`` encodes a few
samples (spread over the dataset, read through the same path as a miss) to
learn the mean and largest encoded size. ``Sizing`` then says how many
samples the budget holds: for the shared-memory store, slots sized for the
largest sample seen (plus a margin), minus the slots held back for batches
still in flight, so the arena never exceeds the budget; for a network or disk
store, the budget over the mean size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import codec
from ..errors import UserError

SLOT_MARGIN = (
    1.25  # with samples of different sizes, a slot has room for this much more than the largest seen
)


@dataclass
class Estimate:
    n: int
    mean_bytes: float
    max_bytes: int
    min_bytes: int = 0

    @property
    def slot_bytes(self) -> int:
        """Slot size: the largest probed value, with a margin only when the probed sizes differ."""
        margin = SLOT_MARGIN if self.min_bytes != self.max_bytes else 1.0
        return int(-(-int(self.max_bytes * margin) // 64) * 64)


def estimate(cached_dataset, n_probe: int = 8) -> Estimate:
    """Encoded size of ``n_probe`` samples spread over the dataset (read from the source)."""
    n = len(cached_dataset)
    ids = np.unique(np.linspace(0, n - 1, min(n, n_probe)).astype(np.int64))
    values = [v for v in cached_dataset.load(ids) if v is not None]
    if not values:
        raise UserError("none of the probed samples could be read; check the dataset")
    sizes = [len(codec.encode(v)) for v in values]
    return Estimate(n, float(np.mean(sizes)), int(max(sizes)), int(min(sizes)))


@dataclass
class Sizing:
    capacity: int  # samples the policy may hold
    budget: int  # bytes the cache may hold
    n_slots: int = 0  # shared-memory store only
    slot_bytes: int = 0


def size_cache(
    est: Estimate,
    working_set: float | None,
    cache_bytes: int | None,
    *,
    slots: bool,
    batch_size: int = 1,
    delay: int = 2,
) -> Sizing:
    """How many samples a cache of ``working_set`` (fraction of samples) or ``cache_bytes`` holds.

    ``slots``: the shared-memory store, whose arena (every slot, held-back
    ones included) is the budget: with ``cache_bytes`` the arena is that many
    bytes; with ``working_set`` it is sized for ``working_set * n`` samples.
    """
    if cache_bytes is not None and working_set is not None:
        raise UserError("give working_set or cache_bytes, not both")
    sb = est.slot_bytes
    held = (delay + 1) * int(batch_size) if slots else 0
    if cache_bytes is None:
        ws = 0.1 if working_set is None else float(working_set)
        if not 0.0 < ws <= 1.0:
            raise UserError(f"working_set must be in (0, 1], got {working_set}")
        capacity = max(1, int(round(ws * est.n)))
        if not slots:
            return Sizing(capacity, int(capacity * est.mean_bytes))
        return Sizing(capacity, (capacity + held) * sb, capacity + held, sb)
    budget = int(cache_bytes)
    if budget < est.max_bytes:
        raise UserError(f"cache budget of {budget} bytes is smaller than one sample ({est.max_bytes} bytes)")
    if not slots:
        return Sizing(max(1, min(est.n, int(budget // est.mean_bytes))), budget)
    n_slots = budget // sb
    capacity = min(n_slots - held, est.n)
    if capacity < 1:
        raise UserError(
            f"cache budget of {budget} bytes holds {n_slots} samples of up to {sb} bytes, but "
            f"{held} slots are held back for batches in flight (batch_size x (prefetch window + 1)); "
            "raise the budget or lower batch_size"
        )
    return Sizing(int(capacity), budget, int(capacity + held), sb)


def slot_delay(workers: int, prefetch_factor: int) -> int:
    """Plans a freed slot (or a DDP delete) waits: longer than the loader runs ahead."""
    return (max(workers, 0) * prefetch_factor if workers > 0 else 0) + 2
