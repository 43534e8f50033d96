"""Map/reduce rounds on a real Dask LocalCluster with weights in real memcached."""

from __future__ import annotations

import pytest

from spidercache.errors import UserError
from spidercache.models import build_model
from spidercache.weights.dask_cluster import close_dask, open_dask
from spidercache.weights.experiment import compare_summary, plot_rounds, run_experiment
from spidercache.weights.mapreduce import MapReduceConfig, run_mapreduce
from spidercache.weights.weight_cache import WeightCache


@pytest.fixture(scope="module")
def dask_client():
    # Threads, not processes: the workers start in a fraction of a second.
    client = open_dask(None, workers=2, processes=False)
    yield client
    close_dask(client)


def _cfg(job: str = "ok", **kw) -> MapReduceConfig:
    base = dict(
        job=job, data="synthetic", rounds=3, steps=8, batch_size=32, train_samples=400, val_samples=200
    )
    return MapReduceConfig(**{**base, **kw})


def _addresses(pool) -> list[str]:
    return [f"{h}:{p}" for h, p in pool.servers]


@pytest.mark.parametrize(
    "start,expect",
    [
        ("reduced", {"reduce"}),
        ("own", {"own"}),
        ("best", {"node01", "node02", "reduce"}),
        ("neighbour", {"other"}),
        ("scratch", {"fresh"}),
    ],
)
def test_map_tasks_start_from_the_chosen_weights(
    dask_client, memcached_pool, key_prefix, start, expect
) -> None:
    cfg = _cfg(f"{key_prefix}-{start}", start=start)
    result = run_mapreduce(cfg, _addresses(memcached_pool), dask_client)
    assert len(result.accuracy) == 3 and all(a is not None and 0 <= a <= 1 for a in result.accuracy)
    assert result.warnings == []
    assert [m["source"] for m in result.rounds[0]["maps"]] == ["fresh", "fresh"]
    for summary in result.rounds[1:]:
        for m in summary["maps"]:
            allowed = {m["node"] if e == "own" else e for e in expect}
            if "other" in expect:
                allowed = {"node02" if m["node"] == "node01" else "node01"}
            assert m["source"] in allowed, (start, m)
    with WeightCache(_addresses(memcached_pool)) as cache:
        assert set(cache.nodes(cfg.job)) == {"node01", "node02", "reduce"}
        assert cache.get(cfg.job, "reduce").fitness == pytest.approx(result.accuracy[-1])


def test_fittest_reduce_keeps_the_best_node(dask_client, memcached_pool, key_prefix) -> None:
    result = run_mapreduce(
        _cfg(f"{key_prefix}-fit", reduce="fittest", rounds=2), _addresses(memcached_pool), dask_client
    )
    for summary in result.rounds:
        best = max(summary["maps"], key=lambda m: m["fitness"])
        assert summary["reduced_from"] == [best["node"]]
        assert summary["val_accuracy"] == pytest.approx(best["fitness"])


def test_killed_server_mid_run_falls_back_with_warnings(dask_client, memcached_pool_fn, key_prefix) -> None:
    def kill_after_first(r: int, summary: dict) -> None:
        if r == 0:
            memcached_pool_fn.members[0].kill()

    cfg = _cfg(f"{key_prefix}-kill", rounds=3)
    result = run_mapreduce(cfg, _addresses(memcached_pool_fn), dask_client, on_round=kill_after_first)
    assert len(result.accuracy) == 3 and result.accuracy[-1] is not None
    assert any("does not answer" in w for w in result.warnings)
    # Every map task after the kill started from verified weights or fresh: never from a partial state.
    for summary in result.rounds[1:]:
        assert all(m["source"] in {"reduce", "node01", "node02", "fresh"} for m in summary["maps"])


def test_other_architecture_in_the_cache_is_a_user_error(dask_client, memcached_pool, key_prefix) -> None:
    cfg = _cfg(f"{key_prefix}-arch", rounds=2)
    with WeightCache(_addresses(memcached_pool)) as cache:
        cache.put(cfg.job, "planted", build_model("small", 1, 5), fitness=2.0)
    with pytest.raises(UserError, match="another architecture"):
        # Round 1 starts fresh; round 2 loads the fittest weights: the planted ones.
        run_mapreduce(
            _cfg(cfg.job, rounds=2, start="best"), _addresses(memcached_pool), dask_client, fresh=False
        )


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"start": "nowhere"}, "unknown start"),
        ({"reduce": "median"}, "unknown reduce"),
        ({"job": "bad job"}, "job name"),
        ({"rounds": 0}, "rounds must be"),
        ({"network": "lenet9"}, "unknown network"),
    ],
)
def test_bad_config(kw, match) -> None:
    with pytest.raises(UserError, match=match):
        _cfg(**{"job": "ok", **kw}).validate()


def test_experiment_is_memoized_and_plotted(dask_client, memcached_pool, key_prefix, tmp_path) -> None:
    cfg = _cfg(f"{key_prefix}-memo", rounds=1, steps=4)
    kw = dict(servers=_addresses(memcached_pool), processes=False, results=str(tmp_path / "res"))
    first = run_experiment(cfg, **kw)
    second = run_experiment(cfg, **kw)
    assert not first["memo"]["hit"] and second["memo"]["hit"]
    assert second["cached"]["accuracy"] == first["cached"]["accuracy"]
    assert second["figure"] == first["figure"] and first["figure"]["rounds"] == 1
    third = run_experiment(cfg, no_cache=True, **kw)
    assert not third["memo"]["hit"]
    png = plot_rounds(
        {"cached": first["cached"]["accuracy"], "scratch": first["scratch"]["accuracy"]},
        str(tmp_path / "plot.png"),
    )
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_compare_summary() -> None:
    f = compare_summary([0.5, 0.7, 0.8, 0.85], [0.5, 0.55, 0.6, 0.7])
    assert f["cached_rounds_to_match"] == 2 and f["meets_half"]
    assert not compare_summary([0.1, 0.2, 0.3, 0.9], [0.5, 0.5, 0.5, 0.5])["meets_half"]


@pytest.mark.parametrize("local_mb,expect_local", [(64, True), (0, False)])
def test_map_tasks_of_a_round_read_the_reduced_version_through_one_process_tier(
    dask_client, memcached_pool, key_prefix, local_mb, expect_local
) -> None:
    # Four map tasks on two worker threads of one process all start from the same reduced
    # version: with a local tier memcached serves each of its chunks once per round, the
    # other reads come from the process; without one every read goes to memcached.
    # The reduce task reads the four new node versions: nothing of them was held before.
    cfg = _cfg(f"{key_prefix}-tier{local_mb}", nodes=4, local_mb=local_mb)
    result = run_mapreduce(cfg, _addresses(memcached_pool), dask_client)
    assert result.warnings == [] and all(a is not None for a in result.accuracy)
    with WeightCache(_addresses(memcached_pool)) as cache:
        info = cache.info(cfg.job, "reduce")
        per_version = sum(len(cache._chunk_keys(info.job, info.node, info.vid, e)) for e in info.layers)
    for summary in result.rounds[1:]:
        maps = summary["maps"]
        assert {m["source"] for m in maps} == {"reduce"}
        assert sum(m["chunks"]["read"] for m in maps) == 4 * per_version
        from_memcached = per_version if expect_local else 4 * per_version
        assert sum(m["chunks"]["from_memcached"] for m in maps) == from_memcached
        assert summary["chunks_from_memcached"] == from_memcached + 4 * per_version
        assert summary["chunks_read"] == 4 * per_version + 4 * per_version


def test_negative_local_mb_is_a_user_error() -> None:
    with pytest.raises(UserError, match="local_mb"):
        _cfg(local_mb=-1).validate()
