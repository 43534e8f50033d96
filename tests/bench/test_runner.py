"""The benchmark table and the runner every benchmark shares (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spidercache import bench
from spidercache.bench import runner
from spidercache.errors import UserError

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "spidercache", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_table_is_sorted_and_lazy():
    assert list(bench.BENCHMARKS) == sorted(bench.BENCHMARKS)
    code = "import sys, spidercache.bench as b; print(sorted(m for m in sys.modules if 'bench.' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC}
    )
    assert out.stdout.strip() == "[]"  # the table imports no benchmark


def test_unknown_and_missing_benchmarks_are_user_errors(monkeypatch):
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        bench.load("nope")
    monkeypatch.setitem(bench.BENCHMARKS, "ghost", "spidercache.bench.ghost:run")
    with pytest.raises(UserError, match="not in this build"):
        bench.load("ghost")


def test_timings_best_and_median():
    calls = []
    t = runner.timings(lambda: calls.append(1), 4, warmup=True)
    assert len(t) == 4 and len(calls) == 5 and min(t) >= 0
    assert runner.best_of(lambda: None, 3) <= runner.median_of(lambda: sum(range(10_000)), 3) + 1.0
    with pytest.raises(ValueError):
        runner.timings(lambda: None, 0)


def test_parse_options():
    assert runner.parse_options(["a=1", "b=0.5", "c=word", "d-e=true"]) == {
        "a": 1,
        "b": 0.5,
        "c": "word",
        "d_e": True,
    }
    with pytest.raises(UserError, match="key=value"):
        runner.parse_options(["novalue"])


def test_document_carries_info_and_rows():
    rows = runner.Rows([{"x": 1}], {"trace": {"requests": 3}})
    assert runner.document("demo", rows) == {
        "benchmark": "demo",
        "trace": {"requests": 3},
        "rows": [{"x": 1}],
    }


def test_cli_lists_runs_and_refuses(tmp_path):
    listing = _cli("bench", "--json")
    assert listing.returncode == 0, listing.stderr
    names = [r["name"] for r in json.loads(listing.stdout)]
    assert names == sorted(bench.BENCHMARKS)
    out = tmp_path / "k.json"
    run = _cli("bench", "kernels", "--n", "16", "--repeats", "1", "--no-gpu", "--json", "--out", str(out))
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)  # --json: the rows; --out: the run with its info
    assert [r["kernel"] for r in rows] == ["naive", "tiled", "torch.matmul"]
    assert json.loads(out.read_text()) == {"benchmark": "kernels", "rows": rows}
    for args, needle in (
        (("bench", "kernels", "--nope"), "--nope"),
        (("bench", "nope"), "unknown benchmark"),
    ):
        bad = _cli(*args)
        lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
        assert (
            bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
        )


def test_a_benchmarks_summary_is_printed_and_written(tmp_path, monkeypatch):
    import types

    rows = runner.Rows([{"case": "a", "x": 1}], {"summary": {"speedup": 2.5}})
    module = types.ModuleType("fake_summary_bench")

    def run():
        return rows

    run.__module__ = module.__name__
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(runner, "load", lambda name: run)
    said: list[str] = []
    runner.run_benchmark("fake", out=tmp_path / "f.json", log=said.append)
    assert 'summary: {"speedup": 2.5}' in said
    assert json.loads((tmp_path / "f.json").read_text())["summary"] == {"speedup": 2.5}
