"""The trace generator and readers, in-process."""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.errors import UserError
from spidercache.sim.simulate import capacity_for, simulate
from spidercache.sim.traces import read_trace, write_trace, zipf


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 1.4])
def test_zipf_rank_frequencies_follow_the_law(alpha: float) -> None:
    n_keys, n_req = 200, 400_000
    keys = zipf(alpha, n_keys, n_req, seed=1)
    assert keys.min() >= 0 and keys.max() < n_keys
    counts = np.sort(np.bincount(keys, minlength=n_keys))[::-1]
    expected = np.arange(1, n_keys + 1, dtype=float) ** -alpha
    expected *= n_req / expected.sum()
    if alpha == 0:
        # Flat: every key within 10% (about 4.5 standard deviations) of the mean.
        np.testing.assert_allclose(counts, expected, rtol=0.10)
    else:
        # The top ranks are well apart: each within 5% of the law.
        np.testing.assert_allclose(counts[:5], expected[:5], rtol=0.05)


def test_zipf_spreads_hot_keys() -> None:
    keys = zipf(1.0, 10_000, 200_000, seed=0)
    hottest = np.argsort(np.bincount(keys, minlength=10_000))[::-1][:10]
    # Without the rank -> key permutation the ten hottest keys would be 0..9.
    assert set(hottest.tolist()) != set(range(10))


def test_write_then_read_roundtrip(tmp_path) -> None:
    keys = np.array([5, -3, 2**40, 5], np.int64)
    for name in ("t.npy", "t.txt"):
        path = write_trace(tmp_path / name, keys)
        assert np.array_equal(read_trace(path), keys)
    # A name without .npy gets the suffix, as numpy does.
    assert write_trace(tmp_path / "plain", keys).name == "plain.npy"


def test_capacity_rules() -> None:
    assert capacity_for(0.1, 1000) == 100
    assert capacity_for(1, 1000) == 1000
    assert capacity_for(0.0001, 1000) == 1
    assert capacity_for(250, 1000) == 250
    for bad in (0, -1, float("nan"), 2.5):
        with pytest.raises(UserError):
            capacity_for(bad, 1000)


def test_simulate_counts_hits_and_keeps_keys_without_remap_effects() -> None:
    # Keys far apart (hashed remap path) give the same hits as dense ones.
    dense = np.array([0, 1, 0, 2, 1, 0, 3, 0], np.int64)
    sparse = dense * (1 << 45) - 7
    (a,) = simulate(dense, ["lru"], [2])
    (b,) = simulate(sparse, ["lru"], [2])
    # 0 1 [0 hit] 2 (evicts 1) 1 (evicts 0) 0 (evicts 2) 3 (evicts 1) [0 hit]
    assert a["hits"] == b["hits"] == 2
    assert a["capacity"] == 2 and a["requests"] == 8


def test_empty_trace_is_a_user_error() -> None:
    with pytest.raises(UserError):
        simulate(np.array([], np.int64), ["lru"], [0.1])


def test_simulator_replays_training_policies_through_the_one_replay_loop():
    """Training policies run over an id trace like engine ones; train-lru is LRU hit for hit."""
    from spidercache.sim.simulate import simulate

    rng = np.random.default_rng(3)
    keys = (rng.zipf(1.2, 20_000) % 800).astype(np.int64)
    rows = {r["policy"]: r for r in simulate(keys, ["lru", "train-lru", "train-shade"], [0.1])}
    assert rows["train-lru"]["hits"] == rows["lru"]["hits"] > 0
    assert 0 < rows["train-shade"]["hits"] < 20_000
