"""A cache size above the trace's distinct rows means "everything fits" (as in `sim`), never an
allocation sized by the asked capacity."""

import numpy as np

from spidercache.embedding.evaluate import evaluate
from spidercache.embedding.optgen import belady_hits, optgen
from spidercache.embedding.oracle_admit import admission_oracle_hits

KEYS = np.array([5, 7, 5, 9, 7, 5, 9, 9, 1, 7])
ONLY_COLD_MISSES = 1 - 4 / KEYS.size  # 4 distinct keys


def test_optgen_above_memory_holds_every_row():
    lab = optgen(KEYS, 1e12)
    assert lab.capacity == 10**12 and lab.hit_ratio == ONLY_COLD_MISSES
    assert belady_hits(KEYS % 10, 10**12).mean() == ONLY_COLD_MISSES


def test_evaluate_above_memory_equals_everything_fits():
    rows = evaluate(KEYS, ["lru", "lfu", "arc", "s3fifo", "opt", "learned"], [1e12, 4])
    for r in rows:
        assert r["hit_ratio"] == ONLY_COLD_MISSES, r
    assert {r["capacity"] for r in rows} == {10**12, 4}


def test_admission_oracle_above_memory():
    assert admission_oracle_hits(KEYS, 1e12)["hits"].mean() == ONLY_COLD_MISSES
