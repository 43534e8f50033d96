"""Job-result cache: content-hash keys, LMDB / Redis / memcached stores, the read-only HTTP view."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from spidercache.errors import UserError
from spidercache.weights.memo import ResultCache, job_key, memoize, open_results_store
from spidercache.weights.results_server import make_server

CALLS: list[tuple] = []


def square_sum(values, power=2):
    CALLS.append((tuple(np.asarray(values).tolist()), power))
    return {"total": float((np.asarray(values) ** power).sum()), "array": np.asarray(values) * 2}


def cube_sum(values, power=2):
    return {"total": float((np.asarray(values) ** 3).sum())}


def test_key_depends_on_function_inputs_and_params() -> None:
    base = job_key(square_sum, (np.arange(4),), {"power": 2})
    assert base == job_key(square_sum, (np.arange(4),), {"power": 2})
    assert base != job_key(square_sum, (np.arange(5),), {"power": 2})
    assert base != job_key(square_sum, (np.arange(4, dtype=np.int32),), {"power": 2})
    assert base != job_key(square_sum, (np.arange(4),), {"power": 3})
    assert base != job_key(cube_sum, (np.arange(4),), {"power": 2})
    assert job_key(square_sum, ({"a": 1, "b": 2},)) == job_key(square_sum, ({"b": 2, "a": 1},))
    assert job_key(square_sum, (torch.ones(3),)) != job_key(square_sum, (torch.ones(3, dtype=torch.float64),))
    with pytest.raises(UserError, match="cannot hash"):
        job_key(square_sum, (object(),))


def count(*xs):
    return len(xs)


def test_a_list_is_not_a_tuple_and_dict_keys_keep_their_type(tmp_path) -> None:
    # run() unpacks a tuple into arguments and passes a list whole: count((1, 2)) is 2, count([1, 2]) 1
    assert job_key(count, (1, 2)) != job_key(count, [1, 2])
    assert job_key(count, ({1: "x"},)) != job_key(count, ({"1": "x"},))
    assert job_key(count, ({1: "x", "a": 2},)) == job_key(count, ({"a": 2, 1: "x"},))
    with ResultCache.open(str(tmp_path / "res")) as cache:
        assert cache.run(count, (1, 2)).result == 2
        again = cache.run(count, [1, 2])
        assert not again.hit and again.result == 1


def test_a_results_store_that_dies_while_the_job_runs_costs_only_the_saving(memcached_server_fn) -> None:
    with ResultCache.open(f"memcached://{memcached_server_fn.host}:{memcached_server_fn.port}") as cache:

        def job(x):
            memcached_server_fn.stop()
            return x * 3

        with pytest.warns(RuntimeWarning, match="returned, not stored"):
            out = cache.run(job, (5,))
        assert out.result == 15 and not out.hit


def test_rerun_is_served_from_lmdb_and_survives_reopen(tmp_path) -> None:
    CALLS.clear()
    with ResultCache.open(str(tmp_path / "res")) as cache:
        first = cache.run(square_sum, (np.arange(4),), {"power": 2})
        second = cache.run(square_sum, (np.arange(4),), {"power": 2})
        assert not first.hit and second.hit and first.key == second.key
        assert len(CALLS) == 1
        assert second.result["total"] == 14.0 and np.array_equal(second.result["array"], np.arange(4) * 2)
        cache.run(square_sum, (np.arange(4),), {"power": 2}, no_cache=True)
        assert len(CALLS) == 2
    with ResultCache.open(f"lmdb:{tmp_path / 'res'}") as cache:
        assert cache.run(square_sum, (np.arange(4),), {"power": 2}).hit
        rows = cache.entries()
        assert [r["function"] for r in rows] == [f"{__name__}.square_sum"]
        assert cache.purge("cube_sum") == 0 and cache.purge("square_sum") == 1
        assert cache.entries() == [] and not cache.run(square_sum, (np.arange(4),), {"power": 2}).hit


def test_damaged_or_misfiled_record_is_a_miss(tmp_path) -> None:
    with ResultCache.open(str(tmp_path / "res")) as cache:
        out = cache.run(square_sum, (np.arange(3),), {})
        raw = bytearray(cache.store.get("memo/" + out.key))
        raw[-1] ^= 0xFF
        cache.store.put("memo/" + out.key, bytes(raw))
        assert cache.lookup(out.key) is None and cache.errors == 1
        other = cache.run(square_sum, (np.arange(5),), {})
        # A valid record under another job's key must not be served for it.
        cache.store.put("memo/" + out.key, cache.store.get("memo/" + other.key))
        assert cache.lookup(out.key) is None and cache.errors == 2
        assert not cache.run(square_sum, (np.arange(3),), {}).hit


def test_decorator_and_save_if(tmp_path) -> None:
    CALLS.clear()
    with ResultCache.open(str(tmp_path / "res")) as cache:
        fast = memoize(cache)(square_sum)
        assert fast([1, 2], power=3)["total"] == 9.0
        assert fast([1, 2], power=3)["total"] == 9.0
        assert len(CALLS) == 1
        kept_out = cache.run(square_sum, ([7],), {}, save_if=lambda r: False)
        assert not cache.run(square_sum, ([7],), {}, save_if=lambda r: False).hit and not kept_out.hit


def test_redis_and_memcached_stores(redis_server, memcached_server) -> None:
    for spec in (
        f"redis://{redis_server.host}:{redis_server.port}",
        f"memcached://{memcached_server.host}:{memcached_server.port}",
    ):
        with ResultCache.open(spec) as cache:
            cache.purge()
            assert not cache.run(square_sum, ([1, 2, 3],), {}).hit
            assert cache.run(square_sum, ([1, 2, 3],), {}).hit
            assert len(cache.entries()) == 1


def test_bad_store_spec() -> None:
    with pytest.raises(UserError, match="results store"):
        open_results_store("ftp://somewhere")


def test_http_view_is_read_only(tmp_path) -> None:
    with ResultCache.open(str(tmp_path / "res")) as cache:
        out = cache.run(square_sum, (np.arange(3),), {"power": 2})
        server = make_server(cache, 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            listing = json.load(urllib.request.urlopen(base + "/results"))
            assert [r["key"] for r in listing] == [out.key]
            record = json.load(urllib.request.urlopen(f"{base}/results/{out.key}"))
            assert record["result"] == {"total": 5.0, "array": [0, 2, 4]}
            for path, method, code in [
                (f"/results/{'0' * 64}", "GET", 404),
                ("/nothing", "GET", 404),
                ("/results", "POST", 405),
                (f"/results/{out.key}", "DELETE", 405),
            ]:
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(
                        urllib.request.Request(
                            base + path, method=method, data=b"" if method == "POST" else None
                        )
                    )
                assert err.value.code == code
            assert cache.lookup(out.key) is not None  # DELETE did nothing
        finally:
            server.shutdown()
            server.server_close()
    assert server.server_address[0] == "127.0.0.1"
