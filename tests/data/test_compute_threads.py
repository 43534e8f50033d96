"""``ComputeThreads``: the model step takes every core only while the cache serves every batch."""

from __future__ import annotations

import pytest
import torch
from test_loader_api import Counting

import spidercache
from spidercache.errors import UserError


@pytest.fixture
def saved_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_core_after_patience_quiet_batches_and_back_at_the_first_read(saved_threads):
    t = spidercache.ComputeThreads(cores=4, workers=2, patience=3)
    assert (t.shared, t.alone) == (3, 4) and torch.get_num_threads() == 3
    seen = []
    for reads in [5, 0, 0, 0, 0, 1, 0, 0]:
        t.after_batch(reads)
        seen.append(torch.get_num_threads())
    assert seen == [3, 3, 3, 4, 4, 3, 3, 3]
    t.after_batch(0)
    assert torch.get_num_threads() == 4
    t.reset()
    assert torch.get_num_threads() == 3
    assert spidercache.ComputeThreads(cores=1, workers=4).shared == 1  # never 0 threads


class FakeClock:
    """Each batch's model step takes ``cost[threads]`` seconds."""

    def __init__(self, cost):
        self.now, self.cost = 0.0, cost

    def __call__(self):
        return self.now

    def step(self):
        self.now += self.cost[torch.get_num_threads()]


@pytest.mark.parametrize("alone_seconds, expect", [(0.4, "stays"), (3.0, "backs off")])
def test_every_core_is_kept_only_while_it_makes_quiet_batches_faster(saved_threads, alone_seconds, expect):
    clock = FakeClock({1: 1.0, 2: alone_seconds})
    t = spidercache.ComputeThreads(cores=2, workers=2, patience=2, clock=clock)
    used = []
    for _ in range(30):  # a warm epoch: no batch reads the source
        t.after_batch(0)
        used.append(torch.get_num_threads())
        clock.step()
    if expect == "stays":
        assert used == [1] + [2] * 29 and t.seconds[True] == pytest.approx(0.4)
    else:  # 2 timed batches on both cores, back to 1, again after 4 * patience batches, then twice as long
        assert used[:5] == [1, 2, 2, 1, 1] and t.seconds[True] == pytest.approx(3.0)
        tries = [k for k in range(1, 30) if used[k] == 2 and used[k - 1] == 1]
        assert tries == [1, 11, 29] and used[11:13] == [2, 2] and set(used[13:29]) == {1}


def test_a_cached_loader_warm_epoch_gets_every_core(saved_threads):
    ds = Counting(n=256)
    loader = spidercache.CachedLoader(
        ds,
        batch_size=16,
        shuffle=True,
        num_workers=2,
        policy="minio",
        working_set=1.0,
        store="memory",
        seed=0,
    )
    clock = FakeClock({1: 1.0, 2: 0.5})  # the loop's own timing would be noise: it trains nothing
    t = spidercache.ComputeThreads(cores=2, workers=2, patience=2, clock=clock)
    per_epoch = []
    for _epoch in range(2):
        used = []
        for _x, _y in loader:
            t.after_batch(loader.last.source_reads)
            used.append(torch.get_num_threads())
            clock.step()
        t.reset()
        per_epoch.append(used)
    loader.close()
    assert set(per_epoch[0]) == {1}  # the cold epoch reads every sample: the workers keep their core
    assert per_epoch[1][:1] == [1] and set(per_epoch[1][1:]) == {2}  # all hits: both cores after 2 batches


@pytest.mark.parametrize(
    "kw", [{"cores": 0, "workers": 2}, {"cores": 2, "workers": -1}, {"cores": 2, "workers": 2, "patience": 0}]
)
def test_bad_counts_are_one_user_error(kw):
    with pytest.raises(UserError):
        spidercache.ComputeThreads(**kw)
