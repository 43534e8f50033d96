"""``CachedLoader``: a DataLoader over any map-style dataset, its batches served through a cache.

It composes the pieces the way ``torch.utils.data`` does: in the main
process the loader's ``engine.Cache`` plans each batch (driven by a
``PlanningBatchSampler``); a plain ``torch.utils.data.DataLoader`` carries the
plans to its workers; ``CachedDataset.__getitems__`` has the same cache run
them (``Cache.run``) and the user's ``collate_fn`` builds the batch. The
loader yields exactly what that DataLoader would, and counts what the cache
did (``stats()``) from a small record each batch carries back.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..checks import at_least
from ..engine import codec
from ..engine.cache import Cache
from ..errors import UserError
from .budget import estimate, size_cache, slot_delay
from .cached import BatchMeta, CachedDataset, Collate, KeyOf, LabelsOf
from .distributed import check_same_on_every_rank
from .policies import make_training_policy, policy_class
from .policies.base import TrainingPolicy
from .samplers import PlanningBatchSampler
from .storage import StorageModel
from .stores import as_specs, is_memory, open_handles


@dataclass
class LoaderStats:
    """What the cache did over some batches (one rank)."""

    requests: int = 0
    hits: int = 0  # requested id served from the cache
    substitutions: int = 0  # a resident stand-in served instead
    misses: int = 0  # served from the source (includes lost hits)
    source_reads: int = 0  # distinct reads through the dataset's __getitem__
    lost_hits: int = 0  # planned cache reads that failed (store down, value gone or damaged)
    store_errors: int = 0
    skipped: int = 0  # samples that could not be read (BadSample), left out of their batch
    data_wait_seconds: float = 0.0

    def add(self, m: BatchMeta) -> None:
        n = int(m.requested.size) + int(m.skipped)
        s = int(np.count_nonzero(m.substituted))
        t = int(np.count_nonzero(m.hit)) - s
        self.requests += n
        self.hits += t
        self.substitutions += s
        self.misses += n - t - s
        self.source_reads += int(m.source_reads)
        self.lost_hits += int(m.lost)
        self.store_errors += int(m.store_errors)
        self.skipped += int(m.skipped)

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def substitution_ratio(self) -> float:
        return self.substitutions / self.requests if self.requests else 0.0


def default_fingerprint(dataset) -> str:
    """The dataset's ``fingerprint()``, else its class, length and first and last items' bytes."""
    fp = getattr(dataset, "fingerprint", None)
    if callable(fp):
        return str(fp())[:16]
    h = hashlib.sha256(f"{type(dataset).__module__}.{type(dataset).__qualname__}:{len(dataset)}".encode())
    for i in {0, len(dataset) - 1}:
        h.update(codec.encode([v.item() if isinstance(v, np.generic) else v for v in dataset[i]]))
    return h.hexdigest()[:16]


def _plain(options: dict | None) -> list:
    """The options a rank could be given differently (not its own objects: a DistInfo, a client)."""
    plain = (bool, int, float, str, type(None))
    return sorted((k, v) for k, v in (options or {}).items() if isinstance(v, plain))


def _check_dataset(dataset) -> int:
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise UserError(
            f"{type(dataset).__name__} is an iterable dataset; a cache needs a map-style dataset "
            "(__getitem__ and __len__)"
        )
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise UserError(
            f"{type(dataset).__name__} is not a map-style dataset (needs __getitem__ and __len__)"
        )
    n = len(dataset)
    if n < 1:
        raise UserError("the dataset is empty")
    return n


def _labels(dataset, targets, n: int) -> np.ndarray | None:
    t = targets if targets is not None else getattr(dataset, "targets", None)
    if t is None:
        return None
    t = np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t).astype(np.int64).reshape(-1)
    if t.size != n:
        raise UserError(f"targets has {t.size} labels for {n} samples")
    return t


def _key_prefix(dataset, fingerprint: str | None, cache: str, labels) -> str:
    """Names the data and the form of the value (raw / decoded, label inside or not)."""
    form = ("r" if cache == "raw" else "d") + ("l" if labels is None else "")
    return (fingerprint or default_fingerprint(dataset))[:16] + form


def _dataloader(
    dataset, batch_sampler, workers: int, collate, pin_memory: bool, prefetch: int, persistent: bool, context
) -> torch.utils.data.DataLoader:
    kw: dict[str, Any] = {}
    if workers > 0:
        kw = dict(prefetch_factor=prefetch, persistent_workers=persistent, multiprocessing_context=context)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        **kw,
    )


class CachedLoader:
    """A DataLoader whose batches come through a training policy's cache (see docs/training.md)."""

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        num_workers: int = 0,
        policy: str | TrainingPolicy = "lru",
        working_set: float | None = None,
        cache_bytes: int | None = None,
        store: str | list[str] = "memory",
        seed: int = 0,
        collate_fn: Callable | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        sampler=None,
        targets=None,
        cache: str = "decoded",
        transform: Callable | None = None,
        *,
        strict: bool = False,
        fingerprint: str | None = None,
        rank: int = 0,
        world: int = 1,
        policy_options: dict[str, Any] | None = None,
        storage_model: StorageModel | None = None,
        multiprocessing_context=None,
    ) -> None:
        n = _check_dataset(dataset)
        at_least(1, batch_size=batch_size)
        at_least(0, num_workers=num_workers)
        self.labels = _labels(dataset, targets, n)
        specs = as_specs(store)
        prefetch = 2 if prefetch_factor is None else int(prefetch_factor)
        delay = slot_delay(int(num_workers), prefetch) + (int(world) if world > 1 else 0)
        probe = CachedDataset(dataset, cache=cache, strict=strict, labels=self.labels)
        est = estimate(probe)
        self.sizing = size_cache(
            est, working_set, cache_bytes, slots=is_memory(specs), batch_size=batch_size, delay=delay
        )
        self.policy = self._policy(policy, n, seed, policy_options or {})
        private = is_memory(specs)
        handles = (
            []
            if self.policy.capacity == 0
            else open_handles(specs, self.sizing, n, "spidercache-train", shared=int(num_workers) > 0)
        )
        key = KeyOf(None if private else _key_prefix(dataset, fingerprint, cache, self.labels))
        plan_kw = dict(rank=rank, world=world, delay=delay, shared_store=not private)
        self.cache = Cache(self.policy, handles, key=key, dense_ids=True, **plan_kw)
        self.dataset = CachedDataset(
            dataset, self.cache, cache, transform, strict, storage_model, labels=self.labels
        )
        self._wire(rank, world, batch_size, drop_last, shuffle, sampler, n, seed)
        check_same_on_every_rank(
            {"samples": n, "data": key.prefix, "batch_size": int(batch_size), "seed": int(seed)}
            | self._plan_settings(policy_options, shuffle, sampler, delay),
            int(world),
        )
        self.loader = _dataloader(
            self.dataset,
            self.batch_sampler,
            int(num_workers),
            Collate(collate_fn, labels_in_main=not pin_memory),
            pin_memory,
            prefetch,
            persistent_workers,
            multiprocessing_context,
        )
        self.sampler = sampler
        self._size = np.zeros(n, np.int64)  # encoded bytes stored per id
        self._next_epoch = 0
        self._prepared: int | None = None  # the epoch begun and planned, not yet iterated
        self._running: object | None = None  # the iteration in progress, if any
        self.epoch_stats = LoaderStats()  # the last complete epoch
        self.current = LoaderStats()  # the epoch in progress
        self.total = LoaderStats()
        self.last: BatchMeta | None = None

    def _plan_settings(self, policy_options, shuffle, sampler, delay) -> dict:
        """What every rank must agree on beside the data and batch size (they plan the same batches)."""
        return {
            "cache capacity": int(self.policy.capacity),
            "policy": (type(self.policy).__name__, _plain(policy_options)),
            "shuffle": bool(shuffle),
            "sampler": sampler is not None,
            "planning delay (workers, prefetch)": int(delay),
        }

    def _wire(self, rank, world, batch_size, drop_last, shuffle, sampler, n, seed):
        """The batch sampler that has the cache plan each batch."""
        self.batch_sampler = PlanningBatchSampler(
            self.cache,
            batch_size,
            rank,
            world,
            drop_last if world == 1 else True,
            self._order_fn(shuffle, sampler, n, seed),
        )

    def _policy(self, policy, n: int, seed: int, options: dict) -> TrainingPolicy:
        if isinstance(policy, TrainingPolicy):
            return policy
        if getattr(policy_class(policy), "needs_labels", False) and self.labels is None:
            raise UserError(
                f"policy {policy!r} substitutes a miss by a sample of the same label: give "
                "targets= or a dataset with a .targets attribute"
            )
        return make_training_policy(policy, n, self.sizing.capacity, self.labels, seed=seed, **options)

    def _order_fn(self, shuffle: bool, sampler, n: int, seed: int):
        if sampler is not None:

            def order(epoch: int) -> np.ndarray:
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                return np.fromiter((int(i) for i in sampler), np.int64)

            return order
        own = type(self.policy).order is not TrainingPolicy.order
        if shuffle or own:
            return self.policy.order
        return lambda epoch: np.arange(n, dtype=np.int64)

    # ------------------------------------------------------------ epochs
    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration runs (as ``DistributedSampler.set_epoch``)."""
        self._next_epoch = int(epoch)

    def __len__(self) -> int:
        # Policies with their own order draw each epoch's length at its start (icache: ~0.8 N),
        # so the next epoch is prepared now and then run with that very order. Inside a running
        # iteration it is that epoch's length: preparing the next one would start it mid-epoch.
        if self._running is None:
            self._prepare(self._next_epoch)
        return len(self.batch_sampler)

    def _prepare(self, epoch: int) -> None:
        """Start ``epoch`` in the policy and plan its order, once (``begin_epoch`` is not idempotent)."""
        if self._prepared != epoch:
            self.policy.begin_epoch(epoch)
            self.batch_sampler.set_epoch(epoch)
            self._prepared = epoch

    def __iter__(self):
        epoch = self._next_epoch
        self._prepare(epoch)
        self._prepared = None  # used: set_epoch(epoch) and iterating again re-runs it afresh
        # An iteration that started is an epoch run (docs/training.md: "each iteration otherwise
        # runs the next epoch"): one left early is not repeated with the same order.
        self._next_epoch = epoch + 1
        token = self._running = object()
        self.current = LoaderStats()
        try:
            yield from self._batches(iter(self.loader))
            self.epoch_stats = self.current
        finally:
            if self._running is token:  # (a newer iteration may have started meanwhile)
                self._running = None

    def _batches(self, it):
        while True:
            t0 = time.perf_counter()
            try:
                out, meta = next(it)
            except StopIteration:
                return
            if isinstance(out, list) and len(out) == 2 and isinstance(out[1], LabelsOf):
                out[1] = self._label_tensor(out[1].ids)
            wait = time.perf_counter() - t0
            self.current.data_wait_seconds += wait
            self.total.data_wait_seconds += wait
            self.current.add(meta)
            self.total.add(meta)
            for i, b in meta.written.items():
                self._size[i] = b
            self.last = meta
            yield out

    def _label_tensor(self, ids: np.ndarray) -> torch.Tensor:
        """``default_collate`` of the labels of ``ids`` (ints: one int64 tensor)."""
        return torch.utils.data.default_collate(self.labels[ids].tolist())

    def update(self, losses, ids=None, embeddings=None) -> None:
        """Per-sample losses of the batch just yielded (no-op for policies that keep no scores)."""
        if ids is None:
            if self.last is None:
                raise UserError("update() before any batch was yielded")
            ids = self.last.served
        losses = losses.detach().cpu().numpy() if isinstance(losses, torch.Tensor) else losses
        losses = np.asarray(losses, np.float64).reshape(-1)
        ids = np.asarray(ids, np.int64)
        if losses.size != ids.size:
            raise UserError(
                f"update() got {losses.size} losses for a batch of {ids.size} samples "
                "(use a criterion with reduction='none')"
            )
        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().cpu().numpy()
        if embeddings is not None:
            embeddings = _checked_embeddings(embeddings, ids.size)
        self.policy.update(ids, losses, embeddings)

    def cached_bytes(self) -> int:
        res = self.policy.resident()
        return int(self._size[res].sum()) if res.size else 0

    def stats(self) -> dict:
        cb = self.cached_bytes()
        return {
            "epoch": {**asdict(self.epoch_stats), "cached_bytes": cb},
            "total": {**asdict(self.total), "cached_bytes": cb},
        }

    def close(self) -> None:
        self.loader = None  # type: ignore[assignment]  # persistent workers end with their iterator
        for h in self.dataset.stores:
            h.close()


def _checked_embeddings(embeddings, n: int) -> np.ndarray:
    """One embedding row per sample of the batch, else the user's mistake in one line
    (the policies reshape them to ``(n, -1)``, which raised a bare ValueError)."""
    emb = np.asarray(embeddings, np.float32)
    rows = emb.shape[0] if emb.ndim > 1 else (n if n and emb.size and emb.size % n == 0 else emb.size)
    if rows != n:
        raise UserError(
            f"update() got {rows} embedding rows for a batch of {n} samples "
            f"(shape {tuple(emb.shape)}: one row per sample)"
        )
    return emb
