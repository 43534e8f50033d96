"""The one back-off rule for a store that stopped answering.

After a failure the store is left alone for ``retry_after`` seconds; each
further failure doubles the wait, capped at ``max_retry_after`` (default: the
same, a fixed wait); a success resets it. A cache asks ``down`` before each store call,
so a dead server costs one timeout per back-off period, not one per batch, and
the cache comes back by itself when the server does.

Not locked: callers that share one across threads hold their own lock around
``failed`` / ``succeeded`` (a race costs at most one extra try).
"""

from __future__ import annotations

import time


class Backoff:
    def __init__(self, retry_after: float = 1.0, max_retry_after: float | None = None) -> None:
        self.retry_after = float(retry_after)
        self.max_retry_after = float(self.retry_after if max_retry_after is None else max_retry_after)
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        self.wait = self.retry_after  # the next back-off period
        self.down_until = 0.0  # time.monotonic() before which the store is skipped

    @property
    def down(self) -> bool:
        """True while the store is being left alone."""
        return time.monotonic() < self.down_until

    def failed(self) -> None:
        """The store failed: skip it for the current wait, then double the wait."""
        self.down_until = time.monotonic() + self.wait
        self.wait = min(self.wait * 2, self.max_retry_after)

    def succeeded(self) -> None:
        """The store answered: the next failure waits ``retry_after`` again."""
        self.wait = self.retry_after

    def reset(self) -> None:
        """Forget every failure (e.g. in a freshly forked process)."""
        self.wait = self.retry_after
        self.down_until = 0.0
