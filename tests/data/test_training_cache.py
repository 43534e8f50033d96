"""The training-data cache: every sample correct, policies, stores, faults, CLI bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spidercache.data.backends import make_backend
from spidercache.data.cached import CachedDataset, SlotBackend
from spidercache.data.loader import CachedLoader, slot_count
from spidercache.data.policies import loss_rank_scores, make_training_policy
from spidercache.data.storage import SlowStorage, StorageModel
from spidercache.data.transforms import Normalize, RandomFlipCrop
from spidercache.errors import UserError

POLICIES = ["none", "lru", "minio", "shade", "icache"]


def synthetic(n=600, shape=(1, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    # make every sample unique and recognisable: first bytes encode the id
    x.reshape(n, -1)[:, 0] = np.arange(n) % 256
    x.reshape(n, -1)[:, 1] = np.arange(n) // 256
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def run_epochs(loader, x, y, epochs, rng):
    per_epoch = []
    for e in range(epochs):
        requested = []
        for b in loader.epoch(e):
            assert np.array_equal(b.x.numpy(), x[b.ids]), "a sample's bytes differ from the source"
            assert np.array_equal(b.y.numpy(), y[b.ids]), "a label differs from the source"
            keep = ~b.substituted
            assert np.array_equal(b.ids[keep], b.requested[keep])
            loader.update(b.ids, rng.random(b.ids.size))
            requested.append(b.requested)
        per_epoch.append((np.concatenate(requested), loader.stats))
    return per_epoch


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_correct_through_shared_memory(policy, workers):
    x, y = synthetic()
    n, cap, B = len(x), 150, 32
    backend = SlotBackend(slot_count(cap, B, workers, 2), x.shape[1:], x.dtype, shared=workers > 0)
    loader = CachedLoader(CachedDataset(SlowStorage(x, y), backend), make_training_policy(policy, n, cap, y, seed=3),
                          B, workers=workers)
    out = run_epochs(loader, x, y, 3, np.random.default_rng(0))
    first_requested, _ = out[0]
    # the first epoch (no scores yet) is a permutation for every policy
    assert np.array_equal(np.sort(first_requested), np.arange(n))
    stats = out[-1][1]
    assert stats.requests == len(out[-1][0])
    if policy == "none":
        assert stats.hits == stats.substitutions == 0
    if policy == "minio":
        # filled once with 150 samples, never evicted: the share of hits is 150/600 exactly
        assert stats.hits + stats.lost == 150
    if policy in ("shade", "icache"):
        assert stats.hits + stats.substitutions > 0
    loader.close()


def test_workers_share_one_cache():
    """Values a worker writes are read by the other worker (one copy, not one per worker)."""
    x, y = synthetic(400)
    backend = SlotBackend(slot_count(400, 20, 2, 2), x.shape[1:], x.dtype, shared=True)
    loader = CachedLoader(CachedDataset(SlowStorage(x, y), backend), make_training_policy("minio", 400, 400, y),
                          20, workers=2)
    out = run_epochs(loader, x, y, 2, np.random.default_rng(0))
    assert out[1][1].hit_ratio + out[1][1].lost / 400 == 1.0
    assert out[1][1].hit_ratio > 0.9  # batches alternate between the two workers
    assert out[1][1].storage_reads == out[1][1].lost


def test_slow_storage_charged_on_misses_only():
    x, y = synthetic(200)
    st = SlowStorage(x, y, StorageModel(latency_ms=0.01))
    backend = SlotBackend(slot_count(200, 50, 0, 2), x.shape[1:], x.dtype, shared=False)
    loader = CachedLoader(CachedDataset(st, backend), make_training_policy("minio", 200, 200, y), 50)
    run_epochs(loader, x, y, 3, np.random.default_rng(0))
    assert st.reads == 200  # the first epoch only


def test_shade_scores_follow_sample_ids_not_batch_positions():
    p = make_training_policy("shade", 10, 3, np.zeros(10, np.int64))
    p.begin_epoch(0)
    p.update(np.array([7, 2, 5]), np.array([0.1, 5.0, 1.0]))
    p.begin_epoch(1)
    s = p.scores.current
    assert s[2] > s[5] > s[7]
    # unseen samples get the mean, not zero
    assert np.isclose(s[0], np.mean([s[2], s[5], s[7]]))
    assert np.allclose(loss_rank_scores(np.array([1.0, 1.0, 1.0])), np.log(11.0))
    assert np.all(np.isfinite(loss_rank_scores(np.array([np.nan, 1.0]))))


def test_shade_admits_only_above_the_lowest_and_icache_substitutes_l_misses():
    n = 100
    p = make_training_policy("shade", n, 10, np.zeros(n, np.int64), rep_factor=1)
    p.begin_epoch(0)
    p.update(np.arange(n), np.arange(n, dtype=float))  # loss grows with the id
    p.begin_epoch(1)
    lk = p.lookup(np.arange(n))
    assert set(p.resident().tolist()) == set(range(90, 100))  # the ten highest scores stay
    assert not lk.substituted.any()
    ic = make_training_policy("icache", n, 20, np.zeros(n, np.int64))
    ic.begin_epoch(0)
    ic.update(np.arange(n), np.arange(n, dtype=float))
    ic.begin_epoch(1)
    ic.lookup(np.arange(n))            # fills the next L half
    ic.begin_epoch(2)
    order = ic.order(2)
    assert len(order) == 80            # ~0.8 N per epoch
    lk = ic.lookup(np.arange(n))
    l_ids = np.arange(n)[~ic._is_h]
    assert lk.substituted[l_ids].sum() > 0
    assert np.all(~ic._is_h[lk.served[lk.substituted]])  # only L samples stand in for L misses


def test_random_transform_is_not_cached_unless_allowed():
    x, y = synthetic(50)
    with pytest.raises(UserError):
        CachedDataset(SlowStorage(x, y), None, RandomFlipCrop(), cache_point="transformed")
    CachedDataset(SlowStorage(x, y), None, RandomFlipCrop(), cache_point="transformed", allow_random=True)
    CachedDataset(SlowStorage(x, y), None, Normalize([0.5], [0.5]), cache_point="transformed")


def test_redis_killed_mid_epoch_training_goes_on(redis_server_fn):
    x, y = synthetic(400)
    backend = make_backend("redis", capacity=400, sample_shape=x.shape[1:], dtype=x.dtype, fingerprint="t" * 16,
                           batch_size=40, host_ip=redis_server_fn.host, port_num=redis_server_fn.port,
                           port_num2=None)
    loader = CachedLoader(CachedDataset(SlowStorage(x, y), backend), make_training_policy("minio", 400, 400, y), 40)
    run_epochs(loader, x, y, 1, np.random.default_rng(0))  # fills Redis
    seen, served_from_cache = [], 0
    for k, b in enumerate(loader.epoch(1)):
        if k == 3:
            redis_server_fn.kill()
        assert np.array_equal(b.x.numpy(), x[b.ids]) and np.array_equal(b.y.numpy(), y[b.ids])
        seen.append(b.requested)
        served_from_cache += b.true_hits
    st = loader.stats
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(400))  # every sample, once
    assert 0 < served_from_cache < 400
    assert st.lost == 400 - st.hits and st.lost > 0  # the lost hits are counted
    assert st.store_errors > 0


def test_lmdb_backend_shared_and_checked(tmp_path):
    x, y = synthetic(120)
    backend = make_backend("lmdb", capacity=120, sample_shape=x.shape[1:], dtype=x.dtype, fingerprint="f" * 16,
                           batch_size=30, workers=2, lmdb_path=str(tmp_path / "c"))
    loader = CachedLoader(CachedDataset(SlowStorage(x, y), backend), make_training_policy("minio", 120, 120, y), 30,
                          workers=2)
    out = run_epochs(loader, x, y, 2, np.random.default_rng(0))
    assert out[1][1].hits + out[1][1].lost == 120 and out[1][1].hits > 0


def test_redis_not_answering_is_a_user_error():
    with pytest.raises(UserError):
        make_backend("redis", capacity=10, sample_shape=(1,), dtype=np.uint8, fingerprint="x" * 16, batch_size=4,
                     host_ip="127.0.0.1", port_num=1, port_num2=None)


def test_begin_epoch_runs_once_per_epoch():
    x, y = synthetic(100)
    p = make_training_policy("icache", 100, 20, y)
    calls = []
    orig = p.begin_epoch
    p.begin_epoch = lambda e: (calls.append(e), orig(e))
    loader = CachedLoader(CachedDataset(SlowStorage(x, y), None), p, 25)
    loader.start_epoch(0)  # as the training loop does, to size its progress bar
    list(loader.epoch(0))
    list(loader.epoch(1))
    assert calls == [0, 1]
