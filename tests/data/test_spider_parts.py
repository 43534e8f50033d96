"""SpiderCache's parts on hand-made data: the weighting, the graph, importance, sampling, the split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spidercache.data.adaptive_split import AdaptiveSplit
from spidercache.data.homophily import HomophilyGraph, spider_weight
from spidercache.data.importance import SampleImportance
from spidercache.data.importance_sampling import ImportanceSampler


# ------------------------------------------------------------- weighting
def test_spider_weight_matches_the_formula_on_hand_values():
    k = 4
    # all neighbours share the label: log(1 + log(1/5 + 1))
    assert spider_weight(4, 0, k) == pytest.approx(math.log(1 + math.log(1 / 5 + 1)))
    # none does: log(1 + log(2) + 1)
    assert spider_weight(0, 4, k) == pytest.approx(math.log(1 + math.log(2) + 1))
    # mixed: n_same=1, n_other=3
    assert spider_weight(1, 3, k) == pytest.approx(math.log(1 + math.log(1 / 2 + 1) + 3 / 4))
    w = spider_weight(np.arange(5), 4 - np.arange(5), k)
    assert np.all(np.diff(w) < 0), "more same-label look-alikes must mean a lower weight"


def _points_on_circle(angles):
    return np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)


def _hand_graph():
    # label 0: five points around angle 0; label 1: five around angle pi;
    # one label-1 intruder sits among the label-0 points (id 10).
    angles = np.r_[np.linspace(-0.1, 0.1, 5), np.pi + np.linspace(-0.1, 0.1, 5), 0.01]
    labels = np.r_[np.zeros(5), np.ones(5), 1].astype(np.int64)
    return _points_on_circle(angles), labels


def test_graph_counts_same_and_other_label_neighbours_on_a_hand_made_layout():
    emb, labels = _hand_graph()
    g = HomophilyGraph(labels, k=4, proj_dim=16, upkeep_fraction=1.0)
    g.observe(np.arange(labels.size), emb)
    g.refresh()
    assert g.indexed.all()
    # the intruder's four nearest are all label 0
    assert (g.n_same[10], g.n_other[10]) == (0, 4)
    # the label-1 crowd at pi: every neighbour within its own group of five
    assert (g.n_same[5:10] == 4).all() and (g.n_other[5:10] == 0).all()
    # label-0 points have the intruder close by: at most one other-label neighbour
    assert (g.n_same[:5] >= 3).all() and (g.n_other[:5] <= 1).all()
    w = g.weights()
    assert w[10] == pytest.approx(spider_weight(0, 4, 4))
    assert w[10] > w[:10].max()


def test_clusters_hold_one_label_and_one_representative_each():
    emb, labels = _hand_graph()
    g = HomophilyGraph(labels, k=4, upkeep_fraction=1.0)
    g.observe(np.arange(labels.size), emb)
    g.refresh()
    cluster, reps = g.clusters()
    assert cluster.min() >= 0 and reps.size == cluster.max() + 1
    for c, r in enumerate(reps):
        members = np.flatnonzero(cluster == c)
        assert r in members
        assert (labels[members] == labels[r]).all()
    assert np.unique(cluster[10]).size == 1 and (cluster == cluster[10]).sum() == 1  # the intruder is alone


def test_index_is_updated_in_place_within_the_budget():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    g = HomophilyGraph(labels, k=5, upkeep_fraction=0.1)
    g.observe(np.arange(300), rng.standard_normal((300, 32)))
    assert g.refresh() == {"added": 300, "updated": 0, "queried": 300}
    g.observe(np.arange(300), rng.standard_normal((300, 32)))
    ops = g.refresh()
    assert ops["added"] == 0 and ops["updated"] == 30 and ops["queried"] == 30
    assert g._index.get_current_count() == 300  # no duplicate elements: labels were updated, not re-added


def test_dimension_change_rebuilds_with_a_warning():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 50)
    g = HomophilyGraph(labels, k=3)
    g.observe(np.arange(50), rng.standard_normal((50, 8)))
    g.refresh()
    with pytest.warns(RuntimeWarning, match="dimension changed"):
        g.observe(np.arange(50), rng.standard_normal((50, 12)))
    g.refresh()
    assert g.rebuilds == 1 and g.indexed.all() and np.isfinite(g.weights()).all()


def test_nan_embeddings_are_ignored_with_a_warning():
    labels = np.zeros(4, np.int64)
    g = HomophilyGraph(labels, k=2)
    emb = np.ones((4, 3), np.float32)
    emb[2, 1] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN"):
        g.observe(np.arange(4), emb)
    g.refresh()
    assert not g.indexed[2] and g.indexed[[0, 1, 3]].all()
    assert np.isfinite(g.weights()).all()


# ------------------------------------------------------------ importance
def test_importance_smooths_across_epochs_and_gives_unseen_a_prior():
    imp = SampleImportance(4, smoothing=0.5)
    imp.observe([0, 1], [2.0, 4.0])
    imp.commit()
    assert imp.score[:2].tolist() == [2.0, 4.0]
    assert imp.score[2] == imp.score[3] == pytest.approx(3.0)  # the prior: mean of the observed
    imp.observe([0], [4.0])
    imp.commit()
    assert imp.score[0] == pytest.approx(3.0)  # 0.5 * 2 + 0.5 * 4


def test_importance_drops_nan_losses_with_a_warning():
    imp = SampleImportance(3)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        imp.observe([0, 1, 2], [1.0, float("nan"), float("inf")])
    imp.commit()
    assert np.isfinite(imp.score).all() and imp.nonfinite_dropped == 2
    assert np.isfinite(imp.normalized()).all()


def test_gradnorm_proxy_uses_the_embedding_norm():
    imp = SampleImportance(2, kind="gradnorm")
    imp.observe([0, 1], [1.0, 1.0], np.array([[3.0, 4.0], [0.0, 1.0]]))
    imp.commit()
    p = 1 - math.exp(-1.0)
    assert imp.score.tolist() == pytest.approx([5 * p, 1 * p])


def test_all_equal_losses_give_equal_finite_scores():
    imp = SampleImportance(5)
    imp.observe(np.arange(5), np.full(5, 0.7))
    imp.commit()
    assert np.allclose(imp.normalized(), 1.0)


# -------------------------------------------------------------- sampling
def test_sampler_visits_every_sample_within_max_gap_epochs():
    n, gap = 500, 3
    s = ImportanceSampler(n, temperature=1.0, floor=0.0, max_gap=gap, clip=1000.0, seed=0)
    scores = np.full(n, 1e-6)
    scores[:5] = 1.0  # a few samples take nearly all the probability
    last = np.full(n, -1)
    s.order(0, None)
    last[:] = 0
    for epoch in range(1, 10):
        ids = s.order(epoch, scores)
        assert ids.size == n
        last[np.unique(ids)] = epoch
        assert (epoch - last < gap).all(), "a sample went unvisited for max_gap epochs"
        forced = np.flatnonzero(s.must_serve)
        assert np.isin(forced, ids).all()


def test_sampler_probabilities_have_a_floor_and_weights_unbias():
    n = 100
    s = ImportanceSampler(n, temperature=2.0, floor=0.2, seed=1)
    scores = np.linspace(0.1, 10, n)
    p = s.probabilities(scores)
    assert p.min() >= 0.2 / n - 1e-12 and p.sum() == pytest.approx(1.0)
    s.order(1, scores)
    w = s.loss_weights(np.arange(n))
    assert (w * p).sum() == pytest.approx(1.0)  # E_p[w] = 1: unbiased against uniform
    # NaN and all-equal scores still give a proper distribution
    assert np.isfinite(s.probabilities(np.full(n, np.nan))).all()
    assert np.allclose(s.probabilities(np.full(n, 2.0)), 1.0 / n)


# ---------------------------------------------------------------- split
def test_split_moves_toward_the_level_with_more_marginal_gain():
    s = AdaptiveSplit(ratio=0.5, step=0.2)
    for e in range(1, 4):
        s.update(e, gain0=0.5, gain1=9.0)
    assert s.ratio < 0.5 - 0.3
    t = AdaptiveSplit(ratio=0.5, step=0.2)
    for e in range(1, 4):
        t.update(e, gain0=8.0, gain1=0.1)
    assert t.ratio > 0.5 + 0.3
    assert 0.1 <= s.ratio and t.ratio <= 0.9  # bounds keep both levels alive


def test_marginal_gain_is_what_the_least_used_slots_served():
    # Level 1 earns more per slot on average (a few busy representatives), but a
    # quarter of its slots stand empty: its marginal slot is worth nothing.
    busy = np.full(60, 20.0)
    assert AdaptiveSplit.marginal_gain(busy, 100) == 0.0
    assert AdaptiveSplit.marginal_gain(np.arange(100.0), 100) == pytest.approx(12.0)  # mean of 0..24
    assert AdaptiveSplit.marginal_gain(np.ones(5), 0) == 0.0
    s = AdaptiveSplit(ratio=0.5, step=0.2)
    s.update(1, AdaptiveSplit.marginal_gain(np.full(100, 2.0), 100), AdaptiveSplit.marginal_gain(busy, 100))
    assert s.ratio > 0.5  # the average (12 vs 2 per slot) would have moved it the other way


def test_split_is_shared_through_redis_so_ranks_agree(redis_server):
    addr = ("127.0.0.1", redis_server.port)
    r0 = AdaptiveSplit(0.5, address=addr, rank=0, world=2, key="t:split")
    r1 = AdaptiveSplit(0.5, address=addr, rank=1, world=2, key="t:split", wait_seconds=5)
    # rank 1 saw different local statistics; it must still take rank 0's ratio
    a = r0.update(1, gain0=0.1, gain1=5.0)
    b = r1.update(1, gain0=5.0, gain1=0.1)
    assert a == b < 0.5


def test_split_falls_back_to_local_with_a_warning_when_redis_is_down():
    from spidercache.testing.servers import free_port

    r1 = AdaptiveSplit(0.5, address=("127.0.0.1", free_port()), rank=1, world=2, wait_seconds=0.5)
    with pytest.warns(RuntimeWarning, match="cannot share"):
        v = r1.update(1, gain0=5.0, gain1=0.1)
    assert v > 0.5
