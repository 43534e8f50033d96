from collections import OrderedDict

import numpy as np
import pytest

from spidercache.embedding.oracle_admit import (
    _filtered_lru_pass,
    admission_oracle,
    admission_oracle_hits,
)
from spidercache.engine.ids import remap_trace


def _python_filtered_lru(ids, cap, admit):
    """LRU in plain Python: a hit moves the row to the top; a miss is admitted iff admit[s]."""
    cache: OrderedDict = OrderedDict()
    hits = []
    for s, x in enumerate(ids.tolist()):
        if x in cache:
            cache.move_to_end(x)
            hits.append(True)
            continue
        hits.append(False)
        if admit[s]:
            if len(cache) >= cap:
                cache.popitem(last=False)
            cache[x] = True
    return np.array(hits)


def _python_labels(ids, hits, admit):
    """Per request t: distinct rows touched (hit or admitted) strictly between t and the next
    request of ids[t], counted by brute force."""
    touched = hits | admit
    out = np.full(ids.size, 1 << 30)  # no next request: never below cap
    for t in range(ids.size):
        nxt = np.flatnonzero(ids[t + 1 :] == ids[t])
        if nxt.size:
            s = t + 1 + nxt[0]
            out[t] = len(set(ids[t + 1 : s][touched[t + 1 : s]].tolist()))
    return out


def test_hand_worked_trace():
    # a b c a d b a c a b, two slots. Plain LRU hits only the a at position 8. The fixed point
    # admits a@0 and b@1 (each comes back while one other row is touched) and rejects c@2
    # (a and b are touched before its return) and the last requests: hits at 3, 5, 6, 8, 9.
    ids = np.array([0, 1, 2, 0, 3, 1, 0, 2, 0, 1])
    hits, label = _filtered_lru_pass(ids, 4, 2, np.ones(10, bool))
    assert hits.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert label.tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    r = admission_oracle(ids, 4, 2)
    assert r["converged"]
    assert [p["hit_ratio"] for p in r["passes"]] == [0.1, 0.1, 0.3, 0.3, 0.5]
    assert [p["disagree"] for p in r["passes"]] == [8, 5, 3, 2, 0]
    assert r["hits"].tolist() == [0, 0, 0, 1, 0, 1, 1, 0, 1, 1]
    assert r["two_pass"] == 0.1


@pytest.mark.parametrize("cap", [1, 3, 8, 20])
def test_pass_is_exact_lru_under_any_admission(cap):
    rng = np.random.default_rng(cap)
    ids = (rng.zipf(1.3, 600) % 60).astype(np.int64)
    ids, n = remap_trace(ids)
    for admit in (np.ones(ids.size, bool), rng.random(ids.size) < 0.4):
        hits, label = _filtered_lru_pass(ids, n, cap, admit)
        ref = _python_filtered_lru(ids, cap, admit)
        assert np.array_equal(hits, ref)
        assert np.array_equal(label, _python_labels(ids, ref, admit) < cap)


def test_fixed_point_holds_exactly():
    """At the fixed point every admitted miss is hit at its next request, and every rejected
    miss with a next request would have seen >= cap distinct touches before it."""
    rng = np.random.default_rng(7)
    ids, n = remap_trace((rng.zipf(1.2, 3000) % 300).astype(np.int64))
    cap = 30
    r = admission_oracle(ids, n, cap, max_passes=60)
    assert r["converged"]
    hits = r["hits"]
    # the decisions of the fixed point: a miss was admitted iff its row is hit next time
    nxt = {}
    admit = np.zeros(ids.size, bool)
    for t in range(ids.size - 1, -1, -1):
        s = nxt.get(int(ids[t]))
        admit[t] = (not hits[t]) and s is not None and bool(hits[s])
        nxt[int(ids[t])] = t
    assert np.array_equal(_python_filtered_lru(ids, cap, admit), hits)
    counts = _python_labels(ids, hits, admit)
    for t in np.flatnonzero(~hits & ~admit):
        if (ids[t + 1 :] == ids[t]).any():
            assert counts[t] >= cap
    lru = _python_filtered_lru(ids, cap, np.ones(ids.size, bool)).mean()
    assert hits.mean() > lru


def test_keys_and_sizes():
    keys = np.array([10, 20, 30, 10, 40, 20, 10, 30, 10, 20]) << 40
    r = admission_oracle_hits(keys, 2)
    assert r["hits"].tolist() == [0, 0, 0, 1, 0, 1, 1, 0, 1, 1]
    assert admission_oracle_hits(keys, 0.5)["hits"].tolist() == r["hits"].tolist()  # 0.5 of 4 keys


def test_bench_embed_rows_and_table_carry_the_reference():
    from spidercache.bench import embed
    from spidercache.embedding import families

    keys = families.make("dlrm-a", 30_000)
    rows = embed._policy_rows("dlrm-a", keys, None, lambda *_: None)
    by = {r["policy"]: r for r in rows}
    ref = admission_oracle_hits(keys, 0.1)
    assert by[embed.ORACLE]["converged"] == ref["converged"] and by[embed.ORACLE]["passes"] >= 1
    assert by[embed.ORACLE]["hit_ratio"] == float(ref["hits"].mean())
    assert by[embed.ORACLE_2P]["hit_ratio"] == ref["two_pass"]
    assert by[embed.ORACLE]["hit_ratio"] > by["lru"]["hit_ratio"]
    cell = f"{by[embed.ORACLE]['hit_ratio']:.4f} ({by[embed.ORACLE]['gap_closed']:.3f})"
    assert cell in embed.markdown(rows)


def test_bench_bag_alternates_rounds_and_reports_each_sides_median():
    from spidercache.bench import embed

    row = embed.bench_bag(rows=2_000, dim=4, batch=16, pooling=4, steps=2, optimizer="adagrad", rounds=3)
    assert row["ratio"] == row["cached_lookups_per_s"] / row["plain_lookups_per_s"]
    assert row["table_in_state_dict"] and 0 < row["row_hit_ratio"] < 1
