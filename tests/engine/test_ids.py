"""Dense id remapping: ids in order of first appearance, the same for both paths."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spidercache.engine.ids import KeyRemapper, remap_trace


def first_appearance_ids(keys):
    seen = {}
    return np.array([seen.setdefault(int(k), len(seen)) for k in keys], np.int64), len(seen)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**62), 2**62), max_size=300), st.booleans())
def test_remap_trace_matches_first_appearance(keys, small_range):
    arr = np.array(keys, np.int64)
    if small_range and arr.size:
        arr = arr % 97  # exercises the direct-table path
    ids, n = remap_trace(arr)
    want, want_n = first_appearance_ids(arr)
    assert n == want_n
    assert ids.tolist() == want.tolist()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**40), 2**40), max_size=50), max_size=12))
def test_key_remapper_incremental_equals_whole_trace(batches):
    r = KeyRemapper(expected_keys=4)  # tiny, so the table must grow
    got = [r.ids(np.array(b, np.int64)) for b in batches]
    flat = np.concatenate(got) if got else np.empty(0, np.int64)
    all_keys = np.array([k for b in batches for k in b], np.int64)
    want, want_n = first_appearance_ids(all_keys)
    assert flat.tolist() == want.tolist()
    assert r.n == want_n
    if want_n:
        assert r.keys(np.arange(want_n)).tolist() == list(dict.fromkeys(all_keys.tolist()))


def test_unsigned_keys_are_their_64_bit_patterns():
    u = np.array([2**64 - 1, 5, 2**63, 5, 2**64 - 1, 0], np.uint64)
    ids, n = remap_trace(u)
    assert n == 4 and ids.tolist() == [0, 1, 2, 1, 0, 3]
    r = KeyRemapper(expected_keys=2)
    assert r.ids(u).tolist() == [0, 1, 2, 1, 0, 3]


def test_distinct_estimate_is_close_and_a_short_estimate_still_remaps(monkeypatch):
    import spidercache.engine.ids as ids_module

    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**40, 60_000) << 20  # a span far wider than 4x the requests: hashed
    true_n = np.unique(keys).size
    assert abs(ids_module.estimate_distinct(keys) - true_n) <= 0.03 * true_n
    want, want_n = remap_trace(keys)
    monkeypatch.setattr(ids_module, "estimate_distinct", lambda k: 3)  # forces the table to grow
    got, got_n = remap_trace(keys)
    assert got_n == want_n == true_n
    assert np.array_equal(got, want)
    assert np.array_equal(got, first_appearance_ids(keys)[0])
