"""Slow-storage emulation on top of the real read: ``--storage-latency-ms``, ``--storage-bandwidth-mbps``.

The cache's gain is the time it saves on reads from the source. A
``CachedDataset`` with a ``StorageModel`` sleeps ``latency + bytes / bandwidth``
after each batch of real reads (misses only: hits never reach the source),
charged as sequential requests, one per sample; parallelism comes from the
DataLoader workers, each of which sleeps on its own, as separate clients would.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import at_least


@dataclass(frozen=True)
class StorageModel:
    """The cost of one read: ``latency_ms`` per request plus size over bandwidth."""

    latency_ms: float = 0.0
    bandwidth_mbps: float = 0.0  # megabytes per second; 0 means unlimited

    def __post_init__(self) -> None:
        at_least(0, flag=True, storage_latency_ms=self.latency_ms, storage_bandwidth_mbps=self.bandwidth_mbps)

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
