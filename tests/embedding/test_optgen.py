import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spidercache.embedding.optgen import belady_hits, optgen, python_belady
from spidercache.engine.ids import remap_trace
from spidercache.errors import UserError

traces = st.lists(st.integers(0, 30), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(traces, st.integers(1, 12), st.booleans())
def test_matches_plain_python_belady(ids, cap, bypass):
    assert list(belady_hits(np.array(ids), cap, bypass)) == python_belady(ids, cap, bypass)


@settings(max_examples=100, deadline=None)
@given(traces, st.integers(1, 12), st.booleans())
def test_matches_engine_opt_hit_for_hit(ids, cap, bypass):
    opt = pytest.importorskip("spidercache.engine.policies.opt")
    ids = np.array(ids, np.int64)
    assert np.array_equal(belady_hits(ids, cap, bypass), opt.opt_hits(ids, cap, bypass=bypass))


def test_engine_opt_on_a_generated_trace():
    opt = pytest.importorskip("spidercache.engine.policies.opt")
    from spidercache.embedding.traces import GenConfig, generate

    keys = generate(GenConfig(tables=2, rows=2000, batch_size=16, batches=30, seed=3))
    ids, n = remap_trace(keys)
    for size in (0.05, 0.2):
        labels = optgen(keys, size)
        assert np.array_equal(labels.hit, opt.opt_hits(ids, labels.capacity))


def test_labels_are_consistent():
    keys = np.array([5, 7, 5, 9, 7, 5, 9, 9, 1])
    lab = optgen(keys, 2)
    assert lab.capacity == 2 and lab.distinct == 4
    assert list(lab.next_use_distance) == [2, 3, 3, 3, -1, -1, 1, -1, -1]
    nxt = np.arange(keys.size) + lab.next_use_distance
    for i in range(keys.size):
        assert lab.keep[i] == (lab.next_use_distance[i] >= 0 and lab.hit[nxt[i]])
    rec = lab.to_records()
    assert rec.dtype.names == ("hit", "keep", "next_use_distance")


def test_fraction_and_count_and_zero():
    keys = np.arange(100) % 40
    assert optgen(keys, 0.1).capacity == 4
    assert optgen(keys, 7).capacity == 7
    with pytest.raises(UserError):
        optgen(keys, 0)
