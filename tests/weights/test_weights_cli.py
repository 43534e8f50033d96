"""CLI of the weights front-end: one line and exit 2 for user mistakes; listings as JSON."""

from __future__ import annotations

import json

import pytest
import torch

from spidercache.cli import main
from spidercache.weights.memo import ResultCache
from spidercache.weights.weight_cache import WeightCache


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize(
    "argv,match",
    [
        (["mapreduce", "train", "--job", "bad job", "--data", "synthetic"], "job name"),
        (["mapreduce", "train", "--start", "sideways", "--data", "synthetic"], "unknown start"),
        (
            ["mapreduce", "train", "--servers", "127.0.0.1:1", "--data", "synthetic", "--no-cache"],
            "does not answer",
        ),
        (["mapreduce", "weights", "job", "--servers", "nohost"], "not HOST:PORT"),
        (["results", "list", "--store", "ftp://x"], "results store"),
        (["bench", "weights", "--repeats", "0"], "at least 1"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(argv, match, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPIDERCACHE_RESULTS", str(tmp_path / "res"))
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_weights_listing(memcached_pool, key_prefix, capsys) -> None:
    servers = ",".join(f"{h}:{p}" for h, p in memcached_pool.servers)
    with WeightCache(servers) as cache:
        cache.put(key_prefix, "node01", {"w": torch.ones(10)}, fitness=0.25)
    code, out, _ = _run(["mapreduce", "weights", key_prefix, "--servers", servers, "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    assert [(r["node"], r["version"], r["fitness"], r["layers"]) for r in rows] == [("node01", 1, 0.25, 1)]


def add(a, b):
    return a + b


def test_results_list_and_purge(tmp_path, capsys) -> None:
    store = str(tmp_path / "res")
    with ResultCache.open(store) as cache:
        cache.run(add, (1, 2))
    code, out, _ = _run(["results", "list", "--store", store, "--json"], capsys)
    assert code == 0 and [r["function"] for r in json.loads(out)] == [f"{__name__}.add"]
    code, out, _ = _run(["results", "purge", "--store", store], capsys)
    assert code == 0 and "purged 1" in out
