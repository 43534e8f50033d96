"""Batching concurrent requests for ``gati serve``: a small window, one runtime call per batch.

``Batcher.submit(x)`` queues one preprocessed request (1 x C x H x W) and
returns a future. A single worker thread takes the first waiting request, then
keeps taking more until ``max_batch`` are gathered or ``window_ms`` has passed
since the first one arrived, runs ``GatiRuntime.predict`` once on the stacked
batch and hands each caller its own row. Requests that exit early at a head
leave the batch there (the runtime's index vector), so a batch costs about what
its slowest member needs. With ``window_ms = 0`` it still batches whatever is
already waiting when the worker comes back, never waiting for more.
``workers`` threads gather and run batches side by side (one per core is the
usual choice: a batch-1 server runs as many requests at once as it has gRPC
worker threads, so a batching server with one worker would use one core).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from .runtime import GatiRuntime


@dataclass
class BatchedResult:
    label: int
    exit_unit: int
    confidence: float
    batch_size: int
    model_ms: float  # the runtime call for the whole batch


class Batcher:
    def __init__(
        self,
        runtime: GatiRuntime,
        window_ms: float = 2.0,
        max_batch: int = 32,
        device: str = "cpu",
        workers: int = 1,
    ) -> None:
        if window_ms < 0 or max_batch < 1:
            raise ValueError("window_ms must be >= 0 and max_batch >= 1")
        self.runtime, self.window_s, self.max_batch, self.device = (
            runtime,
            window_ms / 1000.0,
            max_batch,
            device,
        )
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.batches = 0
        self.requests = 0
        self._count_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, name=f"gati-batcher-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def submit(self, x: torch.Tensor) -> Future:
        fut: Future = Future()
        self._queue.put((x, fut))
        return fut

    def _gather(self) -> list:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.perf_counter() + self.window_s
        while len(items) < self.max_batch:
            try:
                items.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                items.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return items

    def _loop(self) -> None:
        while not self._stop.is_set():
            items = self._gather()
            if not items:
                continue
            try:
                x = torch.cat([i[0] for i in items]).to(self.device)
                t = time.perf_counter()
                out = self.runtime.predict(x)
                ms = (time.perf_counter() - t) * 1000
                labels, units, conf = out.labels.tolist(), out.exit_unit.tolist(), out.confidence.tolist()
            except Exception as exc:  # handed to every caller of this batch; the worker carries on
                for _, fut in items:
                    fut.set_exception(exc)
                continue
            with self._count_lock:
                self.batches += 1
                self.requests += len(items)
            for k, (_, fut) in enumerate(items):
                fut.set_result(BatchedResult(labels[k], units[k], conf[k], len(items), ms))

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
