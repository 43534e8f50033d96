import numpy as np
import pytest
import torch

from spidercache.embedding.bag import CachedEmbeddingBag


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("policy", ["lru", "lfu", "arc", "s3fifo", "learned"])
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


def _steps(bag, opt, n, seed=3, sched=None):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        idx = torch.from_numpy(rng.zipf(1.2, 80) % bag.num_embeddings)
        out = bag(idx, torch.tensor([0, 20, 45, 60]))
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        opt.step()
        opt.zero_grad()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adam"])
def test_state_dict_holds_the_table_and_resume_is_bit_exact(optimizer):
    torch.manual_seed(0)
    w = torch.randn(300, 6)

    def fresh():
        bag = CachedEmbeddingBag(300, 6, mode="sum", cache_rows=30, weight=w, optimizer=optimizer)
        opt = torch.optim.SGD(bag.parameters(), lr=0.1)
        bag.follow(opt)
        return bag, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)

    a, opt_a, sch_a = fresh()
    _steps(a, opt_a, 10, sched=sch_a)
    sd = a.state_dict()
    assert set(sd) >= {"weight", "lr_anchor"} and sd["weight"].shape == (300, 6)
    assert not torch.equal(sd["weight"], w)  # the cached rows were flushed into it
    ckpt = {"model": sd, "opt": opt_a.state_dict(), "sched": sch_a.state_dict()}
    _steps(a, opt_a, 10, seed=4, sched=sch_a)
    b, opt_b, sch_b = fresh()  # a new process would start like this
    b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    sch_b.load_state_dict(ckpt["sched"])
    assert b.policy.size == 0  # the fast tier was emptied, the table restored
    _steps(b, opt_b, 10, seed=4, sched=sch_b)
    assert torch.equal(a.weight, b.weight)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_lr_follows_the_optimizer_and_its_scheduler():
    w = torch.randn(50, 4)
    bag = CachedEmbeddingBag(50, 4, mode="sum", cache_rows=5, weight=w, lr=123.0)
    opt = torch.optim.SGD(bag.parameters(), lr=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
    bag.follow(opt)
    ref = torch.nn.EmbeddingBag(50, 4, mode="sum", sparse=True, _weight=w.clone())
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.2)
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda e: 0.5**e)
    for m, o, s in ((bag, opt, sched), (ref, ref_opt, ref_sched)):
        for _step in range(4):
            m(torch.tensor([1, 2, 3, 40]), torch.tensor([0, 2])).sum().backward()
            o.step()
            o.zero_grad()
            s.step()
    torch.testing.assert_close(bag.weight, ref.weight.detach())
    assert bag.current_lr == pytest.approx(0.2 * 0.5**4)
    with pytest.raises(ValueError):
        bag.follow(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0))


def test_rowwise_adagrad_matches_its_formula():
    w = torch.randn(20, 3)
    bag = CachedEmbeddingBag(20, 3, mode="sum", cache_rows=2, weight=w, optimizer="adagrad", lr=0.5)
    for _ in range(2):
        bag(torch.tensor([4, 4, 7]), torch.tensor([0])).sum().backward()
    g = torch.tensor([2.0, 2.0, 2.0])  # row 4 twice in the bag, d(sum)/d(row) = 2; row 7: 1
    s4 = (g.pow(2).mean()) * 2
    expect4 = w[4] - 0.5 * g / (g.pow(2).mean().sqrt() + 1e-8) - 0.5 * g / (s4.sqrt() + 1e-8)
    torch.testing.assert_close(bag.weight[4], expect4)
    assert bag.optim_state["sum"][7] == pytest.approx(2.0)


def test_state_dict_of_another_shape_or_optimizer_is_one_user_error():
    from spidercache.errors import UserError

    bag = CachedEmbeddingBag(30, 4, cache_rows=3)
    with pytest.raises(UserError, match="table"):
        bag.load_state_dict({"weight": torch.zeros(31, 4), "lr_anchor": torch.zeros(0)})
    other = CachedEmbeddingBag(30, 4, cache_rows=3, optimizer="adam")
    with pytest.raises(UserError, match="optimizer"):
        bag.load_state_dict(other.state_dict())


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adagrad", 0.05)])
def test_dlrm_example_reaches_the_plain_embedding_bag_accuracy(optimizer, lr):
    from spidercache.embedding.dlrm import compare

    r = compare([400, 1_500, 300, 3_000], n=12_000, optimizer=optimizer, lr=lr)
    assert r["plain"] > r["majority"] + 0.05  # the task is learnable and the plain model learns it
    assert abs(r["cached"] - r["plain"]) < 0.02, r  # same seeds, same data: within noise (3,000 test rows)


def test_statistics_come_from_the_engine_cache():
    torch.manual_seed(0)
    bag = CachedEmbeddingBag(300, 4, mode="sum", cache_rows=25, policy="lru")
    rng = np.random.default_rng(2)
    for _ in range(15):
        bag(torch.from_numpy(rng.zipf(1.2, 80) % 300), torch.tensor([0, 40])).sum().backward()
    st, pst = bag.stats(), bag.policy.stats()
    assert st.requests == pst.requests and st.hits == pst.hits > 0
    assert st.evictions == bag.write_backs > 0  # every row pushed out of the fast tier was written back once
    assert st.admissions - st.evictions == bag.policy.size == int((bag.slot_of >= 0).sum())


@pytest.mark.parametrize("copy_of", ["deepcopy", "torch.save"])
def test_a_copy_of_the_module_trains_on_as_the_original(copy_of, tmp_path):
    import copy

    torch.manual_seed(0)
    bag = CachedEmbeddingBag(100, 4, cache_rows=10, optimizer="adagrad", lr=0.1)
    idx, off = torch.randint(0, 100, (64,)), torch.arange(0, 64, 4)
    bag(idx, off).sum().backward()  # some rows in the fast tier, some optimizer state
    if copy_of == "deepcopy":
        twin = copy.deepcopy(bag)
    else:
        torch.save(bag, tmp_path / "bag.pt")
        twin = torch.load(tmp_path / "bag.pt", weights_only=False)
    assert twin.stats() == bag.stats()
    for step in range(3):
        idx = torch.randint(0, 100, (64,), generator=torch.Generator().manual_seed(step))
        outs = [m(idx, off) for m in (bag, twin)]
        assert torch.equal(outs[0], outs[1])
        for out in outs:
            (out * torch.linspace(-1, 1, 4)).sum().backward()
    assert twin.stats() == bag.stats()
    assert torch.equal(twin.state_dict()["weight"], bag.state_dict()["weight"])


def test_a_training_data_policy_is_refused_with_one_line():
    from spidercache.errors import UserError

    with pytest.raises(UserError, match="picks training samples"):
        CachedEmbeddingBag(100, 4, cache_rows=5, policy="train-lru")
