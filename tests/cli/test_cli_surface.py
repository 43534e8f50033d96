"""What every command shares: bad flags end in one `error:` line and exit 2; help and
tables are never cut when stdout is a pipe (issue 14)."""

import subprocess
import sys

import pytest


def spidercache(*args):
    # stdout and stderr are pipes here, as in CI logs and `| grep`.
    return subprocess.run(
        [sys.executable, "-m", "spidercache", *args], capture_output=True, text=True, timeout=120
    )


# Bad flag values that typer used to answer with a multi-line usage box.
BAD_USAGE = [
    ("trace", "gen", "zipf", "--keys", "abc"),
    ("embed", "gen", "--alpha", "abc"),
    ("train", "--lr", "abc"),
    ("gati", "serve", "--port", "99999"),
    ("session", "destroy", "-1"),
    ("sim", "--no-such-flag"),
    ("no-such-command",),
]


@pytest.mark.parametrize("argv", BAD_USAGE, ids=lambda a: " ".join(a))
def test_bad_usage_is_one_error_line(argv):
    proc = spidercache(*argv)
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "Usage:" not in out and "╭" not in out, out
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_help_in_a_pipe_is_whole_and_plain():
    proc = spidercache("store", "check", "--help")  # its text holds `[/prefix]`, which rich took for markup
    assert proc.returncode == 0, proc.stderr
    assert "[/prefix]" in proc.stdout
    proc = spidercache("train", "-h")
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "<bool>" not in proc.stdout
    assert "--storage-latency-ms" in proc.stdout


def test_group_without_command_shows_its_help():
    proc = spidercache("trace")
    assert proc.returncode == 0, proc.stderr
    assert "Commands:" in proc.stdout and "gen" in proc.stdout


def test_tables_in_a_pipe_are_not_cut():
    from spidercache.cli.output import console

    con = console()
    assert con.width >= 1000  # stdout is captured by pytest: not a terminal


def test_doctor_reports_every_part_on_one_line_each():
    proc = spidercache("doctor", "--json")
    import json

    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    for name in (
        "python",
        "torch",
        "numba",
        "redis-server",
        "memcached",
        "fashion-mnist",
        "shared memory",
        "gpu",
    ):
        assert name in checks
    # the test machines have what `make test` installs
    assert checks["redis-server"]["status"] == "ok" and checks["torch"]["status"] == "ok"
    assert proc.returncode == (1 if any(c["status"] == "missing" for c in checks.values()) else 0)
    lines = spidercache("doctor").stdout.splitlines()
    assert len(lines) == len(checks)


def test_top_level_exports_load_lazily():
    code = (
        "import sys, spidercache; assert 'torch' not in sys.modules; "
        "from spidercache import Cache, make_policy, open_store, UserError; "
        "c = Cache(make_policy('lru', 4), open_store('memory:1')); "
        "assert c.get_or_load([1, 2], lambda ids: [bytes([i]) for i in ids]) == [b'\\x01', b'\\x02']; "
        "assert 'torch' not in sys.modules; "
        "assert set(spidercache.__all__) >= "
        "{'CachedLoader', 'CachedEmbeddingBag', 'WeightCache', 'DatasetCache'}"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_top_level_export_resolves():
    import spidercache

    for name in spidercache.__all__:
        assert getattr(spidercache, name) is not None, name


def test_historical_underscore_flags_are_hidden_aliases():
    from spidercache.cli import canonical_flags

    argv = [
        "train",
        "--batch_size",
        "64",
        "--working_set_size=0.2",
        "--cache_nodes",
        "2",
        "a_b",
        "--",
        "--x_y",
    ]
    assert canonical_flags(argv) == [
        "train",
        "--batch-size",
        "64",
        "--working-set=0.2",
        "--cache-nodes",
        "2",
        "a_b",
        "--",
        "--x_y",
    ]
    proc = spidercache("train", "--batch_size", "abc")
    assert proc.returncode == 2 and "--batch-size" in proc.stderr, proc.stderr
    help_text = spidercache("train", "--help").stdout
    assert (
        "--batch-size" in help_text
        and "--batch_size" not in help_text
        and "--working_set_size" not in help_text
    )


def test_front_end_packages_export_their_classes():
    from spidercache.weights import ResultCache, WeightCache, memoize

    assert WeightCache.__name__ == "WeightCache" and ResultCache and memoize


def test_model_means_one_thing_per_command():
    """`--model` used to name a network, a checkpoint, a folder or a model kind: each command now says
    which, and the old spelling is a hidden alias in that command only."""
    from spidercache.cli import canonical_flags

    assert canonical_flags(["gati", "build", "--model", "b.pt"]) == ["gati", "build", "--checkpoint", "b.pt"]
    assert canonical_flags(["gati", "bench", "--model=small"]) == ["gati", "bench", "--network=small"]
    assert canonical_flags(["embed", "train", "--model", "cache"]) == ["embed", "train", "--kind", "cache"]
    assert canonical_flags(["embed", "eval", "t.npy", "--model", "d"]) == [
        "embed",
        "eval",
        "t.npy",
        "--model-dir",
        "d",
    ]
    assert canonical_flags(["sim", "--model", "x"]) == ["sim", "--model", "x"]  # nowhere else
    assert "--checkpoint" in spidercache("gati", "serve", "--help").stdout
    assert "--model" not in spidercache("gati", "build", "--help").stdout
