import numpy as np
import pytest

from spidercache.embedding import families
from spidercache.embedding.adaptive import Learned
from spidercache.embedding.admit import AdmitLRU
from spidercache.embedding.reuse import ReuseModel
from spidercache.engine.ids import remap_trace
from spidercache.engine.policies import make_policy

HEURISTICS = ("lru", "lfu", "arc", "s3fifo")


def _ratio(policy, ids, batch=4096):
    return np.concatenate([policy.access(ids[s : s + batch]) for s in range(0, ids.size, batch)]).mean()


@pytest.mark.parametrize(
    "keys",
    [
        families.zipf(120_000, alpha=0.8, rows=10_000, seed=3),  # LFU-like traces favour frequency
        families.drift(120_000, period=3.0, rows=10_000, seed=3),  # fast drift: LFU collapses, recency wins
    ],
    ids=["zipf", "fast-drift"],
)
def test_learned_tracks_the_best_heuristic_with_no_model(keys):
    ids, n = remap_trace(keys)
    cap = n // 10
    best = max(_ratio(make_policy(h, cap, n), ids) for h in HEURISTICS)
    worst = min(_ratio(make_policy(h, cap, n), ids) for h in HEURISTICS)
    assert best - worst > 0.03  # the trace does separate the heuristics
    got = _ratio(Learned(cap, n), ids)
    assert got >= best - 0.01, (got, best)


def test_learned_hits_only_rows_it_holds_and_reports_every_eviction():
    keys = families.dlrm(8_000, seed=5)
    ids, n = remap_trace(keys)
    held: set[int] = set()
    evicted: list[np.ndarray] = []
    pol = Learned(60, n, on_evict=evicted.append, window=2.0)
    for i in ids.tolist():  # one request per call, so each eviction is known before the next request
        hit = bool(pol.access(np.array([i]))[0])
        assert hit == (i in held)  # a hit is a row admitted earlier and not evicted since
        held.add(i)
        for ev in evicted:
            held.difference_update(ev.tolist())
        evicted.clear()
        assert pol.size <= 60
    assert set(pol.resident_ids().tolist()) == held
    st = pol.stats()
    assert st.requests == ids.size and st.evictions == st.admissions - pol.size
    assert pol.switches >= 1  # it did move off its first leader on this trace
    assert pol.remove(pol.resident_ids()[:10]) == 10 and pol.size == 50
    pol.resize(20)
    assert pol.size == 20 and all(e.capacity == 20 for e in pol.experts)


def test_reuse_model_learns_which_table_is_one_off():
    rng = np.random.default_rng(0)
    n = 40_000
    tables = rng.integers(0, 2, n)
    ids = np.where(tables == 0, 10_000 + np.arange(n), rng.integers(0, 50, n))  # table 0: fresh rows only;
    # table 1: 50 rows, each back after ~100 requests, P(within 500) = 1 - exp(-5) = 0.99
    model = ReuseModel(capacity=500, n_ids=int(ids.max()) + 1)
    p = np.concatenate(
        [model.observe(ids[s : s + 1000], tables[s : s + 1000], 500.0) for s in range(0, n, 1000)]
    )
    late = slice(n // 2, n)
    assert p[late][tables[late] == 0].mean() < 0.05
    assert p[late][tables[late] == 1].mean() > 0.9


def test_lru_admit_keeps_one_offs_out():
    rng = np.random.default_rng(1)
    n = 60_000
    hot = rng.integers(0, 3_000, n)
    one_off = rng.random(n) < 0.5
    keys = np.where(one_off, (1 << 40) | np.arange(n), hot)
    ids, n_ids = remap_trace(keys)
    tables = np.zeros(n_ids, np.int64)
    tables[ids] = keys >> 40
    lru = _ratio(make_policy("lru", 2_000, n_ids), ids)
    adm = AdmitLRU(2_000, n_ids, tables=tables)
    got = _ratio(adm, ids)
    assert got > lru + 0.05 and adm.stats().rejections > n // 4


@pytest.mark.parametrize("name", list(families.FAMILIES))
def test_families_are_deterministic_and_well_formed(name):
    a, b = families.make(name, 20_000), families.make(name, 20_000)
    assert np.array_equal(a, b) and a.size == 20_000 and a.min() >= 0
    assert not np.array_equal(a, families.make(name, 20_000, seed=99))
    if name.startswith("dlrm"):
        assert np.unique(a >> 40).size == (12 if name == "dlrm-meta" else 8)


def test_tune_and_report_families_do_not_overlap():
    assert set(families.TUNE).isdisjoint(families.REPORT)
    assert set(families.TUNE) | set(families.REPORT) == set(families.FAMILIES)


def test_pooled_family_keeps_one_off_rows_inside_a_hashed_key_range():
    keys = families.pooled(60_000, seed=3)
    tab, rows = keys >> 40, keys & ((1 << 40) - 1)
    assert tab.max() < 8 and rows.max() < 2 * (1 << 34)  # Zipf, one-off and session rows: no fresh counter
    assert np.count_nonzero(np.diff(tab) < 0) >= 5  # batch-major (~6,600 lookups a batch), then table-major
    _, counts = np.unique(keys, return_counts=True)
    assert np.mean(counts == 1) > 0.5
    rare = families.pooled(60_000, seed=3, one_off=0.0)
    assert np.mean(rare & ((1 << 40) - 1) >= (1 << 34)) < 0.05  # only session rows sit above 2^34


def test_meta_family_is_table_major_with_one_off_rows():
    keys = families.meta(60_000, seed=3)
    tab = keys >> 40
    runs = np.flatnonzero(np.diff(tab) != 0).size + 1  # table-major: one run per table per batch
    batches = np.count_nonzero(np.diff(tab) < 0) + 1
    assert runs == batches * 12 or runs == (batches - 1) * 12 + int(tab[-1]) + 1
    _, counts = np.unique(keys, return_counts=True)
    assert 0.3 < np.mean(counts == 1) < 0.8  # many rows are seen once, as in Meta's traces
    assert not np.array_equal(families.meta(60_000, seed=3, swap_share=0.0, new_rate=0.0), keys)


def test_expert_fast_path_serves_exactly_as_the_public_access(monkeypatch):
    keys = families.dlrm(30_000, seed=7)
    ids, n = remap_trace(keys)
    fast = make_policy("learned", 300, n)
    got = fast.access(ids)
    monkeypatch.setattr(Learned, "_expert_hits", lambda self, j, e, c: int(np.count_nonzero(e.access(c))))
    plain = make_policy("learned", 300, n)
    want = plain.access(ids)
    assert np.array_equal(got, want) and fast.switches == plain.switches
    for a, b in zip(fast.experts, plain.experts):
        assert a.stats() == b.stats() and np.array_equal(a._where, b._where)
