"""WeightCache's local tier (``local_bytes``): the engine's Cache in front of real memcached servers."""

from __future__ import annotations

import pytest
import torch
from test_weight_cache import _addresses, _equal, _state

from spidercache.errors import UserError
from spidercache.weights.weight_cache import WeightCache


def _chunk_keys(cache, info) -> list[str]:
    return [k for e in info.layers for k in cache._chunk_keys(info.job, info.node, info.vid, e)]


def test_a_version_is_fetched_once_and_a_new_version_is_never_stale(memcached_pool, key_prefix) -> None:
    state = _state()
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix, local_bytes=64 << 20) as cache:
        info = cache.put("job", "node01", state)
        n = len(_chunk_keys(cache, info))
        first = cache.get("job", "node01")
        assert cache.chunks.stats().hits == 0 and cache.chunks.stats().loaded == n
        # the chunks leave memcached; the manifest stays: the second read is served by this process
        cache.store.delete_many(_chunk_keys(cache, info))
        second = cache.get("job", "node01")
        assert second is not None and cache.chunks.stats().hits == n
        for k in state:
            assert _equal(state[k], first.state[k]) and _equal(state[k], second.state[k]), k
        # a new version: new keys, read from memcached, never the kept chunks of the old one
        newer = {
            k: (v + 1 if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
            for k, v in state.items()
        }
        cache.put("job", "node01", newer)
        third = cache.get("job", "node01")
        assert third.info.seq == info.seq + 1
        for k in state:
            assert _equal(newer[k], third.state[k]), k


def test_a_budget_below_one_chunk_still_reads_right(memcached_pool, key_prefix) -> None:
    state = _state()
    with WeightCache(_addresses(memcached_pool), prefix=key_prefix, local_bytes=1000) as cache:
        cache.put("job", "node01", state)
        for _ in range(2):  # nothing fits locally: every read goes to memcached, and is whole
            got = cache.get("job", "node01")
            for k in state:
                assert _equal(state[k], got.state[k]), k
        assert cache.chunks.stats().hits == 0


def test_negative_local_bytes_is_a_user_error(memcached_pool, key_prefix) -> None:
    with pytest.raises(UserError, match="local_bytes"):
        WeightCache(_addresses(memcached_pool), prefix=key_prefix, local_bytes=-1)
