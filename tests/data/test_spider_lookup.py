"""``spider``'s batch lookup against a plain reference: the per-id loop it replaced, on seeded runs.

The reference below is the lookup as it was written first (one request at a
time, the neighbours of each miss read from the graph when it is met). The
policy's lookup reads the batch's neighbours, clusters and must-serve marks
array-at-a-time; every decision (served, hit, substituted, admitted, level,
evicted) and every draw of its random stand-ins must stay the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.data.policies import Lookup, make_training_policy


def _usable(p, r: int, i: int) -> bool:
    return (
        r >= 0
        and r != i
        and p.hcache.resident[r]
        and p.uses[r] < p.rep_uses
        and p.ready_at[r] <= p._lookups
        and p.labels[r] == p.labels[i]
    )


def _random_same_label(p, i: int, tries: int = 8) -> int:
    pool = p._pool.get(int(p.labels[i]))
    for _ in range(tries):
        if not pool:
            return -1
        k = p._pick.randrange(len(pool))
        r = pool[k]
        if not p.hcache.resident[r]:
            pool[k] = pool[-1]
            pool.pop()
            p._in_pool[r] = False
            continue
        if _usable(p, r, i):
            return r
    return -1


def _same_label_neighbours(p, i: int) -> np.ndarray:
    row = p.graph.nbrs[i][p.graph.nbr_ok[i]]
    return row[p.labels[row] == p.labels[i]]


def _reference_stand_in(p, i: int) -> int:
    c = p.cluster[i]
    own = int(p.rep_of[c]) if c < p.rep_of.size else -1
    nbr_reps = [
        int(p.rep_of[cn]) if cn < p.rep_of.size else -1
        for cn in p.cluster[_same_label_neighbours(p, i)].tolist()
    ]
    if p.stand_in_rule == "nearest":
        for r in [own] + nbr_reps:
            if _usable(p, r, i):
                return r
        return -1
    cands = [r for r in set([own] + nbr_reps) if _usable(p, r, i)]
    if cands:
        return cands[p._pick.randrange(len(cands))] if len(cands) > 1 else cands[0]
    if p.stand_in_rule == "label":
        return _random_same_label(p, i)
    return -1


def reference_lookup(p, ids: np.ndarray) -> Lookup:
    ids = np.asarray(ids, np.int64)
    n = ids.size
    p._lookups += 1
    served = ids.copy()
    hit, sub, admit = np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.zeros(n, np.bool_)
    level = np.zeros(n, np.int8)
    evicted = p._pending_evict
    p._pending_evict = []
    ic, hc = p.icache, p.hcache
    must = p.sampler.must_serve if p.use_importance_sampling else None
    hom = p.graph is not None and hc.capacity > 0
    fresh: set[int] = set()
    for k, i in enumerate(ids.tolist()):
        if i in fresh:
            continue
        if ic.resident[i] or hc.resident[i]:
            hit[k] = True
            level[k] = 0 if ic.resident[i] else 1
            p._gain[level[k]] += 1
            p.served_count[i] += 1
            continue
        if hom and p.substitutable[i] and (must is None or not must[i]):
            j = _reference_stand_in(p, i)
            if j >= 0:
                served[k] = j
                hit[k] = sub[k] = True
                level[k] = 1
                p.uses[j] += 1
                p.served_count[j] += 1
                p._gain[1] += 1
                continue
        lvl = p._keep_miss(i, hom, evicted)
        if lvl >= 0:
            admit[k] = True
            level[k] = lvl
            fresh.add(i)
    p.sampler.last_own[ids[~sub]] = p.epoch  # the visit bound counts a request served as itself
    return Lookup(served, hit, sub, admit, p._gone(evicted), level)


def _data(n=1200, n_labels=4, n_blobs=40, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, n_blobs, n)
    centers = rng.standard_normal((n_blobs, dim)) * 4
    base = (centers[blob] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)
    return (blob % n_labels).astype(np.int64), base, rng.gamma(1.0, 0.5, n)


@pytest.mark.parametrize(
    "name,opts",
    [
        ("spider", {}),
        ("spider", {"stand_in": "nearest"}),
        ("spider", {"stand_in": "neighbourhood", "rotate": False, "rep_uses": 2}),
        ("spider-nois", {"ready_after": 0, "refresh": 0.5}),
        ("spider-noh", {}),
    ],
)
def test_lookup_decides_as_the_plain_reference(name, opts):
    labels, base, loss = _data()
    new = make_training_policy(name, labels.size, 240, labels=labels, seed=3, **opts)
    ref = make_training_policy(name, labels.size, 240, labels=labels, seed=3, **opts)
    totals = np.zeros(3, np.int64)
    for epoch in range(4):
        rng_new, rng_ref = np.random.default_rng(epoch), np.random.default_rng(epoch)
        for p in (new, ref):
            p.begin_epoch(epoch)
        order = new.order(epoch)
        assert (order == ref.order(epoch)).all()
        for b in range(0, order.size, 48):
            ids = order[b : b + 48]
            a, r = new.lookup(ids), reference_lookup(ref, ids)
            for field in ("served", "hit", "substituted", "admit", "evicted", "level"):
                assert getattr(a, field).tolist() == getattr(r, field).tolist(), (epoch, b, field)
            totals += [int((a.hit & ~a.substituted).sum()), int(a.substituted.sum()), int(a.admit.sum())]
            for p, g in ((new, rng_new), (ref, rng_ref)):
                emb = base[a.served] + 0.05 * g.standard_normal((ids.size, base.shape[1])).astype(np.float32)
                p.update(a.served, loss[a.served] * (1 + 0.1 * epoch), emb)
        assert new.resident().tolist() == ref.resident().tolist()
    hits, subs, admits = totals.tolist()
    assert hits > 0 and admits > 0  # the run exercised the cache ...
    assert (subs > 0) == (name != "spider-noh")  # ... and the stand-ins, where the policy has them
