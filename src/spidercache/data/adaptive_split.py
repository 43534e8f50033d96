"""The split of a two-level cache, adapted online from what each level earns.

SpiderCache divides its capacity between an importance cache (level 0) and a
homophily cache (level 1); its published code fixed the ratio at 1.0, so the
homophily level never ran. Here the share of level 0, ``ratio``, moves every
epoch toward the level whose slots earned more in the epoch that just ended:

    gain_0 = requests served by level 0 (hits) / slots of level 0
    gain_1 = requests served by level 1 (hits + substitutions) / slots of level 1
    ratio += step * (gain_0 - gain_1) / (gain_0 + gain_1)       clipped to [lo, hi]

A per-slot gain compares the levels fairly whatever their sizes, and the
normalised difference makes the step size independent of the request rate.
Bounds keep both levels alive: a level can only show what it is worth if it
has a few slots.

Under DDP the ratio must be the same on every rank (it decides which ids are
resident). Rank 0 computes it and publishes it in Redis (SpiderCache's layout
puts it on port 6381; any shared Redis works, the key is namespaced); the
other ranks read it. If Redis does not answer, each rank falls back to its
own computation (identical anyway when every rank sees the same gathered
statistics) and a warning says so.
"""

from __future__ import annotations

import time
import warnings

import numpy as np


class AdaptiveSplit:
    def __init__(self, ratio: float = 0.5, lo: float = 0.1, hi: float = 0.9, step: float = 0.2,
                 address: tuple[str, int] | None = None, rank: int = 0, world: int = 1,
                 key: str = "spidercache:spider:ratio", wait_seconds: float = 30.0) -> None:
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"need 0 <= lo <= hi <= 1, got lo={lo}, hi={hi}")
        self.lo, self.hi, self.step = float(lo), float(hi), float(step)
        self.ratio = float(np.clip(ratio, self.lo, self.hi))
        self.address = address
        self.rank, self.world = int(rank), int(world)
        self.key = key
        self.wait_seconds = float(wait_seconds)
        self.history: list[dict] = []
        self._client = None
        self._warned = False

    @staticmethod
    def proposal(ratio: float, hits0: float, slots0: int, served1: float, slots1: int,
                 lo: float, hi: float, step: float) -> float:
        g0 = hits0 / slots0 if slots0 > 0 else 0.0
        g1 = served1 / slots1 if slots1 > 0 else 0.0
        if g0 + g1 <= 0:
            return float(np.clip(ratio, lo, hi))
        return float(np.clip(ratio + step * (g0 - g1) / (g0 + g1), lo, hi))

    def update(self, epoch: int, hits0: float, slots0: int, served1: float, slots1: int) -> float:
        """Fold one epoch's gains in; returns the ratio every rank uses next epoch."""
        local = self.proposal(self.ratio, hits0, slots0, served1, slots1, self.lo, self.hi, self.step)
        shared = self._share(epoch, local)
        self.history.append({"epoch": int(epoch), "gain0": hits0 / slots0 if slots0 else 0.0,
                             "gain1": served1 / slots1 if slots1 else 0.0, "ratio": shared,
                             "source": "redis" if shared is not None and self.address else "local"})
        self.ratio = local if shared is None else shared
        self.history[-1]["ratio"] = self.ratio
        return self.ratio

    # ------------------------------------------------------------ sharing
    def _redis(self):
        if self._client is None:
            import redis

            host, port = self.address
            self._client = redis.Redis(host=host, port=int(port), socket_timeout=2.0, socket_connect_timeout=2.0)
        return self._client

    def _share(self, epoch: int, local: float) -> float | None:
        if self.address is None:
            return None
        key = f"{self.key}:{int(epoch)}"
        try:
            client = self._redis()
            if self.rank == 0:
                client.set(key, repr(local), ex=24 * 3600)
                return local
            deadline = time.monotonic() + self.wait_seconds
            while True:
                raw = client.get(key)
                if raw is not None:
                    value = float(raw)
                    return float(np.clip(value, self.lo, self.hi)) if np.isfinite(value) else None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"rank 0 did not publish {key}")
                time.sleep(0.01)
        except Exception as exc:  # server down, timeout: keep training on the local value
            self._client = None
            if not self._warned:
                self._warned = True
                warnings.warn(f"spider: cannot share the cache split through Redis at "
                              f"{self.address[0]}:{self.address[1]} ({exc}); each rank uses its own value",
                              RuntimeWarning, stacklevel=3)
            return None

    def state_dict(self) -> dict:
        return {"ratio": self.ratio, "history": list(self.history)}

    def load_state_dict(self, s: dict) -> None:
        self.ratio = float(s["ratio"])
        self.history = list(s.get("history", []))
