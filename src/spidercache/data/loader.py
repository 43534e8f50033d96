"""``CachedLoader``: a DataLoader whose batches come through a training policy's cache.

It composes the pieces the way ``torch.utils.data`` does: the policy's
``PlanningBatchSampler`` decides each batch in the main process, a plain
``torch.utils.data.DataLoader`` carries the plans to its workers, and
``CachedDataset.__getitems__`` executes them, one batch operation each. The
loader counts what happened (hits, substitutions, misses, lost hits, store
errors, seconds the caller waited for data) per epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import torch

from .cached import CachedDataset, CachePlanner, LoadedBatch, unwrap_batch
from .policies.base import TrainingPolicy
from .samplers import PlanningBatchSampler


@dataclass
class LoaderStats:
    """What the cache did over some batches (one rank)."""

    requests: int = 0
    hits: int = 0            # requested id served from the cache
    substitutions: int = 0   # a resident stand-in served instead
    misses: int = 0          # served from storage (includes lost hits)
    lost: int = 0            # planned cache reads that failed (store down, overwritten)
    store_errors: int = 0
    storage_reads: int = 0
    data_wait_seconds: float = 0.0

    def add(self, b: LoadedBatch) -> None:
        n = int(b.requested.size)
        t, s = b.true_hits, b.substitutions
        self.requests += n
        self.hits += t
        self.substitutions += s
        self.misses += n - t - s
        self.lost += int(b.lost)
        self.store_errors += int(b.store_errors)
        self.storage_reads += int(b.storage_reads)

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def substitution_ratio(self) -> float:
        return self.substitutions / self.requests if self.requests else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hit_ratio"] = self.hit_ratio
        d["substitution_ratio"] = self.substitution_ratio
        return d


def slot_delay(workers: int, prefetch_factor: int) -> int:
    """Plans a freed memory slot waits before reuse: longer than the prefetch window."""
    return (max(workers, 0) * prefetch_factor if workers > 0 else 0) + 2


def slot_count(capacity: int, batch_size: int, workers: int, prefetch_factor: int) -> int:
    """Slots for an in-process cache: the capacity plus the held-back slots."""
    return int(capacity) + (slot_delay(workers, prefetch_factor) + 1) * int(batch_size)


class CachedLoader:
    """Iterate ``loader.epoch(e)`` for the batches of epoch ``e`` (a ``LoadedBatch`` each)."""

    def __init__(self, dataset: CachedDataset, policy: TrainingPolicy, batch_size: int, *,
                 workers: int = 0, rank: int = 0, world: int = 1, prefetch_factor: int = 2,
                 drop_last: bool | None = None, multiprocessing_context: str | None = None) -> None:
        self.dataset = dataset
        self.policy = policy
        self.workers = int(workers)
        self.planner = CachePlanner(policy, dataset.backend, rank, world,
                                    slot_delay(self.workers, prefetch_factor))
        self.batch_sampler = PlanningBatchSampler(self.planner, batch_size, rank, world, drop_last)
        kw = {}
        if self.workers > 0:
            kw = dict(prefetch_factor=prefetch_factor, persistent_workers=True,
                      multiprocessing_context=multiprocessing_context)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.batch_sampler, num_workers=self.workers,
            collate_fn=unwrap_batch, **kw)
        self.stats = LoaderStats()        # the epoch in progress (or last finished)
        self.total = LoaderStats()        # since the loader was made

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def start_epoch(self, epoch: int) -> int:
        """Commit the policy's scores and fix the epoch's order; returns the number of steps.

        Called once per epoch (``epoch()`` calls it unless the caller already
        did, e.g. to size a progress bar): ``begin_epoch`` is not idempotent.
        """
        self.policy.begin_epoch(epoch)
        self.batch_sampler.set_epoch(epoch)
        self._started = epoch
        return len(self.batch_sampler)

    def epoch(self, epoch: int) -> Iterator[LoadedBatch]:
        if getattr(self, "_started", None) != epoch:
            self.start_epoch(epoch)
        self._started = None
        self.stats = LoaderStats()
        it = iter(self.loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            wait = time.perf_counter() - t0
            self.stats.data_wait_seconds += wait
            self.total.data_wait_seconds += wait
            self.stats.add(batch)
            self.total.add(batch)
            yield batch

    def update(self, sample_ids: np.ndarray, losses: np.ndarray, embeddings: np.ndarray | None = None) -> None:
        """Per-sample feedback for the policy (served ids, their losses, their embeddings)."""
        self.policy.update(np.asarray(sample_ids, np.int64), np.asarray(losses, np.float64),
                           None if embeddings is None else np.asarray(embeddings, np.float32))

    def close(self) -> None:
        # Persistent workers end when the DataLoader iterator is dropped.
        self.loader = None  # type: ignore[assignment]
        close = getattr(self.dataset.backend, "close", None)
        if close is not None:
            close()
