"""Slow-storage emulation: make each real read cost what a remote file system would.

The cache's gain is the time it saves on reads from the source. On a local
disk (or with the dataset already decoded in RAM) that time is near zero, so
``SlowStorage`` charges every read ``latency + bytes / bandwidth`` by sleeping.
It wraps the source and is only ever called for misses: hits never reach it,
which is exactly the saving a cache gives on NFS or an object store.

Reads inside one call are charged as sequential requests (one remote request
per sample, as a map-style dataset issues them); parallelism comes from
DataLoader workers, each of which sleeps on its own, as separate clients would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class StorageModel:
    """The cost of one read: ``latency_ms`` per request plus size over bandwidth."""

    latency_ms: float = 0.0
    bandwidth_mbps: float = 0.0  # megabytes per second; 0 means unlimited

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise UserError(f"--storage-latency-ms must be >= 0, got {self.latency_ms}")
        if self.bandwidth_mbps < 0:
            raise UserError(f"--storage-bandwidth-mbps must be >= 0, got {self.bandwidth_mbps}")

    def seconds(self, n_reads: int, n_bytes: int) -> float:
        """Time ``n_reads`` sequential reads totalling ``n_bytes`` take."""
        t = n_reads * self.latency_ms / 1000.0
        if self.bandwidth_mbps > 0:
            t += n_bytes / (self.bandwidth_mbps * 1e6)
        return t

    @property
    def free(self) -> bool:
        return self.latency_ms == 0 and self.bandwidth_mbps == 0

    def describe(self) -> str:
        bw = f"{self.bandwidth_mbps:g} MB/s" if self.bandwidth_mbps else "unlimited bandwidth"
        return f"{self.latency_ms:g} ms per read, {bw}"


class SlowStorage:
    """The source of samples: decoded arrays behind an emulated remote file system.

    ``data`` is N x C x H x W (uint8 for images) and ``targets`` the labels.
    ``read_many(ids)`` returns the samples (a new array) and sleeps for the
    modelled time; ``reads`` and ``bytes_read`` count what was charged.
    """

    def __init__(self, data: np.ndarray, targets: np.ndarray, model: StorageModel | None = None) -> None:
        self.data = data
        self.targets = np.asarray(targets, np.int64)
        self.model = model or StorageModel()
        self.sample_bytes = int(data[0].nbytes) if len(data) else 0
        self.reads = 0
        self.bytes_read = 0
        self.seconds_charged = 0.0

    def __len__(self) -> int:
        return len(self.data)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def read_many(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        out = self.data[ids]  # fancy indexing copies: the caller owns the result
        if ids.size:
            cost = self.model.seconds(ids.size, ids.size * self.sample_bytes)
            if cost > 0:
                time.sleep(cost)
            self.reads += int(ids.size)
            self.bytes_read += int(ids.size) * self.sample_bytes
            self.seconds_charged += cost
        return out
