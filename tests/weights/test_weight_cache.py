"""WeightCache against real memcached servers (the shared conftest fixtures)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pymemcache.client.hash import HashClient

from spidercache.errors import UserError
from spidercache.models import build_model
from spidercache.weights.layers import WeightCacheWarning, check_compatible, load_into, ring_graph
from spidercache.weights.weight_cache import WeightCache


def _addresses(pool) -> list[str]:
    return [f"{h}:{p}" for h, p in pool.servers]


def _state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "big.weight": torch.randn(700, 1000, generator=g),  # 2.8 MB: three chunks
        "bias": torch.randn(7, generator=g, dtype=torch.float64),
        "half": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "count": torch.tensor(12, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "np": np.arange(24, dtype=np.int16).reshape(2, 3, 4),
    }


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        )
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_put_get_round_trip_is_bit_exact(memcached_pool, key_prefix) -> None:
    state = _state()
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix) as cache:
        info = cache.put("job", "node01", state, fitness=0.5)
        assert info.seq == 1 and info.layers[0].nchunks == 3
        got = cache.get("job", "node01")
    assert got is not None and got.fitness == 0.5
    assert list(got.state) == list(state)
    for k in state:
        assert _equal(state[k], got.state[k]), k
    got.state["big.weight"][0, 0] = 1.0  # returned tensors are writable copies


def test_model_round_trip_and_new_version_replaces_old(memcached_pool, key_prefix) -> None:
    torch.manual_seed(0)
    model = build_model("small", 1, 10)
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix) as cache:
        first = cache.put("job", "node01", model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        second = cache.put("job", "node01", model, fitness=0.9)
        assert second.seq == first.seq + 1 and second.vid != first.vid
        # The old version's chunks are gone once the new manifest is in place.
        old_keys = [k for e in first.layers for k in cache._chunk_keys("job", "node01", first.vid, e)]
        assert cache.store.get_many(old_keys) == [None] * len(old_keys)
        fresh = build_model("small", 1, 10)
        load_into(fresh, cache.get("job", "node01").state)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k


def test_half_written_version_is_never_seen(memcached_pool, key_prefix) -> None:
    state = _state()
    # batch_bytes=1: every layer is sent as soon as it is cut, so a failure
    # later in put() leaves chunks of the new version behind, without a manifest.
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix, batch_bytes=1) as cache:
        cache.put("job", "node01", state)
        broken = {"big.weight": state["big.weight"] + 1, "not a tensor": "text"}
        with pytest.raises(UserError, match="must be a torch tensor"):
            cache.put("job", "node01", broken)
        got = cache.get("job", "node01")
    assert got is not None and got.info.seq == 1
    assert torch.equal(got.state["big.weight"], state["big.weight"])


def test_evicted_or_damaged_chunk_is_detected(memcached_pool, key_prefix) -> None:
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix) as cache:
        info = cache.put("job", "node01", _state())
        # the items as memcached holds them (the store's key layout and framing)
        keys = [
            cache.store._entry_key(k) for k in cache._chunk_keys("job", "node01", info.vid, info.layers[0])
        ]
        raw = HashClient(memcached_pool.servers, default_noreply=False)
        # Same length, one byte changed: only the checksum can tell.
        chunk = bytearray(raw.get(keys[1]))
        chunk[100] ^= 0xFF
        raw.set(keys[1], bytes(chunk))
        with pytest.warns(WeightCacheWarning, match="checksum mismatch"):
            assert cache.get("job", "node01") is None
        info = cache.put("job", "node01", _state())
        gone = cache.store._entry_key(cache._chunk_keys("job", "node01", info.vid, info.layers[0])[2])
        raw.delete(gone)  # as if evicted
        with pytest.warns(WeightCacheWarning, match="missing"):
            assert cache.get("job", "node01") is None
        raw.close()


def test_best_and_neighbours(memcached_pool, key_prefix) -> None:
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix) as cache:
        for i, fit in enumerate([0.2, 0.9, 0.5, None]):
            cache.put("job", f"n{i}", {"w": torch.full((3,), float(i))}, fitness=fit)
        assert cache.nodes("job") == ["n0", "n1", "n2", "n3"]
        assert cache.best("job").node == "n1"
        assert cache.best("job", exclude=["n1"]).node == "n2"
        assert cache.best("job", fitness=lambda info: -int(info.node[1:])).node == "n0"
        graph = {"n0": ["n3"], "n3": ["n0", "n2"], "n2": ["n1"]}
        assert cache.neighbours("job", "n0", graph).node == "n3"  # nearest first, even with no fitness
        cache.delete("job", "n3")
        assert cache.neighbours("job", "n0", graph).node == "n2"  # then the next ring of the walk
        assert cache.neighbours("job", "n1", graph) is None
        assert cache.best("other-job") is None
    assert ring_graph(["a", "b", "c"]) == {"a": ["b", "c"], "b": ["c", "a"], "c": ["a", "b"]}


def test_server_killed_loads_fall_back_never_partial(memcached_pool_fn, key_prefix) -> None:
    addresses = _addresses(memcached_pool_fn)
    states = {f"node{i:02d}": _state(seed=i) for i in range(6)}
    with WeightCache(addresses, prefix=key_prefix, timeout=2.0) as cache:
        for i, (node, state) in enumerate(states.items()):
            cache.put("job", node, state, fitness=i / 10)
        memcached_pool_fn.members[0].kill()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = {node: cache.get("job", node) for node in states}
            best = cache.best("job")
    complete = {n: v for n, v in results.items() if v is not None}
    # Six 2.8 MB states spread over two servers: every node lost something.
    assert len(complete) < len(states)
    for node, version in complete.items():
        assert all(_equal(states[node][k], version.state[k]) for k in states[node])
    assert best is None or all(_equal(states[best.node][k], best.state[k]) for k in states[best.node])
    assert any(issubclass(w.category, WeightCacheWarning) for w in caught)


def test_non_strict_open_skips_a_dead_server(memcached_pool_fn, key_prefix) -> None:
    addresses = _addresses(memcached_pool_fn)
    memcached_pool_fn.members[1].kill()
    with pytest.raises(UserError, match="does not answer"):
        WeightCache(addresses, prefix=key_prefix)
    with pytest.warns(WeightCacheWarning, match="going on without it"):
        cache = WeightCache(addresses, prefix=key_prefix, strict=False)
    with cache:
        cache.put("job", "node01", {"w": torch.ones(3)})
        assert torch.equal(cache.get("job", "node01").state["w"], torch.ones(3))


@pytest.mark.parametrize(
    "servers,match",
    [
        ("127.0.0.1:1", "does not answer"),
        ("localhost", "not HOST:PORT"),
        ("127.0.0.1:99999", "port out of range"),
        ("", "no memcached servers"),
    ],
)
def test_bad_server_addresses(servers: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        WeightCache(servers)


@pytest.mark.parametrize("job", ["../etc", "a b", "x" * 65, "", "job/1", "név"])
def test_unsafe_job_names_are_refused(memcached_pool, key_prefix, job: str) -> None:
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix) as cache:
        with pytest.raises(UserError, match="job name"):
            cache.put(job, "node01", {"w": torch.ones(1)})
        with pytest.raises(UserError, match="job name"):
            cache.get(job, "node01")


def test_other_architecture_is_one_clear_error(memcached_pool, key_prefix) -> None:
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix) as cache:
        cache.put("job", "node01", build_model("small", 1, 10))
        state = cache.get("job", "node01").state
    with pytest.raises(UserError, match="another architecture") as err:
        load_into(build_model("small", 1, 5), state)
    assert "\n" not in str(err.value) and "fc.weight" in str(err.value)
    with pytest.raises(UserError, match="another architecture"):
        check_compatible(build_model("alexnet", 1, 10), state)
