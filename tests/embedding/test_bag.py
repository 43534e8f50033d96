import numpy as np
import pytest
import torch

from spidercache.embedding.bag import CachedEmbeddingBag


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("policy", ["lru", "lfu", "arc", "s3fifo"])
def test_forward_equals_embedding_bag_and_training_matches_sgd(mode, policy):
    torch.manual_seed(0)
    rows, dim = 200, 8
    w = torch.randn(rows, dim)
    ref = torch.nn.EmbeddingBag(rows, dim, mode=mode, sparse=mode != "max", _weight=w.clone())
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    bag = CachedEmbeddingBag(rows, dim, mode=mode, cache_rows=20, policy=policy, weight=w, lr=0.05)
    rng = np.random.default_rng(1)
    for step in range(12):
        idx = torch.from_numpy(rng.zipf(1.3, 60) % rows)
        offsets = torch.tensor([0, 10, 10, 35, 50])
        with torch.no_grad():  # forward equals nn.EmbeddingBag over the same table, bit for bit
            same = torch.nn.EmbeddingBag(rows, dim, mode=mode, _weight=bag.weight)
            assert torch.equal(bag(idx, offsets), same(idx, offsets)), step
        out_ref = ref(idx, offsets)
        out = bag(idx, offsets)
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
        target = torch.randn_like(out)
        (out_ref * target).sum().backward()
        opt.step()
        opt.zero_grad()
        (out * target).sum().backward()
    assert bag.write_backs > 0 and bag.policy.size <= 20
    torch.testing.assert_close(bag.weight, ref.weight.detach(), rtol=1e-5, atol=1e-5)


def test_per_sample_weights_2d_input_and_memmap(tmp_path):
    torch.manual_seed(0)
    w = torch.randn(50, 4)
    ref = torch.nn.EmbeddingBag(50, 4, mode="sum", _weight=w.clone())
    bag = CachedEmbeddingBag(50, 4, mode="sum", cache_mb=4 * 4 * 5 / 2**20, weight=w, slow=tmp_path / "t.f32")
    assert bag.cache_rows == 5 and isinstance(bag.slow, np.memmap)
    idx = torch.tensor([[1, 2, 3], [3, 4, 40]])
    psw = torch.rand(2, 3)
    assert torch.equal(bag(idx, per_sample_weights=psw), ref(idx, per_sample_weights=psw))
    with torch.no_grad():
        bag(torch.arange(50).reshape(5, 10))  # no grad: nothing changes
    bag.flush()
    again = CachedEmbeddingBag(50, 4, mode="sum", cache_rows=5, slow=tmp_path / "t.f32")
    assert torch.equal(again.weight, w)


def test_batch_larger_than_fast_tier_and_bad_index():
    w = torch.randn(100, 3)
    ref = torch.nn.EmbeddingBag(100, 3, mode="mean", sparse=True, _weight=w.clone())
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    bag = CachedEmbeddingBag(100, 3, mode="mean", cache_rows=4, weight=w, lr=0.5)
    idx, off = torch.arange(100).flip(0), torch.tensor([0, 30, 77])
    assert torch.equal(bag(idx, off), ref(idx, off))
    bag(idx, off).sum().backward()
    ref(idx, off).sum().backward()
    opt.step()
    torch.testing.assert_close(bag.weight, ref.weight.detach())
    with pytest.raises(IndexError):
        bag(torch.tensor([100]), torch.tensor([0]))
