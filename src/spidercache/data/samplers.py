"""Samplers: the order of an epoch, and the batch sampler that plans each batch.

``weighted_draw`` is the importance sampling the policies share.
``PlanningBatchSampler`` is what the DataLoader iterates: it takes the
policy's global order for the epoch, cuts it into global batches (one slice
per rank), asks the planner what each request is served by, and yields a
``BatchPlan`` instead of a list of indices. The DataLoader hands the plan to
``CachedDataset.__getitems__`` in a worker, so all cache decisions are made
once, in the main process, and workers only execute them.

Sharding works like ``DistributedSampler`` but over the policy's order: all
ranks compute the same order (same seed, same committed scores), step ``s``
covers ``order[s*B*W : (s+1)*B*W]`` and rank ``r`` takes the ``r``-th block
of ``B``. With a shared store the planner decides the whole global batch on
every rank (identical decisions, a sample cached once per cluster); with a
per-rank store it decides only the rank's own block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from ..checks import at_least

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.cache import Cache
    from ..engine.plan import BatchPlan


def weighted_draw(
    scores: np.ndarray, n_draws: int, rng: np.random.Generator, temperature: float = 1.0, replace: bool = True
) -> np.ndarray:
    """Draw ids with probability proportional to ``scores ** (1/temperature)``.

    Non-finite or negative scores count as the smallest positive score, so a
    sample is never excluded for good.
    """
    s = np.asarray(scores, np.float64)
    pos = s[np.isfinite(s) & (s > 0)]
    floor = pos.min() if pos.size else 1.0
    s = np.where(np.isfinite(s) & (s > 0), s, floor)
    w = s ** (1.0 / max(temperature, 1e-6))
    p = w / w.sum()
    if replace:
        # inverse-CDF draws: one searchsorted instead of Generator.choice's checks
        cdf = np.cumsum(p)
        cdf[-1] = 1.0
        return np.searchsorted(cdf, rng.random(n_draws), side="right").astype(np.int64)
    return rng.choice(s.size, size=min(n_draws, s.size), replace=False, p=p).astype(np.int64)


class PlanningBatchSampler:
    """Yields one ``BatchPlan`` per step of this rank; ``set_epoch`` before each epoch."""

    def __init__(
        self,
        planner: Cache,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        drop_last: bool | None = None,
        order_fn: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        at_least(1, batch_size=batch_size)
        self.planner = planner
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world = int(world)
        # DDP needs the same number of steps on every rank: drop the ragged tail.
        self.drop_last = (world > 1) if drop_last is None else bool(drop_last)
        self.epoch = 0
        # the epoch's global request order: the policy's own unless the loader says otherwise
        self.order_fn = order_fn or planner.policy.order
        self._order = np.empty(0, np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._order = np.asarray(self.order_fn(self.epoch), np.int64)

    def __len__(self) -> int:
        per_step = self.batch_size * self.world
        n = self._order.size
        return n // per_step if self.drop_last else -(-n // per_step)

    def __iter__(self) -> Iterator[BatchPlan]:
        B, W, r = self.batch_size, self.world, self.rank
        order = self._order
        for step in range(len(self)):
            chunk = order[step * B * W : (step + 1) * B * W]
            # Ragged last step (single rank only): split what is left evenly.
            per = -(-chunk.size // W)
            own = slice(min(r * per, chunk.size), min((r + 1) * per, chunk.size))
            yield self.planner.plan(chunk, own, self.epoch, step)
