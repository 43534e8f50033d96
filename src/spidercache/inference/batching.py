"""Batching concurrent requests for ``gati serve``: a small window, one runtime call per batch.

``Batcher.submit(x)`` queues one preprocessed request (1 x C x H x W) and
returns a future. A worker thread takes the first waiting request, then keeps
taking more until ``max_batch`` are gathered or ``window_ms`` has passed since
the first one arrived, runs ``GatiRuntime.predict`` on the stacked batch and
hands each caller its own row. Requests that exit early at a head leave the
batch there (the runtime's index vector), so a batch costs about what its
slowest member needs. With ``window_ms = 0`` it still batches whatever is
already waiting when the worker comes back, never waiting for more.

Using several cores: ``parallel`` splits each gathered batch into that many
chunks run side by side, one thread each (the worker and a small pool), with
torch at one intra-op thread; a batch is split only while batches take at least
``split_ms`` (running average), since handing a chunk to another thread costs a
wake-up that on a loaded machine waits for a core (the small CNN's 1 ms batches
ran 4x slower split: 338 against 1442 req/s). Measured on the 2-core
development box (docs/bench/gati.md), the batch run whole on one thread served
7-31% more than split in 9 of 12 rounds (split won 3, by 1-29%), so whole
(``parallel = 1``) is the default. The alternatives were worse: ``workers = 2`` (two gatherers) splits
the same requests into two windows and smaller batches (mean 3.2 instead of
7.5); torch's own intra-op threads (``torch.set_num_threads(2)``) spin-wait in
OpenMP while the other thread waits for a core, which on a loaded machine cost
35-90 ms of CPU per request instead of 6. ``workers`` > 1 is for devices
(several batches in flight).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..checks import at_least
from .runtime import GatiRuntime, Prediction


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
        parallel: int = 1,
        split_ms: float = 4.0,
    ) -> None:
        at_least(0, window_ms=window_ms)
        at_least(1, max_batch=max_batch, parallel=parallel)
        self.runtime, self.window_s, self.max_batch, self.device = (
            runtime,
            window_ms / 1000.0,
            max_batch,
            device,
        )
        self.parallel, self.split_ms = parallel, split_ms
        self._batch_ms = 0.0  # running average of a batch's model time (whole); the first batch runs whole
        self._pool = ThreadPoolExecutor(parallel - 1, "gati-chunk") if parallel > 1 else None
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

    def _predict(self, x: torch.Tensor) -> tuple[list[int], list[int], list[float], int]:
        """The runtime on ``x``, in ``parallel`` chunks on as many threads when batches are slow enough.

        Returns labels, exit units and confidences as lists, and the number of chunks it ran.
        """
        chunks = min(self.parallel, x.shape[0]) if self._batch_ms >= self.split_ms else 1
        if chunks == 1 or self._pool is None:
            parts = [self.runtime.predict(x)]
        else:
            pieces = torch.tensor_split(x, chunks)
            pending = [self._pool.submit(self.runtime.predict, p) for p in pieces[1:]]
            parts = [self.runtime.predict(pieces[0])] + [f.result() for f in pending]
        labels, units, conf = (torch.cat([getattr(p, f) for p in parts]).tolist() for f in Prediction.FIELDS)
        return labels, units, conf, len(parts)

    def _loop(self) -> None:
        while not self._stop.is_set():
            items = self._gather()
            if not items:
                continue
            try:
                x = items[0][0] if len(items) == 1 else torch.cat([i[0] for i in items])
                t = time.perf_counter()
                labels, units, conf, chunks = self._predict(x.to(self.device))
                ms = (time.perf_counter() - t) * 1000
                self._batch_ms = 0.8 * self._batch_ms + 0.2 * ms * chunks  # about the batch's time whole
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
        if self._pool is not None:
            self._pool.shutdown()
