"""Progress lines with an ETA for the long GATI commands (train-base, build, bench)."""

from __future__ import annotations

import time
from typing import Callable


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Eta:
    """``eta(done, total, extra)`` says ``label done/total (p%) extra, elapsed m:ss, ETA m:ss``.

    At most one line every ``every`` seconds (and always the first and the last
    one), so that a ten-minute job shows it is alive without flooding a log.
    The ETA is the elapsed time scaled by the work left: exact for uniform steps.
    Each call follows one unit of work, so the units counted before the first
    call were done by an earlier run (a resumed training): they are left out
    of the rate, which otherwise makes a resumed run's ETA absurdly short.
    """

    def __init__(self, say: Callable[[str], None], label: str, every: float = 10.0) -> None:
        self.say, self.label, self.every = say, label, every
        self.started = time.perf_counter()
        self.last = -float("inf")
        self.before: int | None = None  # units done before this run started

    def __call__(self, done: int, total: int, extra: str = "") -> None:
        now = time.perf_counter()
        if self.before is None:
            self.before = max(0, done - 1)
        if now - self.last < self.every and 1 < done < total:
            return
        self.last = now
        elapsed = now - self.started
        here = done - self.before
        eta = elapsed * (total - done) / here if here > 0 else float("nan")
        pct = 100.0 * done / total if total else 100.0
        eta_text = _clock(eta) if here > 0 else "?"
        extra = f" {extra}" if extra else ""
        self.say(
            f"{self.label} {done}/{total} ({pct:.0f}%){extra}, elapsed {_clock(elapsed)}, ETA {eta_text}"
        )
