"""Layer-by-layer execution: early exits, agreement with the base model, order in batches, retraining."""

import numpy as np
import pytest
import torch
from gati_synthetic import make_images

from spidercache.errors import UserError
from spidercache.inference.basemodel import load_checkpoint
from spidercache.inference.explore import load_exploration
from spidercache.inference.heads import Head
from spidercache.inference.runtime import Exit, GatiRuntime, OnlineRetrainer


def runtime_with(ex, base, threshold):
    exits = [
        Exit(h.unit, h.name, ex.build_head(i), threshold)
        for i, h in enumerate(ex.heads)
        if h.variant == "pool4_mlp"
    ]
    return GatiRuntime(base, exits)


def test_thresholds_above_one_give_exactly_the_base_answers(tiny_base, tiny_exploration):
    x, _ = make_images(40, seed=7)
    rt = runtime_with(tiny_exploration, tiny_base, 1.01)
    out = rt.predict_images(x)
    with torch.no_grad():
        expected = tiny_base.model(tiny_base.preprocess(x)).argmax(1)
    assert torch.equal(out.labels, expected)
    assert bool((out.exit_unit == len(rt.units)).all())


def test_threshold_zero_exits_at_the_first_head(tiny_base, tiny_exploration):
    x, _ = make_images(10, seed=8)
    rt = runtime_with(tiny_exploration, tiny_base, 0.0)
    out = rt.predict_images(x)
    assert bool((out.exit_unit == 0).all())
    first = rt.exits[0].head
    with torch.no_grad():
        h = rt.units[0](tiny_base.preprocess(x))
        assert torch.equal(out.labels, first(h).argmax(1))


def test_batches_keep_order_and_match_one_by_one(tiny_base, tiny_exploration):
    x, _ = make_images(64, seed=9)
    # pick the median confidence so that roughly half of the batch exits early
    rt = runtime_with(tiny_exploration, tiny_base, 0.5)
    confs = np.sort(tiny_exploration.heads[2].val_conf)
    for e in rt.exits:
        e.threshold = float(confs[len(confs) // 2])
    batched = rt.predict_images(x)
    single = [rt.predict_images(x[i : i + 1]) for i in range(len(x))]
    assert torch.equal(batched.labels, torch.cat([s.labels for s in single]))
    assert torch.equal(batched.exit_unit, torch.cat([s.exit_unit for s in single]))
    exits = set(batched.exit_unit.tolist())
    assert len(exits) >= 2, "the test needs both early exits and full runs"


def test_wrong_channels_are_refused_and_other_sizes_resized(tiny_base, tiny_exploration):
    from spidercache.inference.basemodel import resize_images

    rt = runtime_with(tiny_exploration, tiny_base, 0.9)
    with pytest.raises(UserError, match="model takes 1x28x28"):
        rt.predict_images(np.zeros((1, 4, 32, 32), dtype=np.uint8))
    x, _ = make_images(6, seed=31, size=56)
    small = resize_images(x, (1, 28, 28))
    assert small.shape == (6, 1, 28, 28) and small.dtype == np.uint8
    assert torch.equal(rt.predict_images(x.repeat(3, axis=1)).labels, rt.predict_images(small).labels)


def test_heads_for_another_model_are_refused(tmp_path, tiny_base, tiny_exploration):
    tiny_exploration.save(tmp_path / "caches")
    assert load_exploration(tmp_path / "caches", tiny_base.fingerprint()).heads
    other = load_checkpoint_copy(tmp_path, tiny_base)
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)
    other._fingerprint = None
    with pytest.raises(UserError, match="another base model"):
        load_exploration(tmp_path / "caches", other.fingerprint())


def load_checkpoint_copy(tmp_path, base):
    base.save(tmp_path / "base.pt")
    return load_checkpoint(tmp_path / "base.pt")


def test_corrupt_checkpoint_is_one_line_user_error(tmp_path, tiny_base):
    path = tmp_path / "base.pt"
    tiny_base.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cannot read model checkpoint"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError):
        load_checkpoint(tmp_path / "junk.pt")


def test_online_retraining_swaps_in_a_better_head_only(tiny_base, tiny_exploration):
    torch.manual_seed(0)
    unit = 1
    untrained = Head("pool4_mlp", tiny_exploration.unit_channels[unit], 4).eval()
    rt = GatiRuntime(tiny_base, [Exit(unit, "block2:pool4_mlp", untrained, 1.01)])  # every request misses
    retrainer = OnlineRetrainer(rt, capacity=2048, min_new=300, holdout_every=4, epochs=8, lr=5e-3)
    x, _ = make_images(400, seed=11)
    for s in range(0, 400, 50):
        rt.predict_images(x[s : s + 50])
    assert retrainer.retrain_now() == 1
    assert rt.exits[0].head is not untrained
    swap = retrainer.swaps[0]
    assert swap["new"]["cross_entropy"] < swap["old"]["cross_entropy"]
    # a second round with no new misses retrains nothing
    assert retrainer.retrain_now() == 0
    retrainer.stop()
    assert rt.observer is None


def test_online_retraining_in_the_background_thread(tiny_base, tiny_exploration):
    untrained = Head("gap_linear", tiny_exploration.unit_channels[0], 4).eval()
    rt = GatiRuntime(tiny_base, [Exit(0, "block1:gap_linear", untrained, 1.01)])
    retrainer = OnlineRetrainer(rt, min_new=200, holdout_every=4, epochs=10, lr=1e-2).start()
    x, _ = make_images(400, seed=12)
    rt.predict_images(x)
    import time

    for _ in range(300):  # the thread wakes on new misses; wait for its verdict (not a timing assertion)
        if retrainer.swaps or retrainer.rejections:
            break
        time.sleep(0.05)
    retrainer.stop()
    assert retrainer.swaps or retrainer.rejections
    if retrainer.swaps:
        assert rt.exits[0].head is not untrained


def test_composition_bookkeeping_equals_the_runtime(tiny_base, tiny_exploration):
    """compose.assess (used by the benchmark for test accuracy) predicts what the runtime does."""
    from spidercache.inference.compose import Composition, assess
    from spidercache.inference.explore import collect_activations
    from spidercache.inference.heads import head_outputs

    # The tiny network is cheaper than any head, so compose() rightly takes none; set the choice by hand,
    # at the median confidence so that some images exit and some do not.
    k = next(i for i, h in enumerate(tiny_exploration.heads) if h.unit == 0 and h.variant == "pool4_mlp")
    threshold = float(np.median(tiny_exploration.heads[k].val_conf))
    comp = Composition(1, 0.0, [(k, threshold)], 0.0, 0.0, 0.0, 0.0, 0.0, 0, True)
    x, y = make_images(200, seed=13)
    acts, logits = collect_activations(tiny_base, x)
    heads = [tiny_exploration.build_head(k) for k in range(len(tiny_exploration.heads))]
    outs = [head_outputs(head, acts[h.unit][head.grid]) for head, h in zip(heads, tiny_exploration.heads)]
    base_acc, gati_acc, rates = assess(
        tiny_exploration, comp, [o[0] for o in outs], [o[1] for o in outs], y, logits.argmax(1).numpy()
    )
    out = GatiRuntime.from_composition(tiny_base, tiny_exploration, comp).predict_images(x)
    assert gati_acc == pytest.approx(100.0 * float((out.labels.numpy() == y).mean()))
    assert sum(rates) == pytest.approx(100.0 * float((out.exit_unit < 2).float().mean()))


def test_audited_requests_take_the_base_answer_and_feed_the_buffer(tiny_base, tiny_exploration):
    rt = runtime_with(tiny_exploration, tiny_base, 0.0)  # threshold 0: every head answers everything
    x, _ = make_images(12, seed=61)
    xt = tiny_base.preprocess(x)
    n_units = len(rt.units)
    assert all(int(rt.predict(xt[i : i + 1]).exit_unit[0]) < n_units for i in range(4))
    retrainer = OnlineRetrainer(rt, audit_every=3)
    try:
        outs = [rt.predict(xt[i : i + 1]) for i in range(len(x))]
    finally:
        retrainer.stop()
    audited = [i for i, o in enumerate(outs) if int(o.exit_unit[0]) == n_units]
    assert audited == [2, 5, 8, 11]  # one request in three ran the whole network...
    with torch.no_grad():
        base_labels = tiny_base.model(xt).argmax(1)
    assert all(int(outs[i].labels[0]) == int(base_labels[i]) for i in audited)  # ...and got the base's answer
    seen = sum(retrainer._seen.values())
    assert seen == 4 * len(rt.exits)  # each audited request reached every head's buffer; hits reach none
