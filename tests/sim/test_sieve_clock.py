"""SIEVE and CLOCK against plain-Python references: accesses, removals, resizes, sizes.

(Their hits also equal libCacheSim's, see ``test_libcachesim``; these check the
paths libCacheSim's runs never take: ``remove`` and ``resize`` on a live cache.)
"""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.engine.policies import make_policy


class RefBits:
    """The list as a Python list (index 0 = head/newest), a bit per id, optional sizes."""

    def __init__(self, kind: str, cap: int) -> None:
        self.kind, self.cap = kind, cap
        self.q: list[int] = []
        self.bit: dict[int, int] = {}
        self.size: dict[int, int] = {}
        self.hand: int | None = None  # SIEVE: the id the hand points at (None: the tail)

    def used(self) -> int:
        return sum(self.size[x] for x in self.q)

    def _evict(self) -> int:
        if self.kind == "clock":
            while self.bit[self.q[-1]]:
                x = self.q.pop()
                self.bit[x] = 0
                self.q.insert(0, x)
            victim = self.q[-1]
        else:
            i = len(self.q) - 1 if self.hand is None else self.q.index(self.hand)
            while self.bit[self.q[i]]:
                self.bit[self.q[i]] = 0
                i = i - 1 if i > 0 else len(self.q) - 1
            victim = self.q[i]
            self.hand = self.q[i - 1] if i > 0 else None
        self.remove(victim, keep_hand=True)
        return victim

    def access(self, x: int, z: int = 1) -> bool:
        if x in self.q:
            self.bit[x] = 1
            return True
        if z > self.cap:
            return False
        while self.q and self.used() + z > self.cap:
            self._evict()
        self.q.insert(0, x)
        self.bit[x], self.size[x] = 0, z
        return False

    def remove(self, x: int, keep_hand: bool = False) -> bool:
        if x not in self.q:
            return False
        i = self.q.index(x)
        if not keep_hand and self.hand == x:
            self.hand = self.q[i - 1] if i > 0 else None
        self.q.pop(i)
        return True

    def resize(self, cap: int) -> None:
        self.cap = cap
        while self.q and self.used() > cap:
            self._evict()


@pytest.mark.parametrize("kind", ["sieve", "clock"])
@pytest.mark.parametrize("sized", [False, True])
def test_matches_reference_with_removals_and_resizes(kind, sized):
    rng = np.random.default_rng(7)
    for cap in (1, 2, 3, 5, 12) if not sized else (4, 9, 30):
        pol = make_policy(kind, cap, by_bytes=sized)
        ref = RefBits(kind, cap)
        for step in range(40):
            ids = rng.integers(0, 25, 30)
            sizes = rng.integers(1, 5, 30) if sized else None
            got = pol.access(ids, sizes=sizes).tolist()
            want = [ref.access(int(x), int(sizes[j]) if sized else 1) for j, x in enumerate(ids)]
            assert got == want, (kind, cap, step)
            gone = rng.integers(0, 25, 3)
            assert pol.remove(gone) == sum(ref.remove(int(x)) for x in dict.fromkeys(gone.tolist()))
            if step % 10 == 9:
                new_cap = int(rng.integers(1, 2 * cap + 2))
                pol.resize(new_cap)
                ref.resize(new_cap)
            assert set(pol.resident_ids().tolist()) == set(ref.q)
            if sized:
                assert pol.used_bytes == ref.used()
