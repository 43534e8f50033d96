"""A plain-Python LHD (Beckmann et al., NSDI '18) as libCacheSim runs it: the tests' reference.

Written from the definition (see ``spidercache.engine.policies.lhd``), in the
most direct form: a Python list of resident tags swapped-and-popped on
eviction, dicts for the rest, ``numpy.float32`` for every quantity libCacheSim
keeps as a C ``float``, and the random generator as a Python integer.
"""

from __future__ import annotations

import numpy as np

F = np.float32
MAX_AGE = 20000
CLASSES = 16
APP = 1  # libCacheSim's DEFAULT_APP_ID: every object is in app class 1
RECONF = 1 << 20
DECAY = F(0.9)
LEHMER = 0xDA942042E4DD58B5
MASK128 = (1 << 128) - 1


class RefLHD:
    def __init__(self, cap: int, seed: int = 0xDEADBEEF) -> None:
        self.cap = cap
        self.state = seed
        self.used = 0
        self.tags: list[list] = []  # [id, timestamp, last_hit_age, last_last_hit_age, size, explorer]
        self.index: dict[int, int] = {}
        self.size: dict[int, int] = {}
        self.hits = np.zeros((CLASSES, MAX_AGE), F)
        self.evictions = np.zeros((CLASSES, MAX_AGE), F)
        a = np.arange(MAX_AGE, dtype=np.float64)
        self.dens = np.array([(APP * CLASSES + c + 1) / (a + 1) for c in range(CLASSES)]).astype(F)
        self.recent = [-1] * 8
        self.recent_head = 0
        self.ewma_victim = F(0)
        self.explorer_budget = int(F(cap) * F(0.01))
        self.timestamp = 0
        self.next_reconf = RECONF
        self.n_reconf = 0
        self.shift = 10
        self.ewma_n = F(0)
        self.ewma_mass = F(0)

    def rand(self) -> int:
        self.state = (self.state * LEHMER) & MASK128
        return self.state >> 64

    # --------------------------------------------------------------- model
    def age(self, t) -> int:
        return min((self.timestamp - t[1]) >> self.shift, MAX_AGE - 1)

    @staticmethod
    def cls(t) -> int:
        age = t[2] + t[3]
        if age == 0:
            return CLASSES - 1
        log = 0
        while age < MAX_AGE and log < CLASSES - 1:
            age <<= 1
            log += 1
        return log

    def density(self, t):
        a = self.age(t)
        if a == MAX_AGE - 1:
            return F(np.finfo(F).min)
        d = F(self.dens[self.cls(t), a] / F(t[4]))
        return F(d + F(1)) if t[5] else d

    # ------------------------------------------------------------ requests
    def access(self, x: int, z: int = 1) -> bool:
        if x in self.size:
            self.used += z - self.size[x]  # libCacheSim's LHD takes the request's size on a hit
            self.size[x] = z
            self.update(x, z)
            return True
        if z > self.cap:
            return False
        while self.used + z > self.cap:
            self.evict(self.rank())
        self.size[x] = z
        self.update(x, z)
        self.used += z
        return False

    def rank(self) -> int:
        best, best_rank = -1, F(np.finfo(F).max)
        for _ in range(32 if self.n_reconf > 50 else 8):
            t = self.tags[self.rand() % len(self.tags)]
            r = self.density(t)
            if r < best_rank:
                best, best_rank = t[0], r
        for x in self.recent:
            if x in self.index:
                r = self.density(self.tags[self.index[x]])
                if r < best_rank:
                    best, best_rank = x, r
        self.ewma_victim = F(DECAY * self.ewma_victim + (F(1) - DECAY) * best_rank)
        return best

    def evict(self, x: int) -> None:
        i = self.index.pop(x)
        t = self.tags[i]
        self.evictions[self.cls(t), self.age(t)] += F(1)
        if t[5]:
            self.explorer_budget = int(F(self.explorer_budget) + F(t[4]))
        last = self.tags.pop()
        if i < len(self.tags):
            self.tags[i] = last
            self.index[last[0]] = i
        self.used -= self.size.pop(x)

    def update(self, x: int, z: int) -> None:
        insert = x not in self.index
        if insert:
            t = [x, 0, 0, MAX_AGE, F(0), False]
            self.index[x] = len(self.tags)
            self.tags.append(t)
        else:
            t = self.tags[self.index[x]]
            a = self.age(t)
            self.hits[self.cls(t), a] += F(1)
            if t[5]:
                self.explorer_budget = int(F(self.explorer_budget) + F(t[4]))
            t[3], t[2] = t[2], a
        t[1] = self.timestamp
        t[4] = F(z)
        explore = self.rand() % 32 == 0
        t[5] = explore and self.explorer_budget > 0 and self.n_reconf < 50
        if t[5]:
            self.explorer_budget = int(F(self.explorer_budget) - F(t[4]))
        if insert and not explore and self.density(t) < self.ewma_victim:
            self.recent[self.recent_head % 8] = x
            self.recent_head += 1
        self.timestamp += 1
        self.next_reconf -= 1
        if self.next_reconf == 0:
            self.reconfigure()
            self.next_reconf = RECONF
            self.n_reconf += 1

    def reconfigure(self) -> None:
        self.hits *= DECAY
        self.evictions *= DECAY
        self.coarsen()
        for c in range(CLASSES):
            h, e = self.hits[c], self.evictions[c]
            events = F(h[-1] + e[-1])
            hits = h[-1]
            life = events
            for a in range(MAX_AGE - 2, -1, -1):
                hits = F(hits + h[a])
                events = F(events + F(h[a] + e[a]))
                life = F(life + events)
                self.dens[c, a] = F(hits / life) if events > 1e-5 else F(0)

    def coarsen(self) -> None:
        self.ewma_n = F(self.ewma_n * DECAY)
        self.ewma_mass = F(self.ewma_mass * DECAY)
        self.ewma_n = F(self.ewma_n + F(len(self.size)))
        self.ewma_mass = F(self.ewma_mass + F(1))
        if self.n_reconf not in (5, 25):
            return
        optimal = float(F(self.ewma_n / self.ewma_mass)) / float(F(0.01) * F(MAX_AGE))
        log2 = 1
        while (1 << log2) < optimal:
            log2 += 1
        delta, self.shift = log2 - self.shift, log2
        self.ewma_n = F(self.ewma_n * F(8))
        self.ewma_mass = F(self.ewma_mass * F(8))
        for arr in (self.hits, self.evictions):
            for c in range(CLASSES):
                row = arr[c]
                if delta < 0:
                    d = -delta
                    for a in range(MAX_AGE >> d, MAX_AGE - 1):
                        row[MAX_AGE - 1] += row[a]
                    for a in range(MAX_AGE - 2, -1, -1):
                        row[a] = F(row[a >> d] / F(1 << d))
                elif delta > 0:
                    for a in range(MAX_AGE >> delta):
                        s = row[a << delta]
                        for i in range(1, 1 << delta):
                            s = F(s + row[(a << delta) + i])
                        row[a] = s
                    row[MAX_AGE >> delta : MAX_AGE - 1] = 0
