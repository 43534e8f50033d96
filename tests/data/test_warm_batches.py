"""Warm batches: a batch that is one decoded run is handed out stacked, bit for bit the source's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spidercache
from spidercache.data.cached import Collate


class RandomBits(torch.utils.data.Dataset):
    """Sample i: random bits from seed i as a ``dtype`` tensor (float32 includes NaN and -0 patterns)."""

    def __init__(self, n=300, dtype=torch.float32):
        self.n, self.dtype = n, dtype
        self.targets = [i % 5 for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        raw = np.random.default_rng(i).integers(0, 256, 2 * 5 * 8 * 4, dtype=np.uint8)
        return torch.from_numpy(raw).view(self.dtype).reshape(2, 5, -1).clone(), self.targets[i]


def _bits(t):
    return t.contiguous().view(torch.uint8)


@pytest.mark.filterwarnings("ignore:.*pin_memory.*")
@pytest.mark.parametrize(
    "workers,dtype,pin",
    [(0, torch.float32, False), (2, torch.float32, False), (0, torch.uint8, False), (2, torch.uint8, True)],
)
def test_warm_epochs_equal_the_source_bit_for_bit(workers, dtype, pin):
    """With 2 workers the labels of a stacked batch are made in the main process (not when pinning)."""
    ds = RandomBits(dtype=dtype)
    loader = spidercache.CachedLoader(
        ds,
        batch_size=32,
        shuffle=True,
        num_workers=workers,
        policy="minio",
        working_set=1.0,
        seed=0,
        pin_memory=pin,
    )
    for epoch in range(3):
        for x, y in loader:
            ids = loader.last.served
            want = torch.stack([ds[i][0] for i in ids.tolist()])
            assert x.dtype == dtype and x.is_contiguous() and torch.equal(_bits(x), _bits(want))
            assert y.dtype == torch.int64 and torch.equal(
                y, torch.as_tensor([ds.targets[i] for i in ids.tolist()])
            )
        st = loader.stats()["epoch"]
        assert st["hits"] == (len(ds) if epoch else 0) and st["lost_hits"] == 0
    loader.close()


def test_the_stacked_fast_path_is_what_default_collate_gives_and_damage_falls_back():
    ds = RandomBits(n=64)
    loader = spidercache.CachedLoader(ds, batch_size=16, policy="minio", working_set=1.0, seed=0)
    for _ in loader:  # fills the cache
        pass
    sampler = loader.batch_sampler
    sampler.set_epoch(1)
    plans = list(sampler)
    warm = loader.dataset.__getitems__(plans[0])
    assert warm.stacked is not None  # every value a verified hit of one run
    fast, meta = Collate(None)(warm)
    slow = torch.utils.data.default_collate(list(warm))
    assert type(fast) is type(slow) and len(fast) == 2
    assert torch.equal(_bits(fast[0]), _bits(slow[0])) and torch.equal(fast[1], slow[1])
    assert fast[1].dtype == slow[1].dtype and fast[0].shape == slow[0].shape
    # a damaged value in the arena: a lost hit, read from the source; no stacked shortcut
    store = loader.dataset.stores[0].opener.store
    victim = int(plans[1].served[3])
    store.data[store.table[victim], 100] ^= 0x01
    got = loader.dataset.__getitems__(plans[1])
    assert got.stacked is None and got.meta.lost == 1 and got.meta.store_errors == 1
    (x, _), _ = Collate(None)(got)
    want = torch.stack([ds[i][0] for i in plans[1].served.tolist()])
    assert torch.equal(_bits(x), _bits(want))
    loader.close()


def test_a_transform_or_own_collate_is_applied_as_given():
    ds = RandomBits(n=48, dtype=torch.uint8)
    seen = []

    def collate(items):
        seen.append(len(items))
        return torch.utils.data.default_collate(items)

    loader = spidercache.CachedLoader(
        ds, batch_size=16, policy="minio", working_set=1.0, collate_fn=collate, transform=lambda s: s + 1
    )
    for _ in range(2):
        for x, _y in loader:
            want = torch.stack([ds[i][0] + 1 for i in loader.last.served.tolist()])
            assert torch.equal(x, want)
    assert seen == [16] * 6
    loader.close()
