"""The ``spider`` policy on synthetic epochs: substitution by label, the adaptive split, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from spidercache.data.policies import make_training_policy, policy_names
from spidercache.errors import UserError


def _run(policy, labels, emb_of, loss_of, epochs, batch=64):
    """Drive a policy like the training loop does; returns per-epoch (hits, subs, requests) and lookups."""
    out, lookups = [], []
    for epoch in range(epochs):
        policy.begin_epoch(epoch)
        order = policy.order(epoch)
        h = s = 0
        for b in range(0, order.size, batch):
            ids = order[b : b + batch]
            lk = policy.lookup(ids)
            lookups.append((ids, lk))
            h += int((lk.hit & ~lk.substituted).sum())
            s += int(lk.substituted.sum())
            e = emb_of(lk.served, epoch)
            policy.update(lk.served, loss_of(lk.served, epoch), e)
        out.append((h, s, order.size))
    return out, lookups


def _clustered(n=1500, n_labels=5, n_blobs=30, dim=24, seed=0, mix_labels=False):
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, n_blobs, n)
    centers = rng.standard_normal((n_blobs, dim)) * 4
    labels = rng.integers(0, n_labels, n) if mix_labels else blob % n_labels
    base = (centers[blob] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)
    loss = rng.gamma(1.0, 0.5, n)
    return labels.astype(np.int64), base, loss


def test_spider_policies_are_registered():
    assert {"spider", "spider-noh", "spider-nois"} <= set(policy_names())


STAND_IN_VARIANTS = [
    ("spider", {}),
    ("spider-nois", {}),
    ("spider", {"stand_in": "nearest", "rotate": False}),
    ("spider", {"stand_in": "neighbourhood"}),
    ("spider-nois", {"stand_in": "label", "rotate": True}),
]


@pytest.mark.parametrize("name,opts", STAND_IN_VARIANTS)
def test_substitution_only_crosses_to_a_sample_of_the_same_label(name, opts):
    # Labels are scattered at random over the blobs, so most nearest neighbours
    # carry another label: a careless stand-in would cross labels.
    labels, base, loss = _clustered(mix_labels=True, n_labels=3)
    p = make_training_policy(name, labels.size, 200, labels, seed=0, **opts)
    stats, lookups = _run(p, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=4)
    subs = 0
    for ids, lk in lookups:
        m = lk.substituted
        subs += int(m.sum())
        assert (labels[lk.served] == labels[ids]).all()
        assert (lk.served[~m] == ids[~m]).all()  # a non-substituted request is served by itself
        assert lk.hit[m].all()
    assert subs > 0, "the synthetic case should exercise substitution"


def test_served_share_beats_a_plain_cache_on_look_alike_data():
    labels, base, loss = _clustered()
    p = make_training_policy("spider", labels.size, 150, labels, seed=0)
    stats, _ = _run(p, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=4)
    h, s, r = map(sum, zip(*stats[1:]))
    assert (h + s) / r > 0.3  # a 10% cache under uniform order serves about 0.1
    assert s > 0 and h > 0
    assert not np.isnan(p.score).any()


def test_split_moves_toward_homophily_when_look_alikes_pay_off():
    # Every sample of a label has nearly the same embedding: one cached
    # representative can stand in for a whole class.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 2000)
    emb = (np.eye(8)[labels] + 0.01 * rng.standard_normal((2000, 8))).astype(np.float32)
    p = make_training_policy("spider", 2000, 200, labels, seed=0, ratio=0.5)
    _run(p, labels, lambda ids, e: emb[ids], lambda ids, e: np.full(ids.size, 0.5), epochs=4)
    assert p.split.ratio < 0.5 - 0.2
    assert p.hcache.capacity > p.icache.capacity


def test_split_moves_toward_importance_when_nothing_looks_alike():
    # Every sample its own label: no substitution is possible, while importance
    # sampling keeps drawing the few high-loss samples that level 0 holds.
    n = 800
    labels = np.arange(n)
    rng = np.random.default_rng(4)
    emb = rng.standard_normal((n, 8)).astype(np.float32)
    loss = np.where(np.arange(n) < 40, 5.0, 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every class has a single sample: warned, not the point here
        p = make_training_policy("spider", n, 80, labels, seed=0, ratio=0.5)
    _run(p, labels, lambda ids, e: emb[ids], lambda ids, e: loss[ids], epochs=4)
    assert p.split.ratio > 0.5 + 0.2
    assert p.icache.capacity > p.hcache.capacity


def test_embedding_dimension_change_between_epochs_does_not_crash():
    labels, base, loss = _clustered(n=600)
    wide = np.concatenate([base, base], 1)
    p = make_training_policy("spider", labels.size, 60, labels, seed=0)
    with pytest.warns(RuntimeWarning, match="dimension changed"):
        _run(p, labels, lambda ids, e: base[ids] if e < 2 else wide[ids], lambda ids, e: loss[ids], epochs=4)
    assert np.isfinite(p.score).all()


def test_single_sample_class_is_warned_and_never_substituted():
    labels, base, loss = _clustered(n=600)
    labels = labels.copy()
    labels[7] = 99
    with pytest.warns(RuntimeWarning, match="single sample"):
        p = make_training_policy("spider", labels.size, 60, labels, seed=0)
    _, lookups = _run(p, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=4)
    for ids, lk in lookups:
        assert not lk.substituted[ids == 7].any()
        assert not (lk.substituted & (lk.served == 7)).any()


def test_all_equal_losses_keep_scores_finite_and_protect_the_share():
    labels, base, _ = _clustered(n=600)
    p = make_training_policy("spider", labels.size, 60, labels, seed=0, protect=0.3)
    _run(p, labels, lambda ids, e: base[ids], lambda ids, e: np.full(ids.size, 1.25), epochs=3)
    assert np.isfinite(p.score).all()
    assert (~p.substitutable).sum() == round(0.3 * labels.size)


def test_nan_losses_warn_and_never_reach_the_scores():
    labels, base, loss = _clustered(n=600)
    p = make_training_policy("spider", labels.size, 60, labels, seed=0)

    def losses(ids, e):
        v = loss[ids].copy()
        v[::5] = np.nan
        return v

    with pytest.warns(RuntimeWarning, match="non-finite"):
        _run(p, labels, lambda ids, e: base[ids], losses, epochs=3)
    assert np.isfinite(p.score).all() and np.isfinite(p.imp.score).all()


def test_noh_never_substitutes_and_state_round_trips():
    labels, base, loss = _clustered(n=600)
    p = make_training_policy("spider-noh", labels.size, 60, labels, seed=0)
    _, lookups = _run(p, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=3)
    assert not any(lk.substituted.any() for _, lk in lookups)
    q = make_training_policy("spider", labels.size, 60, labels, seed=0)
    _run(q, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=2)
    r = make_training_policy("spider", labels.size, 60, labels, seed=0)
    r.load_state_dict(q.state_dict())
    r.begin_epoch(2)
    q.begin_epoch(2)
    assert np.array_equal(r.order(2), q.order(2))
    assert r.split.ratio == q.split.ratio


def _stand_ins_per_epoch(**opts):
    labels, base, loss = _clustered()
    p = make_training_policy("spider", labels.size, 150, labels, seed=0, rep_uses=2, **opts)
    _, lookups = _run(p, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=3)
    per_epoch = len(lookups) // 3
    last = lookups[-per_epoch:]
    used = np.concatenate([lk.served[lk.substituted] for _, lk in last])
    for ids, lk in last:
        assert (labels[lk.served] == labels[ids]).all()
    return used


def test_rotation_retires_used_up_stand_ins_so_more_distinct_images_stand_in():
    fixed = _stand_ins_per_epoch(stand_in="label", rotate=False)
    rotating = _stand_ins_per_epoch(stand_in="label", rotate=True)
    assert rotating.size > 0 and fixed.size > 0
    assert np.unique(rotating).size > np.unique(fixed).size
    # the use cap holds in both: no stand-in serves more than rep_uses times per epoch
    assert np.bincount(rotating).max() <= 2 and np.bincount(fixed).max() <= 2


def test_random_label_fallback_substitutes_more_than_nearest_only():
    labels, base, loss = _clustered()
    shares = {}
    for rule in ("nearest", "label"):
        p = make_training_policy("spider", labels.size, 150, labels, seed=0, stand_in=rule, rotate=False)
        stats, _ = _run(p, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=3)
        shares[rule] = sum(s for _, s, _ in stats[1:]) / sum(r for _, _, r in stats[1:])
    assert shares["label"] > shares["nearest"]


def test_batch_loss_weights_down_weight_stand_ins_and_keep_mean_one():
    labels, base, loss = _clustered(n=600)
    plain = make_training_policy("spider", labels.size, 60, labels, seed=0, sub_weight=1.0)
    assert plain.batch_loss_weights(np.arange(4), np.array([0, 1, 0, 1], bool)) is None  # a plain mean
    p = make_training_policy("spider", labels.size, 60, labels, seed=0)  # default sub_weight 0.5
    w = p.batch_loss_weights(np.arange(4), np.array([0, 1, 0, 1], bool))
    assert w.mean() == pytest.approx(1.0) and w[1] == pytest.approx(0.5 * w[0])
    q = make_training_policy("spider", labels.size, 60, labels, seed=0, is_correction=True, sub_weight=1.0)
    _run(q, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=2)
    ids = np.arange(labels.size)
    w = q.batch_loss_weights(ids, np.zeros(ids.size, bool))
    raw = q.sampler.loss_weights(ids)
    assert np.allclose(w, raw / raw.mean()) and np.isfinite(w).all()
    for bad in ({"stand_in": "farthest"}, {"sub_weight": 2.0}, {"protect": -1}, {"temperature": 0}):
        with pytest.raises(UserError, match="spider"):
            make_training_policy("spider", labels.size, 60, labels, seed=0, **bad)


def test_training_loop_applies_the_policy_loss_weights(tmp_path):
    from spidercache.data.train import TrainConfig, train

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 256)
    x = (rng.integers(0, 60, (256, 16, 16)) + y[:, None, None] * 50).astype(np.uint8)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:64], y=y[:64])

    def run(sub_weight):
        cfg = TrainConfig(
            train_paths=[str(tmp_path / "train.npz"), str(tmp_path / "test.npz")],
            network="small",
            batch_size=32,
            epochs=3,
            policy="spider",
            working_set_size=0.25,
            storage_latency_ms=0,
            workers=0,
            progress=False,
            policy_options={"stand_in": "label", "rotate": True, "sub_weight": sub_weight, "ready_after": 1},
        )
        return train(cfg).rows

    full, light = run(1.0), run(0.1)
    assert all(np.isfinite(r["loss"]) for r in full + light)
    # Epoch 0 has no stand-ins, so the weights are all equal and training is identical;
    # once stand-ins are served, down-weighting them changes what the model learns.
    assert full[0]["loss"] == light[0]["loss"] and full[0]["substitutions"] == 0
    assert sum(r["substitutions"] for r in full[1:]) > 0
    assert full[-1]["loss"] != light[-1]["loss"]


def test_negative_labels_are_a_user_error_where_labels_pick_stand_ins():
    labels = np.r_[np.zeros(5, np.int64), -np.ones(5, np.int64)]
    for name in ("spider", "icache"):
        with pytest.raises(UserError, match=">= 0"):
            make_training_policy(name, 10, 5, labels)
    make_training_policy("lru", 10, 5, labels)  # carries them only: -1 for "unlabelled" is fine


@pytest.mark.parametrize(
    "name,opts",
    [
        ("spider", {"ratio": 5}),
        ("spider", {"ratio": -1}),
        ("spider", {"rep_uses": -3}),
        ("spider", {"k": 0}),
        ("spider", {"proj_dim": 0}),
        ("spider", {"upkeep_fraction": 2}),
        ("spider", {"rotate": "maybe"}),
        ("spider", {"bogus": 1}),
        ("shade", {"rep_factr": 1}),
        ("shade", {"rep_factor": 0}),
        # shade: temperature <= 0 or NaN drew the same sample every time
        ("shade", {"temperature": 0}),
        ("shade", {"temperature": -1}),
        ("shade", {"temperature": float("nan")}),
        ("shade", {"temperature": "nan"}),
        # icache: h_share outside 0..1 sized the H-cache past the byte budget (7x) or the
        # L-buffer past it (-1: 2x); epoch_fraction outside (0, 1] asked 1 request or crashed.
        ("icache", {"h_share": 7}),
        ("icache", {"h_share": -1}),
        ("icache", {"h_fraction": 5}),
        ("icache", {"epoch_fraction": -3}),
        ("icache", {"epoch_fraction": 3}),
        ("icache", {"epoch_fraction": 0}),
    ],
)
def test_policy_options_out_of_range_or_unknown_are_user_errors(name, opts):
    with pytest.raises(UserError, match=f"{name}: "):
        make_training_policy(name, 100, 10, np.arange(100) % 4, **opts)


def test_boolean_policy_options_are_parsed_not_truth_tested():
    for text, want in (("False", False), ("no", False), ("0", False), ("true", True), ("yes", True)):
        assert make_training_policy("spider", 100, 10, np.arange(100) % 4, rotate=text).rotate is want


def test_every_sample_is_served_as_itself_at_least_every_max_gap_epochs():
    # docs/spider.md: "every sample's own data is trained on at least once every 3 epochs".
    # A substituted draw used to reset the bound, so a sample could go 7 epochs as a stand-in's.
    labels, base, loss = _clustered(n=600)
    p = make_training_policy("spider", labels.size, 120, labels, seed=0, ready_after=1)
    _, lookups = _run(p, labels, lambda ids, e: base[ids], lambda ids, e: loss[ids], epochs=10)
    last_own, worst, subs, per_epoch = np.full(labels.size, -1), 0, 0, labels.size
    for k, (ids, lk) in enumerate(lookups):
        epoch = k // -(-per_epoch // 64)
        last_own[ids[~lk.substituted]] = epoch
        subs += int(lk.substituted.sum())
        worst = max(worst, int((epoch - last_own).max()))
    assert subs > 0 and worst <= 3
