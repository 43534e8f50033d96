"""``spidercache.CachedLoader`` over a user's own Dataset: reads, values, shared workers, bad input."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import torch

import spidercache
from spidercache.errors import UserError


class Counting(torch.utils.data.Dataset):
    """Sample i is a 3x4x4 float tensor full of i; every read is counted across processes."""

    def __init__(self, n=480, labels=True):
        self.n = n
        self.reads = mp.Value("i", 0)
        if labels:
            self.targets = [i % 7 for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        with self.reads.get_lock():
            self.reads.value += 1
        return torch.full((3, 4, 4), float(i)), i % 7


@pytest.mark.parametrize("policy", ["lru", "spider"])
def test_two_workers_reads_after_warmup_equal_misses_and_values_equal_the_source(policy):
    ds = Counting()
    loader = spidercache.CachedLoader(
        ds, batch_size=32, shuffle=True, num_workers=2, policy=policy, working_set=0.5, store="memory", seed=0
    )
    assert isinstance(loader.dataset, torch.utils.data.Dataset) and len(loader.dataset) == len(ds)
    rng = np.random.default_rng(0)
    for _epoch in range(3):
        before = ds.reads.value
        for x, y in loader:  # what a DataLoader with default_collate yields
            ids = loader.last.served
            assert isinstance(x, torch.Tensor) and x.shape[1:] == (3, 4, 4)
            assert torch.equal(x, torch.as_tensor(ids, dtype=torch.float32)[:, None, None, None].expand_as(x))
            assert torch.equal(y, torch.as_tensor(ids % 7))
            loader.update(torch.as_tensor(rng.random(len(y))))
        st = loader.stats()
        assert ds.reads.value - before == st["epoch"]["source_reads"]
        if policy == "lru":  # a permutation: every miss is one read
            assert st["epoch"]["source_reads"] == st["epoch"]["misses"]
        else:  # importance sampling draws with replacement: a batch reads a missed id once
            assert 0.9 * st["epoch"]["misses"] <= st["epoch"]["source_reads"] <= st["epoch"]["misses"]
    assert st["epoch"]["hits"] > 0 and st["total"]["requests"] >= 3 * 0.8 * len(ds)
    assert 0 < st["epoch"]["cached_bytes"] <= loader.sizing.budget
    for key in ("requests", "hits", "substitutions", "source_reads", "store_errors", "lost_hits"):
        assert key in st["epoch"] and key in st["total"]
    loader.close()


def test_plain_dataloader_never_bypasses_the_cache():
    ds = Counting(64)
    loader = spidercache.CachedLoader(ds, batch_size=16, policy="minio", working_set=1.0)
    for _ in loader:  # fills the cache
        pass
    with pytest.raises(UserError, match="CachedLoader"):
        next(iter(torch.utils.data.DataLoader(loader.dataset, batch_size=8)))
    # unbatched access reads through the cache: no read of the source for a cached sample
    before = ds.reads.value
    x, y = loader.dataset[5]
    assert torch.equal(x, torch.full((3, 4, 4), 5.0)) and y == 5 and ds.reads.value == before


def test_samples_of_any_size_with_the_users_collate():
    class Ragged(torch.utils.data.Dataset):
        def __len__(self):
            return 50

        def __getitem__(self, i):
            return np.arange(i + 1, dtype=np.int64), i % 3

    loader = spidercache.CachedLoader(
        Ragged(), batch_size=10, policy="minio", working_set=1.0, collate_fn=lambda items: items
    )
    for _ in range(2):
        for batch in loader:
            for s, y in batch:
                assert np.array_equal(s, np.arange(s.size)) and y == (s.size - 1) % 3
    assert loader.stats()["epoch"]["hits"] == 50


def test_byte_budget_bounds_the_shared_memory_store():
    ds = Counting(200)
    loader = spidercache.CachedLoader(ds, batch_size=8, policy="lru", cache_bytes=60_000)
    arena = loader.dataset.stores[0].opener().capacity_bytes
    assert arena <= 60_000 and loader.policy.capacity >= 1
    with pytest.raises(UserError, match="smaller than one sample"):
        spidercache.CachedLoader(ds, batch_size=8, policy="lru", cache_bytes=10)


def test_bad_input_is_one_user_error():
    class Iter(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield 1

    class NotPairs(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(2)

    with pytest.raises(UserError, match="map-style"):
        spidercache.CachedLoader(Iter(), batch_size=2)
    with pytest.raises(UserError, match=r"not \(sample, label\)"):
        spidercache.CachedLoader(NotPairs(), batch_size=2)
    with pytest.raises(UserError, match="targets="):
        spidercache.CachedLoader(Counting(40, labels=False), batch_size=4, policy="icache")
    ok = spidercache.CachedLoader(
        Counting(40, labels=False), batch_size=4, policy="spider", targets=[i % 7 for i in range(40)]
    )
    assert ok.policy.labels is not None
    with pytest.raises(UserError, match="working_set"):
        spidercache.CachedLoader(Counting(40), batch_size=4, working_set=1.5)
    with pytest.raises(UserError, match="unknown store"):
        spidercache.CachedLoader(Counting(40), batch_size=4, store="floppy:/a")


def test_sampler_and_set_epoch_like_a_dataloader():
    ds = Counting(40)
    sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = spidercache.CachedLoader(
        ds, batch_size=5, policy="lru", working_set=0.5, sampler=sampler, drop_last=True
    )
    loader.set_epoch(3)
    got = np.concatenate([loader.last.served.copy() for _ in loader])
    sampler.set_epoch(3)
    assert np.array_equal(got, np.fromiter(sampler, np.int64))


def test_training_policy_replays_an_id_trace_like_an_engine_policy():
    from spidercache.data.policies import make_training_policy
    from spidercache.engine.replay import replay

    n = 100
    trace = np.concatenate([np.random.default_rng(e).permutation(n) for e in range(3)])
    minio = make_training_policy("minio", n, 30, np.arange(n) % 5)
    out = replay(minio, trace, 10, epoch_length=n)
    hits, subs = int(out.hits.sum()), int(out.substituted.sum())
    assert out.requests == 300 and hits == 60 and subs == 0  # 30 resident, 2 epochs
    lru = make_training_policy("lru", n, 30)
    hits = lru.access(np.array([1, 2, 1, 3, 2]))
    assert hits.tolist() == [False, False, True, False, True] and lru.size == 3
    assert set(lru.resident_ids().tolist()) == {1, 2, 3}


def test_update_with_a_wrong_count_of_losses_or_embedding_rows_is_one_user_error():
    loader = spidercache.CachedLoader(Counting(40), batch_size=8, policy="spider", working_set=0.5)
    next(iter(loader))
    with pytest.raises(UserError, match="got 3 losses for a batch of 8"):
        loader.update(torch.zeros(3))
    # the policies reshape embeddings to one row per sample: a bare ValueError before
    with pytest.raises(UserError, match="got 5 embedding rows for a batch of 8"):
        loader.update(torch.zeros(8), embeddings=torch.zeros(5, 4))
    with pytest.raises(UserError, match="embedding rows"):
        loader.update(torch.zeros(8), embeddings=torch.zeros(7))
    loader.update(torch.zeros(8), embeddings=torch.zeros(8, 4))  # one row per sample is fine


def test_len_is_what_the_next_iteration_yields_and_it_keeps_that_order():
    ds = Counting(120)
    loader = spidercache.CachedLoader(ds, batch_size=8, shuffle=True, policy="icache", working_set=0.3)
    rng = np.random.default_rng(0)
    for _epoch in range(4):  # icache requests ~0.8 N once losses are known: len() said the last epoch's
        want = len(loader)
        assert len(loader) == want  # asking again plans nothing new
        got = 0
        for _ in loader:
            got += 1
            assert len(loader) == want  # inside the loop: this epoch's length
            loader.update(torch.as_tensor(rng.random(len(loader.last.served))))
        assert got == want
    assert want < 120 // 8


def test_an_iteration_left_early_is_not_run_again():
    loader = spidercache.CachedLoader(Counting(80), batch_size=8, shuffle=True, policy="lru", working_set=0.3)
    for _ in loader:
        first = loader.last.requested.copy()
        break
    again = next(iter(loader))  # docs/training.md: each iteration otherwise runs the next epoch
    assert again is not None and not np.array_equal(loader.last.requested, first)
    assert loader._next_epoch == 2
    loader.set_epoch(0)  # set_epoch runs an epoch again, with its order
    next(iter(loader))
    assert np.array_equal(loader.last.requested, first)


def test_spider_noh_runs_without_labels_and_spider_refuses():
    # spider-noh never substitutes: it was refused for "substituting by label" all the same
    loader = spidercache.CachedLoader(Counting(40, labels=False), batch_size=8, policy="spider-noh")
    assert sum(1 for _ in loader) == len(loader) and loader.policy.labels is None
    for name in ("spider", "spider-nois"):
        with pytest.raises(UserError, match="targets="):
            spidercache.CachedLoader(Counting(40, labels=False), batch_size=8, policy=name)
