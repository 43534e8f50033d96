"""The training-data cache: every sample correct, policies, stores, faults (through ``CachedLoader``).

Rewritten for the lazy path: the tests that built ``SlotBackend`` / ``StoreBackend`` /
``CachedDataset(SlowStorage)`` by hand now build the same caches through ``CachedLoader``
(store="memory" is the shared-memory slot store) and keep their assertions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spidercache.data.loader import CachedLoader
from spidercache.data.policies import loss_rank_scores, make_training_policy
from spidercache.data.storage import StorageModel
from spidercache.errors import UserError

POLICIES = ["none", "lru", "minio", "shade", "icache"]


class Arrays(torch.utils.data.Dataset):
    """In-memory samples whose first bytes encode the id; counts its reads (per process)."""

    def __init__(self, n=600, shape=(1, 8, 8), seed=0):
        rng = np.random.default_rng(seed)
        self.x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        self.x.reshape(n, -1)[:, 0] = np.arange(n) % 256
        self.x.reshape(n, -1)[:, 1] = np.arange(n) // 256
        self.targets = rng.integers(0, 10, n).astype(np.int64)
        self.reads = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        return torch.from_numpy(self.x[i]), int(self.targets[i])


def run_epochs(loader, ds, epochs, rng):
    per_epoch = []
    for _ in range(epochs):
        requested = []
        for x, y in loader:
            m = loader.last
            assert np.array_equal(x.numpy(), ds.x[m.served]), "a sample's bytes differ from the source"
            assert np.array_equal(y.numpy(), ds.targets[m.served]), "a label differs from the source"
            keep = ~m.substituted
            assert np.array_equal(m.served[keep], m.requested[keep])
            loader.update(rng.random(m.served.size))
            requested.append(m.requested)
        per_epoch.append((np.concatenate(requested), loader.epoch_stats))
    return per_epoch


def make(ds, policy, batch, workers=0, **kw):
    kw.setdefault("working_set", 0.25)
    return CachedLoader(ds, batch, shuffle=True, num_workers=workers, policy=policy, seed=3, **kw)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_correct_through_shared_memory(policy, workers):
    ds = Arrays()
    n = len(ds)
    loader = make(ds, policy, 32, workers)
    assert loader.policy.capacity == 150
    out = run_epochs(loader, ds, 3, np.random.default_rng(0))
    first_requested, _ = out[0]
    # the first epoch (no scores yet) is a permutation for every policy
    assert np.array_equal(np.sort(first_requested), np.arange(n))
    stats = out[-1][1]
    assert stats.requests == len(out[-1][0])
    if policy == "none":
        assert stats.hits == stats.substitutions == 0
    if policy == "minio":
        # filled once with 150 samples, never evicted: the share of hits is 150/600 exactly
        assert stats.hits + stats.lost_hits == 150
    if policy in ("shade", "icache"):
        assert stats.hits + stats.substitutions > 0
    loader.close()


def test_workers_share_one_cache():
    """Values a worker writes are read by the other worker (one copy, not one per worker)."""
    ds = Arrays(400)
    loader = make(ds, "minio", 20, 2, working_set=1.0)
    out = run_epochs(loader, ds, 2, np.random.default_rng(0))
    st = out[1][1]
    assert st.hit_ratio + st.lost_hits / 400 == 1.0
    assert st.hit_ratio > 0.9  # batches alternate between the two workers
    assert st.source_reads == st.lost_hits


def test_source_read_on_misses_only():
    ds = Arrays(200)
    loader = make(ds, "minio", 50, 0, working_set=1.0, storage_model=StorageModel(latency_ms=0.01))
    before = ds.reads  # the loader probes a few samples to size the cache
    run_epochs(loader, ds, 3, np.random.default_rng(0))
    assert ds.reads - before == 200  # the first epoch only


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
    ic.lookup(np.arange(n))  # fills the next L half
    ic.begin_epoch(2)
    order = ic.order(2)
    assert len(order) == 80  # ~0.8 N per epoch
    lk = ic.lookup(np.arange(n))
    l_ids = np.arange(n)[~ic._is_h]
    assert lk.substituted[l_ids].sum() > 0
    assert np.all(~ic._is_h[lk.served[lk.substituted]])  # only L samples stand in for L misses


def test_transform_runs_after_the_cache():
    """A random transform given to the loader runs on every yield (hits included), after the cache."""
    ds = Arrays(64)
    calls = []
    loader = make(ds, "minio", 16, 0, working_set=1.0, transform=lambda s: (calls.append(1), s.float())[1])
    run_epochs(loader, ds, 2, np.random.default_rng(0))
    assert len(calls) == 128 and loader.epoch_stats.hits == 64


def test_redis_killed_mid_epoch_training_goes_on(redis_server_fn):
    ds = Arrays(400)
    spec = f"redis://{redis_server_fn.host}:{redis_server_fn.port}"
    loader = make(ds, "minio", 40, 0, working_set=1.0, store=spec)
    run_epochs(loader, ds, 1, np.random.default_rng(0))  # fills Redis
    seen, served_from_cache = [], 0
    for k, (x, y) in enumerate(loader):
        if k == 3:
            redis_server_fn.kill()
        m = loader.last
        assert np.array_equal(x.numpy(), ds.x[m.served]) and np.array_equal(y.numpy(), ds.targets[m.served])
        seen.append(m.requested)
        served_from_cache += int(m.hit.sum())
    st = loader.epoch_stats
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(400))  # every sample, once
    assert 0 < served_from_cache < 400
    assert st.lost_hits == 400 - st.hits and st.lost_hits > 0  # the lost hits are counted
    assert st.store_errors > 0


def test_lmdb_store_shared_and_checked(tmp_path):
    ds = Arrays(120)
    loader = make(ds, "minio", 30, 2, working_set=1.0, store=f"lmdb:{tmp_path / 'c'}")
    out = run_epochs(loader, ds, 2, np.random.default_rng(0))
    assert out[1][1].hits + out[1][1].lost_hits == 120 and out[1][1].hits > 0


def test_redis_not_answering_is_a_user_error():
    with pytest.raises(UserError, match="does not answer"):
        make(Arrays(10), "lru", 4, store="redis://127.0.0.1:1")


def test_begin_epoch_runs_once_per_epoch():
    ds = Arrays(100)
    p = make_training_policy("icache", 100, 20, ds.targets)
    calls = []
    orig = p.begin_epoch
    p.begin_epoch = lambda e: (calls.append(e), orig(e))
    loader = make(ds, p, 25)
    len(loader)  # as the training loop does, to size its progress bar
    list(loader)
    list(loader)
    assert calls == [0, 1]


class Raw(Arrays):
    """Arrays read as raw bytes and decoded (as a lazily read image folder is)."""

    def raw(self, i):
        return self.x[i].tobytes()

    def decode(self, raw, i):
        return torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(self.x.shape[1:]).copy()), 0


def test_a_held_out_subset_offers_raw_caching_only_where_its_dataset_does(tmp_path):
    import pickle

    from tiny_npz import make_npz

    from spidercache.data.cached import CachedDataset
    from spidercache.data.datasets import NpzDataset, Subset

    npz = NpzDataset(make_npz(tmp_path)[0])
    part = Subset(npz, np.arange(10), "held-out-0")
    # Subset always had raw/decode, so cache='raw' passed the check and crashed on the first
    # read with "'NpzDataset' object has no attribute 'raw'"
    assert not hasattr(part, "raw") and not hasattr(part, "decode")
    with pytest.raises(UserError, match="cache='raw' needs a dataset with raw"):
        CachedDataset(part, cache="raw")

    lazy = Subset(Raw(20), np.arange(5, 15), "train-part-0")
    assert lazy.raw(0) == lazy.dataset.x[5].tobytes() and torch.equal(
        lazy.decode(lazy.raw(1), 1)[0][0], torch.from_numpy(lazy.dataset.x[6][0])
    )
    assert callable(pickle.loads(pickle.dumps(lazy)).raw)  # workers get a copy
    CachedDataset(lazy, cache="raw")
