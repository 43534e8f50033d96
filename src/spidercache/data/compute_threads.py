"""How many cores the model step gets on a CPU host, batch by batch, given what the cache served.

On a host without an accelerator the model step and the DataLoader workers share the cores.
Measured with ``spidercache bench epochs --file-px 64 --size 32`` (20,000 JPEGs over HTTP,
small CNN, 2 workers, 2 cores, mean of epochs 1-2, docs/bench/train.md): once the cache
serves every batch (working set 1.0) a warm epoch takes 3.35 s with torch pinned to 2 threads
against 6.33 s pinned to 1; while the workers decode every file (no cache) 2 threads cost
18.5 s against 16.6 s, and with spider at 0.1 (a quarter of each batch read) 9.6 s against
8.6 s; this rule gave 2.65 s, 15.3 s and 8.7 s in the same series. So the loop keeps
``workers // 2`` cores for the workers while batches read the source, takes every core after
``patience`` batches in a row that read nothing, and gives them back at the first batch that
reads the source again.

Every core is only faster when nothing else wants one: on a box shared with other jobs an
OpenMP thread that loses its core holds up the others (a warm epoch took 15.7 s instead of
2.5 s while another session's job ran). So the loop times its quiet iterations in both modes;
if taking every core made them slower it goes back, and waits twice as long as the time
before trying again.

Example::

    threads = ComputeThreads(cores=2, workers=2)      # 1 thread now
    for x, y in loader:                               # a CachedLoader
        threads.after_batch(loader.last.source_reads)
        ...                                           # the model step
    threads.reset()                                   # evaluation reads the source
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..checks import at_least

_SMOOTH = 0.3  # weight of the newest iteration in each mode's moving average


class ComputeThreads:
    def __init__(
        self, cores: int, workers: int, patience: int = 4, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        at_least(1, cores=cores, patience=patience)
        at_least(0, workers=workers)
        self.shared = max(1, cores - workers // 2)  # while the workers decode
        self.alone = cores  # while the cache serves everything
        self.patience = patience
        self.clock = clock
        self.seconds = {False: 0.0, True: 0.0}  # quiet iterations' moving average: shared, alone
        self._timed = {False: 0, True: 0}
        self._quiet = 0  # batches in a row that read nothing from the source
        self._batches = 0
        self._retry_at = 0  # batch count before which every core is not tried again
        self._backoff = 4 * patience
        self._last: float | None = None
        self.threads = 0
        self.reset()

    def _use(self, n: int) -> None:
        if n != self.threads:
            torch.set_num_threads(n)
            self.threads = n

    def reset(self) -> None:
        """Back to the shared count (call before anything that reads the source, e.g. an evaluation)."""
        self._quiet = 0
        self._last = None
        self._use(self.shared)

    def _time_last(self, now: float) -> None:
        """The iteration that just ended ran under ``self.threads``; time it if its batch was quiet."""
        if self._last is not None and self._quiet:
            alone = self.threads == self.alone != self.shared
            t = now - self._last
            self.seconds[alone] = (
                t if not self._timed[alone] else (1 - _SMOOTH) * self.seconds[alone] + _SMOOTH * t
            )
            self._timed[alone] += 1
        self._last = now

    def after_batch(self, source_reads: int) -> None:
        """Record how many samples the batch just yielded read from the source."""
        self._time_last(self.clock())
        self._batches += 1
        if source_reads:
            self._quiet = 0
            self._use(self.shared)
            return
        self._quiet += 1
        if self.threads == self.shared and self._quiet >= self.patience and self._batches >= self._retry_at:
            self._timed[True] = 0
            self._use(self.alone)
        elif self.threads == self.alone and self._timed[True] >= self.patience and self._timed[False]:
            if self.seconds[True] > self.seconds[False]:  # every core made quiet batches slower
                self._use(self.shared)
                self._retry_at = self._batches + self._backoff
                self._backoff *= 2
