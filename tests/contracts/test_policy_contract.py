"""The contract every policy passes, engine and training alike, each built through the registry.

Engine policies (``access(ids) -> hits``): a hit only for an id resident before
the access, never more residents than the capacity, an evicted id is not
resident afterwards, every eviction is reported once.
Training policies (``lookup(ids) -> Lookup``): served == requested unless
substituted, a substituted request is served by a resident stand-in (with the
requested label, except where the policy's paper says any sample will do), a
hit only for a resident id (or one admitted earlier in the batch), never more
residents than the capacity, evicted ids are not resident afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

from spidercache.engine.nextuse import next_use_positions
from spidercache.engine.policies import make_policy, policy_names
from spidercache.engine.policies.base import Policy
from spidercache.engine.policies.registry import TRAINING

ENGINE = [n for n in policy_names("engine")]
TRAINING_NAMES = [TRAINING + n for n in policy_names("training")]
# By their papers' design any resident sample stands in, whatever its label: iCache (a cached sample
# of the unimportant set) and SHADE (PADS: a resident sample with uses left). The stand-in is still
# resident (checked below); only the spider policies promise the requested label.
LABEL_AGNOSTIC_STAND_INS = {"train-icache", "train-shade"}


def _trace(n_ids: int = 60, length: int = 700, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.zipf(1.3, length) % n_ids).astype(np.int64)


def _engine_kwargs(name: str, ids: np.ndarray) -> dict:
    if name == "opt":
        return {"next_use": next_use_positions(ids)}
    if name.startswith("learned"):
        from spidercache.embedding.models import ModelConfig, build_model

        kw = {"model": build_model(ModelConfig(model="cache", hidden_size=8))}
        if name == "learned+prefetch":
            kw["prefetch_model"] = build_model(ModelConfig(model="prefetch", hidden_size=8))
        return kw
    return {}


@pytest.mark.parametrize("name", ENGINE)
@pytest.mark.parametrize("capacity", [1, 7])
def test_engine_policy_contract(name, capacity):
    ids = _trace()
    evicted: list[int] = []
    p = make_policy(
        name, capacity, 60, on_evict=lambda e: evicted.extend(e.tolist()), **_engine_kwargs(name, ids)
    )
    for x in ids:
        before = set(p.resident_ids().tolist())
        n_evicted = len(evicted)
        hit = bool(p.access(np.array([x], np.int64))[0])
        after = set(p.resident_ids().tolist())
        assert hit == (int(x) in before), (name, int(x))
        assert len(after) <= capacity and p.size == len(after)
        gone = evicted[n_evicted:]
        assert not set(gone) & after
        assert set(gone) <= before  # only what was resident can be evicted
        assert before - after == set(gone)  # and every departure is reported
    st = p.stats()
    assert st.requests == ids.size and st.evictions == len(evicted)


# the learned policies score a whole batch at once, so their decisions depend on the batch boundaries
# Learned policies update their model once per batch (learned, learned+offline, and lru+admit's online
# reuse model), so their decisions legitimately depend on where batches end.
BATCH_DEPENDENT = ("learned", "lru+admit")


@pytest.mark.parametrize("name", [n for n in ENGINE if not n.startswith(BATCH_DEPENDENT)])
def test_engine_batches_equal_single_accesses(name):
    ids = _trace(seed=1)
    one = make_policy(name, 9, 60, **_engine_kwargs(name, ids))
    single = np.array([one.access(ids[i : i + 1])[0] for i in range(ids.size)])
    batched = make_policy(name, 9, 60, **_engine_kwargs(name, ids))
    hits = np.concatenate([batched.access(c) for c in np.array_split(ids, 13)])
    assert hits.tolist() == single.tolist()


@pytest.mark.parametrize("name", ENGINE + TRAINING_NAMES)
def test_every_policy_answers_the_engine_protocol(name):
    """Engine and training policies are one family: ``access`` one id at a time (training policies get an
    epoch start and per-sample feedback every 100 requests), ``remove``, ``stats``, ``on_evict``."""
    ids = _trace(n_ids=120, length=900, seed=3)
    rng = np.random.default_rng(2)
    evicted: list[int] = []
    kw = _engine_kwargs(name, ids)
    if name.startswith(TRAINING):
        kw.update(labels=rng.integers(0, 3, 120), seed=1)
    p = make_policy(name, 12, 120, on_evict=lambda e: evicted.extend(e.tolist()), **kw)
    assert isinstance(p, Policy)
    hits = 0
    for k, x in enumerate(ids):
        if name.startswith(TRAINING) and k % 100 == 0:
            if k:
                _feedback(p, ids[k - 100 : k], rng)
            p.begin_epoch(k // 100)
        before = set(p.resident_ids().tolist())
        n_evicted = len(evicted)
        hit = bool(p.access(np.array([x], np.int64))[0])
        hits += hit
        after = set(p.resident_ids().tolist())
        assert hit == (int(x) in before), (name, k, int(x))
        assert len(after) <= p.capacity and p.size == len(after)
        assert not set(evicted[n_evicted:]) & after
        assert before - after <= set(evicted[n_evicted:])  # every departure is reported
    st = p.stats()
    assert (st.requests, st.hits, st.evictions) == (ids.size, hits, len(evicted))
    resident = p.resident_ids()
    if resident.size:
        assert p.remove(np.r_[resident[:2], resident[:1]]) == min(2, resident.size)
        assert not p.contains(resident[:2]).any() and p.size == resident.size - min(2, resident.size)


def _feedback(p, served: np.ndarray, rng) -> None:
    emb = rng.standard_normal((served.size, 16)).astype(np.float32) if p.wants_embeddings else None
    p.update(served, rng.random(served.size), emb)


@pytest.mark.parametrize("name", TRAINING_NAMES)
def test_training_policy_contract(name):
    n, cap = 400, 60
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, n)
    p = make_policy(name, cap, n, labels=labels, seed=1)
    substitutions = 0
    for epoch in range(3):
        p.begin_epoch(epoch)
        order = p.order(epoch)
        assert order.size and order.min() >= 0 and order.max() < n
        for batch in np.array_split(order, max(1, order.size // 32)):
            resident = set(p.resident().tolist())
            lk = p.lookup(batch)
            sub = lk.substituted
            assert (lk.served[~sub] == batch[~sub]).all()
            assert lk.hit[sub].all()
            if name not in LABEL_AGNOSTIC_STAND_INS:
                assert (labels[lk.served[sub]] == labels[batch[sub]]).all()
            admitted_before: set[int] = set()
            for k in range(batch.size):
                s = int(lk.served[k])
                if lk.hit[k]:
                    assert s in resident or s in admitted_before, (name, epoch, s)
                if lk.admit[k]:
                    admitted_before.add(s)
            after = p.resident()
            assert after.size <= cap
            assert (
                not np.isin(lk.evicted, after).any()
                or np.isin(lk.evicted[np.isin(lk.evicted, after)], lk.served[lk.admit]).all()
            )
            substitutions += int(sub.sum())
            _feedback(p, lk.served, rng)
    assert p.resident().size <= cap


# train-none caches nothing by design; the spider policies score samples from update()'s feedback,
# which this plain trace does not give (not checked here at any capacity)
NO_PLAIN_TRACE_HITS = {"train-none", "train-spider", "train-spider-noh", "train-spider-nois"}


# W-TinyLFU's window (1 %) truncates to 0 under 100 objects and it admits nothing, as libCacheSim's
# does (tests/sim pins our misses to libCacheSim's at capacity 40): it warns instead (test below)
# So does 2Q under 4 objects (A1in is 25 %): both kept equal to libCacheSim, both warn
SMALL = [n for n in ENGINE + TRAINING_NAMES if n not in NO_PLAIN_TRACE_HITS | {"wtinylfu", "twoq"}]


@pytest.mark.parametrize("name,capacity", [("wtinylfu", 99), ("twoq", 3)])
def test_a_policy_too_small_to_admit_says_so(name, capacity):
    with pytest.warns(RuntimeWarning, match="admits nothing"):
        make_policy(name, capacity, 10)


@pytest.mark.parametrize("name", SMALL)
def test_every_policy_caches_at_small_capacities(name):
    """A capacity of 1..5 still holds and hits (a share of it that truncates to 0 must not empty a queue
    every newcomer passes through, e.g. Cacheus's SR)."""
    ids = np.random.default_rng(0).integers(0, 10, 2000).astype(np.int64)
    for capacity in range(1, 6):
        kw = _engine_kwargs(name, ids)
        if name.startswith(TRAINING):
            kw.update(labels=np.arange(10) % 3, seed=1)
        p = make_policy(name, capacity, 10, **kw)
        if name.startswith(TRAINING):
            p.begin_epoch(0)
        assert np.count_nonzero(p.access(ids)) > 0, (name, capacity)
