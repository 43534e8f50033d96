import math

import numpy as np

from spidercache.embedding import families
from spidercache.embedding import policy as _registers  # noqa: F401  (names slrfu in the engine registry)
from spidercache.embedding.sampled import SampledLRFU
from spidercache.engine.ids import remap_trace
from spidercache.engine.policies import make_policy


class _Xorshift:
    def __init__(self, state: int) -> None:
        self.x = state

    def below(self, n: int) -> int:
        m = (1 << 64) - 1
        x = self.x & m
        x ^= (x << 13) & m
        x ^= x >> 7
        x ^= (x << 17) & m
        self.x = x
        return x % n


def _reference(ids, cap, tau, k, seed=1):
    """Plain-Python slrfu: same counts, same random draws, same slot moves."""
    rng = _Xorshift(((0x1E3779B97F4A7C15 ^ seed) & 0x7FFFFFFFFFFFFFFF) or 1)
    inv = 1.0 / (tau * cap)
    key, slot, slots, hits = (
        {},
        {},
        [],
        [],
    )  # key: log(decayed count) + time / tau, as the kernel keeps it
    for now, i in enumerate(ids.tolist()):
        t = now * inv
        key[i] = math.log(math.exp(key[i] - t) + 1.0) + t if i in key else t
        hits.append(i in slot)
        if i in slot:
            continue
        if len(slots) >= cap:
            best, low = -1, np.inf
            for _ in range(k):
                v = slots[rng.below(len(slots))]
                if key[v] < low:
                    best, low = v, key[v]
            p = slot.pop(best)
            last = slots.pop()
            if last != best:
                slots[p] = last
                slot[last] = p
        slot[i] = len(slots)
        slots.append(i)
    return np.array(hits)


def test_slrfu_matches_a_plain_python_reference_hit_for_hit():
    ids, n = remap_trace(families.dlrm(20_000, seed=4))
    for cap, tau, k in ((50, 32.0, 64), (400, 2.0, 8)):
        got = np.concatenate([SampledLRFU(cap, n, tau=tau, k=k).access(ids)])
        pol = SampledLRFU(cap, n, tau=tau, k=k)
        batched = np.concatenate([pol.access(ids[s : s + 999]) for s in range(0, ids.size, 999)])
        want = _reference(ids, cap, tau, k)
        assert np.array_equal(got, want) and np.array_equal(batched, want)
        assert pol.size == cap and set(pol.resident_ids().tolist()) == set(np.flatnonzero(pol._where > 0))


def test_slrfu_remove_resize_and_evictions_are_reported():
    ids, n = remap_trace(families.zipf(30_000, alpha=0.9, rows=5_000, seed=2))
    evicted = []
    pol = make_policy("slrfu", 300, n, on_evict=evicted.append)
    hits = pol.access(ids)
    st = pol.stats()
    assert st.hits == int(hits.sum()) and st.evictions == sum(e.size for e in evicted) == st.admissions - 300
    res = pol.resident_ids()
    assert pol.remove(res[:50]) == 50 and pol.size == 250 and not pol.contains(res[:50]).any()
    now = float(pol._s[3])
    before = np.exp(pol._key[:n] - now / (pol.tau * 300))  # every row's decayed count now
    pol.resize(100)
    assert np.allclose(np.exp(pol._key[:n] - now / (pol.tau * 100)), before)  # resizing keeps the counts
    assert pol.size == 100 and set(pol.resident_ids().tolist()) <= set(res[50:].tolist())
    assert pol.contains(pol.resident_ids()).all()


def test_slrfu_keeps_rows_with_a_history_over_a_stream_of_one_offs():
    # 2,000 hot rows looked up in turn, interleaved 1:1 with rows never seen again; LRU of 2,500 rows
    # loses the hot rows (each comes back after 4,000 requests); slrfu keeps them (counts 1 vs many)
    hot = np.tile(np.arange(2_000), 20)
    keys = np.empty(2 * hot.size, np.int64)
    keys[0::2] = hot
    keys[1::2] = 10_000 + np.arange(hot.size)
    ids, n = remap_trace(keys)
    lru = make_policy("lru", 2_500, n).access(ids).mean()
    got = make_policy("slrfu", 2_500, n).access(ids).mean()
    assert lru < 0.05 and got > 0.4, (lru, got)
