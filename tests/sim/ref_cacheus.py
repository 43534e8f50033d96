"""A plain-Python Cacheus (Rodriguez et al., FAST '21) as libCacheSim runs it: the tests' reference.

Written from the definition (see ``spidercache.engine.policies.cacheus``) in
the most direct form: an ``OrderedDict`` per LRU list (last item = most
recent), a dict of ``OrderedDict`` per frequency for CR-LFU, the random
generator as a Python integer.
"""

from __future__ import annotations

import math
from collections import OrderedDict

LEHMER = 0xDA942042E4DD58B5
MASK128 = (1 << 128) - 1


class Lru:
    def __init__(self, cap: int) -> None:
        self.cap, self.d, self.used = cap, OrderedDict(), 0

    def __contains__(self, x) -> bool:
        return x in self.d

    def push(self, x: int, z: int) -> None:
        self.d[x] = z
        self.used += z

    def tail(self) -> int:
        return next(iter(self.d))

    def pop(self, x: int) -> int:
        z = self.d.pop(x)
        self.used -= z
        return z

    def admit(self, x: int, z: int) -> None:
        """libCacheSim's ``get`` of a missing object on a plain LRU (the ghost lists)."""
        if z > self.cap:
            return
        while self.used + z > self.cap:
            self.pop(self.tail())
        self.push(x, z)


class RefCacheus:
    def __init__(self, cap: int, seed: int = 0xDEADBEEF) -> None:
        self.state = seed
        self.cap = cap
        self.R, self.SR, self.H = Lru(cap // 2), Lru(cap // 2), Lru(cap)
        self.G_lru, self.G_lfu = Lru(cap // 2), Lru(cap // 2)
        self.lr = 0.001 + (self.rand() % 1000) / 1000
        self.lr_prev = self.hit_rate_prev = 0.0
        self.w_lru = self.w_lfu = 0.5
        self.unlearn = self.num_hit = self.n_req = 0
        self.freq: dict[int, int] = {}  # CR-LFU's count of a resident object
        self.hfreq: dict[int, int] = {}  # the count handed to its entry in SR-LRU's history
        self.lsize: dict[int, int] = {}  # CR-LFU's copy of the size
        self.buckets: dict[int, OrderedDict] = {1: OrderedDict()}
        self.min_f = self.max_f = 1
        self.evicted: list[int] = []
        # SR-LRU's adaptive split: flags of SR entries and of H entries, and their two counts
        self.new: set[int] = set()  # entered SR as new (in SR), or left SR so (in H)
        self.demoted: set[int] = set()  # demoted from R into SR (in SR)
        self.c_new = self.c_demoted = 0

    def rand(self) -> int:
        self.state = (self.state * LEHMER) & MASK128
        return self.state >> 64

    def used(self) -> int:
        return self.R.used + self.SR.used

    def access(self, x: int, z: int = 1) -> bool:
        self.n_req += 1
        hit = self.find(x, z)
        if not hit and z <= self.cap:
            while self.used() + z > self.cap:
                self.evict()
            self.insert(x, z)
        if self.n_req % self.cap == 0:
            self.update_lr()
        return hit

    # ------------------------------------------------------------- CR-LFU
    def bucket(self, f: int) -> OrderedDict:
        return self.buckets.setdefault(f, OrderedDict())

    def raise_min(self, none: int | None) -> None:
        for f in range(self.min_f + 1, self.max_f + 1):
            if self.bucket(f):
                self.min_f = f
                return
        if none is not None:
            self.min_f = none

    def lfu_hit(self, x: int) -> None:
        f = self.freq[x]
        del self.bucket(f)[x]
        self.freq[x] = f + 1
        self.max_f = max(self.max_f, f + 1)
        self.bucket(f + 1)[x] = None
        if self.min_f == f and not self.bucket(f):
            self.raise_min(None)

    def lfu_insert(self, x: int, z: int) -> None:
        f = self.hfreq.get(x, 0) + 1 if x in self.H else 1
        self.freq[x], self.lsize[x] = f, z
        if f == 1:
            self.min_f = 1
        self.bucket(f)[x] = None
        self.max_f = max(self.max_f, f)
        if self.min_f > f or self.min_f == -1:
            self.min_f = f

    def lfu_drop(self, x: int, evicting: bool) -> None:
        f = self.freq.pop(x)
        self.lsize.pop(x)
        if x in self.H:
            self.hfreq[x] = f
        del self.bucket(f)[x]
        if evicting:
            if not self.bucket(f):
                self.raise_min(-1)
        elif self.min_f > 0 and not self.bucket(self.min_f):
            self.raise_min(None)

    # ------------------------------------------------------------- SR-LRU
    def trim_h(self) -> None:
        while self.H.used >= self.H.cap:
            y = self.H.tail()
            self.H.pop(y)
            self.hfreq.pop(y, None)
            self.new.discard(y)

    def demote_r(self, z: int) -> None:
        while self.R.used + z > self.R.cap and self.R.d:
            y = self.R.tail()
            self.SR.push(y, self.R.pop(y))
            self.demoted.add(y)
            self.c_demoted += 1

    def leave_sr(self, x: int) -> None:
        """An SR entry goes to H: H's entry keeps the 'new' flag; both are counted."""
        if x in self.new:
            self.c_new += 1
        if x in self.demoted:
            self.demoted.discard(x)
            self.c_demoted -= 1

    def to_history(self, x: int) -> None:
        """SR-LRU's remove (and evict): the object leaves R or SR for H."""
        if x in self.R:
            self.H.push(x, self.R.pop(x))
        else:
            self.leave_sr(x)
            self.H.push(x, self.SR.pop(x))
        self.trim_h()

    def grow_sr(self) -> None:
        """An object that entered SR new came back from H: SR gains ``max(1, C_demoted // C_new + 0.5)``."""
        q = self.c_demoted // self.c_new
        delta = 1.0 if q + 0.5 < 1.0 else q + 0.5
        if self.SR.cap + delta > self.used() - 1:
            self.SR.cap = self.used() - 1 if self.used() >= 1 else 1 << 62  # libCacheSim: unsigned
        else:
            self.SR.cap = int(self.SR.cap + delta)
        self.R.cap = self.H.cap - self.SR.cap if self.SR.cap < 1 << 62 else self.H.cap + 1

    def find(self, x: int, z: int) -> bool:
        if x in self.R:
            self.R.d.move_to_end(x)
        elif x in self.SR:  # to R at its size; then R's overflow (possibly x itself) is demoted
            self.R.push(x, self.SR.pop(x))
            self.new.discard(x)
            self.demoted.discard(x)  # no shrink, no count: libCacheSim reads the flag of R's fresh entry
            self.demote_r(0)
        else:
            if x in self.G_lru:
                self.w_lru *= math.exp(-self.lr)
            elif x in self.G_lfu:
                self.w_lfu *= math.exp(-self.lr)
            self.w_lru = self.w_lru / (self.w_lru + self.w_lfu)
            self.w_lfu = 1 - self.w_lru
            for g in (self.G_lru, self.G_lfu):
                if x in g:
                    g.pop(x)
            return False
        self.lfu_hit(x)
        self.num_hit += 1
        return True

    def insert(self, x: int, z: int) -> None:
        in_h = x in self.H
        if z > (self.R.cap if in_h else self.SR.cap):
            return
        self.lfu_insert(x, z)
        if in_h:
            self.H.pop(x)
            self.hfreq.pop(x, None)
            self.demote_r(z)
            self.R.push(x, z)
            if x in self.new:
                self.new.discard(x)
                self.grow_sr()
        else:
            self.SR.push(x, z)
            self.new.add(x)
        while self.SR.used > self.SR.cap:
            y = self.SR.tail()
            self.leave_sr(y)
            self.H.push(y, self.SR.d[y])
            self.lfu_drop(y, evicting=False)
            self.SR.pop(y)
            self.evicted.append(y)
        self.trim_h()

    # ------------------------------------------------------------ Cacheus
    def evict(self) -> None:
        lru_v = self.SR.tail() if self.SR.used > 0 else self.R.tail()
        lfu_v = next(reversed(self.bucket(self.min_f)))
        r = (self.rand() % 100) / 100.0
        if lru_v == lfu_v:
            self.to_history(lru_v)
            self.lfu_drop(lru_v, evicting=True)
            self.evicted.append(lru_v)
        elif r < self.w_lru:
            z = (self.SR.d if lru_v in self.SR else self.R.d)[lru_v]
            self.to_history(lru_v)
            self.lfu_drop(lru_v, evicting=False)
            self.G_lru.admit(lru_v, z)
            self.evicted.append(lru_v)
        else:
            z = self.lsize[lfu_v]
            self.to_history(lfu_v)
            self.lfu_drop(lfu_v, evicting=True)
            self.G_lfu.admit(lfu_v, z)
            self.evicted.append(lfu_v)

    def update_lr(self) -> None:
        hit_rate = float(self.num_hit // self.cap)  # an integer division in libCacheSim
        d_hit = hit_rate - self.hit_rate_prev
        d_lr = self.lr - self.lr_prev
        self.lr_prev, self.hit_rate_prev = self.lr, hit_rate
        if d_lr != 0:
            sign = 1 if d_hit / d_lr > 0 else -1
            step = abs(self.lr * d_lr)
            self.lr = self.lr + sign * step if self.lr + sign * step > 0.001 else 0.0001
            self.unlearn = 0
        elif hit_rate == 0 or d_hit <= 0:
            self.unlearn += 1
        elif self.unlearn >= 10:
            self.unlearn = 0
            self.lr = 0.001 + (self.rand() % 1000) / 1000
        self.num_hit = 0
