"""The split of a two-level cache, adapted online from what each level earns.

SpiderCache divides its capacity between an importance cache (level 0) and a
homophily cache (level 1); its published code fixed the ratio at 1.0, so the
homophily level never ran. Here the share of level 0, ``ratio``, moves every
epoch toward the level whose *marginal* slots earned more in the epoch that
just ended:

    gain_l = mean over the least-used quarter of level l's slots of the
             requests each slot served (hits; for level 1 also substitutions;
             an empty slot served 0)
    ratio += step * (gain_0 - gain_1) / (gain_0 + gain_1)       clipped to [lo, hi]

Why the least-used quarter and not the average per slot (the first version):
moving a few slots from one level to the other costs the first level what its
*worst* slots served and gains the other what *its* worst slots served (its
next slots would serve about as little). The average hides this: level 1's
representatives earned more per slot on average, so the split ran to its
floor even once level 1 had slots it did not use, and the total served share
fell (docs/bench/spider.md, "Findings"). The normalised difference makes the
step size independent of the request rate; the bounds keep both levels alive
(a level can only show what it is worth if it has a few slots).

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
    def __init__(
        self,
        ratio: float = 0.5,
        lo: float = 0.1,
        hi: float = 0.9,
        step: float = 0.2,
        address: tuple[str, int] | None = None,
        rank: int = 0,
        world: int = 1,
        key: str = "spidercache:spider:ratio",
        wait_seconds: float = 30.0,
    ) -> None:
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
    def marginal_gain(served_per_resident: np.ndarray, slots: int, share: float = 0.25) -> float:
        """Mean requests served by the least-used ``share`` of ``slots`` (empty slots count 0)."""
        slots = int(slots)
        if slots <= 0:
            return 0.0
        counts = np.sort(np.asarray(served_per_resident, np.float64))[:slots]
        if counts.size < slots:
            counts = np.concatenate([np.zeros(slots - counts.size), counts])
        m = max(1, int(np.ceil(share * slots)))
        return float(counts[:m].mean())

    @staticmethod
    def proposal(ratio: float, gain0: float, gain1: float, lo: float, hi: float, step: float) -> float:
        if not (np.isfinite(gain0) and np.isfinite(gain1)) or gain0 + gain1 <= 0:
            return float(np.clip(ratio, lo, hi))
        return float(np.clip(ratio + step * (gain0 - gain1) / (gain0 + gain1), lo, hi))

    def update(
        self, epoch: int, gain0: float, gain1: float, average: tuple[float, float] | None = None
    ) -> float:
        """Fold one epoch's marginal per-slot gains in; returns the ratio every rank uses next epoch."""
        local = self.proposal(self.ratio, gain0, gain1, self.lo, self.hi, self.step)
        shared = self._share(epoch, local)
        self.ratio = local if shared is None else shared
        entry = {
            "epoch": int(epoch),
            "gain0": float(gain0),
            "gain1": float(gain1),
            "ratio": self.ratio,
            "source": "redis" if shared is not None else "local",
        }
        if average is not None:
            entry.update(avg_gain0=float(average[0]), avg_gain1=float(average[1]))
        self.history.append(entry)
        return self.ratio

    # ------------------------------------------------------------ sharing
    def _redis(self):
        if self._client is None:
            import redis

            host, port = self.address
            self._client = redis.Redis(
                host=host, port=int(port), socket_timeout=2.0, socket_connect_timeout=2.0
            )
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
                warnings.warn(
                    f"spider: cannot share the cache split through Redis at "
                    f"{self.address[0]}:{self.address[1]} ({exc}); each rank uses its own value",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return None

    def state_dict(self) -> dict:
        return {"ratio": self.ratio, "history": list(self.history)}

    def load_state_dict(self, s: dict) -> None:
        self.ratio = float(s["ratio"])
        self.history = list(s.get("history", []))
