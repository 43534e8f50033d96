"""Issue 14, item 1: a table of bad inputs over every command group.

Every case must end before any work starts, with exit status 2, exactly one
non-empty stderr line starting ``error: ``, nothing on stdout (no progress line
before the error), no traceback and no usage box. The cases run as subprocesses,
a few at once, in a scratch directory with its own HOME and SPIDERCACHE_HOME, so
a command that wrongly starts work writes nothing outside it.

Placeholders in a case: {tmp} the scratch folder, {port} a loopback port nothing
listens on (a new one per case), {dir} an existing folder, {text_npy} / {text_pt} / {text_npz} text
files named as binary formats, {empty} an empty trace, {trace} a small valid
trace, {csv} a small CSV trace, {big_csv} a CSV whose key is >= 2**63, {img} a
valid .npy image, {tree} an ImageFolder root whose test/ has a class its train/ has not,
{neg_npz} a .npz whose labels are -1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spidercache.engine.stores.launch import free_port

SRC = str(Path(__file__).resolve().parents[2] / "src")
MS = ("-m", "spidercache.cli.mindspore")
FORBIDDEN = "/proc/forbidden/x"
TIMEOUT = 90  # seconds; a bad input is answered in a few

CASES: list[tuple[str, ...]] = [
    # demo / doctor
    ("demo", "--epochs", "-1"),
    ("demo", "--epochs", "abc"),
    ("demo", "--train-samples", "0"),
    ("demo", "--test-samples", "-5"),
    ("demo", "--plot", FORBIDDEN + ".png"),
    ("doctor", "--bogus"),
    ("doctor", "extra-argument"),
    # train
    ("train", "--epochs", "-1"),
    ("train", "--batch-size", "0"),
    ("train", "--lr", "abc"),
    ("train", "--lr", "-0.1"),
    ("train", "--working-set", "0"),
    ("train", "--working-set", "1.5"),
    ("train", "--cache-bytes", "0"),
    *[("train", "--policy-option", o) for o in ("ratio=5", "k=0", "rotate=maybe", "bogus=1")],
    ("train", "--policy", "shade", "--policy-option", "rep_factr=1"),
    ("train", "--network", "nosuchnet"),
    ("train", "--policy", "nosuchpolicy"),
    ("train", "--cache-backend", "nosuchbackend"),
    ("train", "--cache-backend", "lmdb", "--lmdb-path", FORBIDDEN),
    ("train", "--device", "bogus"),
    ("train", "--cache-backend", "redis", "--port-num", "0"),
    ("train", "--cache-backend", "redis", "--port-num", "65536"),
    ("train", "--cache-backend", "redis", "--port-num", "{port}"),
    ("train", "--cache-backend", "server", "--server-port", "{port}", "--session", "1"),
    ("train", "--cache-backend", "memcached", "--memcached-servers", "127.0.0.1:{port}"),
    ("train", "/nonexistent/dataset"),
    ("train", "{text_npz}"),
    ("train", "--config", "/nonexistent/config.toml"),
    ("train", "--config", "{dir}"),
    ("train", "--workers", "-1"),
    ("train", "--threads", "-1"),
    ("train", "--cache-bytes", "-1"),
    ("train", "--image-size", "0"),
    ("train", "--storage-latency-ms", "-1"),
    ("train", "--cache", "nosuchmode"),
    ("train", "--policy-option", "novalue"),
    ("train", "--cache-nodes", "0"),
    ("train", "--train-samples", "-1"),
    # trace
    ("trace", "gen", "zipf", "--keys", "abc", "-o", "{tmp}/t.npy"),
    ("trace", "gen", "zipf", "--keys", "0", "-o", "{tmp}/t.npy"),
    ("trace", "gen", "zipf", "--requests", "-1", "-o", "{tmp}/t.npy"),
    ("trace", "gen", "zipf", "--alpha", "-1", "-o", "{tmp}/t.npy"),
    ("trace", "gen", "zipf", "--keys", "10", "--requests", "10", "-o", FORBIDDEN + ".npy"),
    ("trace", "gen", "uniform", "--keys", "-3", "-o", "{tmp}/t.npy"),
    ("trace", "gen", "block", "--requests", "0", "-o", "{tmp}/t.npy"),
    ("trace", "gen", "nosuchkind", "-o", "{tmp}/t.npy"),
    ("trace", "convert", "/nonexistent.npy", "-o", "{tmp}/c.npy"),
    ("trace", "convert", "{text_npy}", "-o", "{tmp}/c.npy"),
    ("trace", "convert", "{dir}", "-o", "{tmp}/c.npy"),
    ("trace", "convert", "{trace}", "-o", FORBIDDEN + ".npy"),
    ("trace", "convert", "{csv}", "--column", "nosuchcolumn", "-o", "{tmp}/c.npy"),
    ("trace", "convert", "{trace}", "--format", "nosuchformat", "-o", "{tmp}/c.npy"),
    # sim
    ("sim", "/nonexistent.npy"),
    ("sim", "{dir}"),
    ("sim", FORBIDDEN),
    ("sim", "{text_npy}"),
    ("sim", "{empty}"),
    ("sim", "{trace}", "--policy", "nosuchpolicy"),
    ("sim", "{trace}", "--cache-size", "0"),
    ("sim", "{trace}", "--cache-size", "-1"),
    ("sim", "{trace}", "--cache-size", "abc"),
    ("sim", "{trace}", "--cache-size", "inf"),
    ("sim", "{big_csv}"),
    ("sim", "{trace}", "--format", "nosuchformat"),
    ("sim", "{trace}", "--workers", "-1"),
    ("sim", "{csv}", "--column", "nosuchcolumn"),
    # store
    ("store", "check", "nosuch:spec"),
    ("store", "check", "memory:-1"),
    ("store", "check", "memory:abc"),
    ("store", "check", "memory:100000000000"),
    ("store", "check", "lmdb:" + FORBIDDEN),
    ("store", "check", "spill:abc:{tmp}/spill"),
    ("store", "check", "redis://127.0.0.1:{port}"),
    ("store", "check", "redis://127.0.0.1:0"),
    ("store", "check", "redis://127.0.0.1:65536"),
    ("store", "check", "memcached://127.0.0.1:{port}"),
    ("store", "check", "server://127.0.0.1:{port}/1"),
    ("store", "check", "memory", "--value-bytes", "0"),
    # bench, each benchmark
    ("bench", "nosuchbenchmark"),
    ("bench", "sim", "--trace", "/nonexistent.npy"),
    ("bench", "sim", "--requests", "-1"),
    ("bench", "sim", "--policy", "nosuchpolicy"),
    ("bench", "sim", "--kind", "nosuchkind"),
    ("bench", "sim", "--repeat", "0"),
    ("bench", "embed", "--requests", "-1"),
    ("bench", "embed", "--steps", "abc"),
    ("bench", "epochs", "--n", "0"),
    ("bench", "epochs", "--storage-latency-ms", "-1"),
    ("bench", "epochs", "--file-px", "0"),
    ("bench", "epochs", "--threads", "-1"),
    ("bench", "epochs", "--cases", "nosuchcase"),
    ("bench", "kernels", "--n", "-1"),
    ("bench", "kernels", "--repeats", "0"),
    ("bench", "loader", "--n", "-1"),
    ("bench", "loader", "--cases", "nosuchcase"),
    ("bench", "server", "--items", "0"),
    ("bench", "server", "--value-bytes", "abc"),
    ("bench", "spider", "--mode", "nosuchmode"),
    ("bench", "spider", "--policies", "nosuchpolicy"),
    ("bench", "train", "--dataset", "/nonexistent/dataset"),
    ("bench", "train", "--policies", "nosuchpolicy"),
    ("bench", "train", "--working-set", "0"),
    ("bench", "weights", "--servers", "127.0.0.1:{port}"),
    ("bench", "weights", "--data", "nosuchdata"),
    ("bench", "gati", "--epsilons", "abc"),
    ("bench", "gati", "--checkpoint", "/nonexistent.pt"),
    ("bench", "gati", "--model", "nosuchnet"),
    ("bench", "gati", "--precision", "fp16"),
    ("bench", "gati", "--holdout", "1.5"),
    ("bench", "gati", "--folds", "1"),
    # server
    ("server", "start", "-m", "100000G", "-p", "{port}"),
    ("server", "start", "-m", "abc", "-p", "{port}"),
    ("server", "start", "-m", "0", "-p", "{port}"),
    ("server", "start", "-p", "0"),
    ("server", "start", "-p", "65536"),
    ("server", "start", "-s", FORBIDDEN, "-p", "{port}"),
    ("server", "start", "-w", "0", "-p", "{port}"),
    ("server", "start", "--max-message-mb", "100000", "-p", "{port}"),
    ("server", "start", "--policy", "nosuchpolicy", "-p", "{port}"),
    ("server", "start", "--log-level", "nosuchlevel", "-p", "{port}"),
    ("server", "start", "--max-sessions", "0", "-p", "{port}"),
    ("server", "stop", "-p", "{port}"),
    ("server", "status", "-p", "{port}"),
    ("server", "status", "-p", "abc"),
    ("server", "status", "-p", "65536"),
    # session
    ("session", "new", "-p", "{port}"),
    ("session", "new", "-m", "abc", "-p", "{port}"),
    ("session", "list", "-p", "{port}"),
    ("session", "stats", "abc"),
    ("session", "stats", "1", "-p", "{port}"),
    ("session", "destroy", "-1"),
    ("session", "destroy", "1", "-p", "0"),
    # gati
    ("gati", "train-base", "--out", "{tmp}/b.pt", "--network", "nosuchnet"),
    ("gati", "train-base", "--out", "{tmp}/b.pt", "--epochs", "0"),
    ("gati", "train-base", "--out", FORBIDDEN + ".pt"),
    ("gati", "train-base", "--out", "{tmp}/b.pt", "--dataset", "/nonexistent/dataset"),
    ("gati", "train-base", "--out", "{tmp}/b.pt", "--device", "bogus"),
    ("gati", "train-base", "--out", "{tmp}/b.pt", "--precision", "fp16"),
    ("gati", "build", "--model", "/nonexistent.pt", "--out", "{tmp}/heads"),
    ("gati", "build", "--model", "{text_pt}", "--out", "{tmp}/heads"),
    ("gati", "build", "--model", "{dir}", "--out", "{tmp}/heads"),
    ("gati", "serve", "--model", "/nonexistent.pt", "--caches", "{dir}"),
    ("gati", "serve", "--model", "{text_pt}", "--caches", "{dir}", "--port", "99999"),
    ("gati", "serve", "--model", "{text_pt}", "--caches", "{dir}", "--port", "-1"),
    ("gati", "serve", "--model", "{text_pt}", "--caches", "{dir}", "--batch-chunks", "0"),
    ("gati", "serve", "--model", "{text_pt}", "--caches", "{dir}", "--folds", "1"),
    ("gati", "query", "/nonexistent.png"),
    ("gati", "query", "{text_npy}"),
    ("gati", "query", "{img}", "--address", "127.0.0.1:{port}", "--timeout", "2"),
    ("gati", "query", "{img}", "--address", "nohostport"),
    ("gati", "query", "{img}", "--timeout", "-1"),
    ("gati", "eval", "--model", "/nonexistent.pt"),
    ("gati", "eval", "--model", "{text_pt}"),
    ("gati", "bench", "--epsilons", "abc"),
    # embed
    ("embed", "gen", "-o", "{tmp}/e.npy", "--tables", "0"),
    ("embed", "gen", "-o", "{tmp}/e.npy", "--rows", "-1"),
    ("embed", "gen", "-o", "{tmp}/e.npy", "--alpha", "abc"),
    ("embed", "gen", "-o", "{tmp}/e.npy", "--batches", "0"),
    ("embed", "gen", "-o", FORBIDDEN + ".npy", "--batches", "1"),
    ("embed", "family", "nosuchfamily", "-o", "{tmp}/f.npy"),
    ("embed", "family", "zipf-0.8", "-o", "{tmp}/f.npy", "--requests", "0"),
    ("embed", "sample", "/nonexistent.npy", "-o", "{tmp}/s"),
    ("embed", "sample", "{trace}", "-o", "{tmp}/s", "--rate", "0"),
    ("embed", "sample", "{trace}", "-o", "{tmp}/s", "--rate", "2"),
    ("embed", "optgen", "/nonexistent.npy", "-o", "{tmp}/l.npy"),
    ("embed", "optgen", "{text_npy}", "-o", "{tmp}/l.npy"),
    ("embed", "optgen", "{trace}", "-o", "{tmp}/l.npy", "--cache-size", "0"),
    ("embed", "train", "--model", "nosuchmodel", "--trace", "{trace}", "--out", "{tmp}/m"),
    ("embed", "train", "--model", "cache", "--trace", "/nonexistent.npy", "--out", "{tmp}/m"),
    ("embed", "train", "--model", "cache", "--trace", "{trace}", "--out", "{tmp}/m", "--steps", "-1"),
    ("embed", "train", "--model", "cache", "--trace", "{trace}", "--out", "{tmp}/m", "--config", "/no.json"),
    ("embed", "eval", "{trace}", "--policies", "nosuchpolicy"),
    ("embed", "eval", "{trace}", "--cache-size", "0"),
    ("embed", "eval", "/nonexistent.npy"),
    ("embed", "eval", "{csv}", "--column", "nosuchcolumn"),
    ("embed", "optgen", "{csv}", "-o", "{tmp}/l.npy", "--format", "nosuchformat"),
    ("embed", "eval", "{trace}", "--model", "/nonexistent/model"),
    ("embed", "headroom", "--requests", "0"),
    ("embed", "headroom", "--cache-size", "0"),
    ("embed", "headroom", "--samples", "0"),
    # mapreduce
    ("mapreduce", "train", "--nodes", "0"),
    ("mapreduce", "train", "--rounds", "-1"),
    ("mapreduce", "train", "--local-mb", "-1"),
    ("mapreduce", "train", "--start", "nosuchstart"),
    ("mapreduce", "train", "--reduce", "nosuchreduce"),
    ("mapreduce", "train", "--network", "nosuchnet"),
    ("mapreduce", "train", "--data", "nosuchdata"),
    ("mapreduce", "train", "--servers", "127.0.0.1:{port}"),
    ("mapreduce", "train", "--results", "nosuch:x"),
    ("mapreduce", "train", "--batch-size", "0"),
    ("mapreduce", "train", "--data-root", "/nonexistent/fmnist"),
    ("mapreduce", "weights", "job", "--servers", "127.0.0.1:{port}"),
    ("mapreduce", "weights", "job", "--servers", "abc"),
    # results
    ("results", "list", "--store", "nosuch:x"),
    ("results", "list", "--store", "lmdb:" + FORBIDDEN),
    ("results", "list", "--store", "redis://127.0.0.1:{port}"),
    ("results", "purge", "--store", "memcached://127.0.0.1:{port}"),
    ("results", "serve", "--port", "65536"),
    ("results", "serve", "--port", "-1"),
    ("results", "serve", "--store", "lmdb:" + FORBIDDEN),
    # MindSpore's command lines
    (*MS, "ms_cache_server", "start", "-m", "100000G", "-p", "{port}"),
    (*MS, "ms_cache_server", "start", "-p", "65536"),
    (*MS, "ms_cache_server", "start", "-d", FORBIDDEN, "-p", "{port}"),
    (*MS, "ms_cache_server", "stop", "-p", "{port}"),
    (*MS, "ms_cache_server", "session", "-p", "{port}"),
    (*MS, "ms_cache_server", "session", "-m", "abc", "-p", "{port}"),
    (*MS, "ms_cache_server", "nosuchcommand"),
    (*MS, "cache_admin"),
    (*MS, "cache_admin", "--start", "-m", "2", "-p", "{port}"),
    (*MS, "cache_admin", "--start", "-l", "9", "-p", "{port}"),
    (*MS, "cache_admin", "--start", "-w", "0", "-p", "{port}"),
    (*MS, "cache_admin", "--list_sessions", "-p", "{port}"),
    (*MS, "cache_admin", "-d", "abc", "-p", "{port}"),
    (*MS, "cache_admin", "--server_info", "-p", "0"),
    (*MS, "nosuchtool"),
    # outputs written at the end of a run, checked before it; more store and port forms
    ("train", "--checkpoint-dir", FORBIDDEN),
    ("train", "{tree}/train", "--epochs", "1"),  # a test class training has not
    ("train", "{neg_npz}", "--epochs", "1", "--workers", "0"),  # labels -1
    ("train", "--epoch-log", FORBIDDEN + ".jsonl"),
    ("train", "--config", "{text_npy}"),
    ("demo", "--epochs", "0"),
    ("mapreduce", "train", "--scheduler", "127.0.0.1:{port}"),
    ("mapreduce", "train", "--plot", FORBIDDEN + ".png"),
    ("mapreduce", "train", "--workers", "0"),
    ("bench", "sim", "--docs-path", FORBIDDEN + ".md"),
    ("bench", "sim", "--out", FORBIDDEN + ".json"),
    ("bench", "train", "--plot", FORBIDDEN + ".png"),
    ("bench", "embed", "--bag-steps", "0"),
    ("bench", "kernels", "--out", FORBIDDEN + ".json"),
    ("bench", "spider", "--mode", "report"),
    ("bench", "server", "--in-flight", "0"),
    ("bench", "gati", "--batches", "0"),
    ("store", "check", "lmdb:{text_npy}"),
    ("store", "check", "spill:10:" + FORBIDDEN),
    ("store", "check", "memcached://127.0.0.1:abc"),
    ("store", "check", "redis-cluster://127.0.0.1:{port}"),
    ("gati", "query", "{img}", "--address", "127.0.0.1:0"),
    ("gati", "query", "{img}", "--address", "127.0.0.1:65536"),
    ("embed", "gen", "-o", "{dir}", "--batches", "1"),
    ("embed", "sample", "{trace}", "-o", "{text_npy}"),
    ("embed", "optgen", "{trace}", "-o", "{dir}"),
    ("embed", "gen", "-o", "{tmp}/e.npy", "--batches", "1", "--seed", "-1"),
    ("embed", "family", "zipf-0.8", "-o", "{tmp}/f.npy", "--seed", "-1"),
    ("embed", "sample", "{trace}", "-o", "{tmp}/s", "--seed", "-1"),
    ("embed", "train", "--kind", "cache", "--trace", "{trace}", "--out", "{tmp}/m", "--seed", "-1"),
    ("embed", "train", "--kind", "nosuchkind", "--trace", "{trace}", "--out", "{tmp}/m"),
    ("embed", "headroom", "--seed", "-1"),
    ("embed", "gen", "-o", "{tmp}/e.npy", "--batches", "2", "--rows", "100", "--pooling", "inf"),
    ("embed", "gen", "-o", "{tmp}/e.npy", "--batches", "2", "--rows", "100", "--burst-rate", "inf"),
    ("session", "new", "-m", "100000G", "-p", "{port}"),
    (*MS, "ms_cache_server", "session", "-m", "100000G", "-p", "{port}"),
    (*MS, "cache_admin", "--start", "-m", "0", "-p", "{port}"),
    (*MS, "cache_admin", "-d", "1", "-p", "65536"),
]


def _argv(case: tuple[str, ...]) -> list[str]:
    return list(case) if case[0] == "-m" else ["-m", "spidercache", *case]


def make_inputs(tmp: Path) -> dict[str, str]:
    """The files and the free port the cases name, made under ``tmp``."""
    (tmp / "dir").mkdir()
    for name in ("text.npy", "text.pt", "train.npz"):
        (tmp / name).write_text("this is text, not the format its name says\n")
    np.save(tmp / "empty.npy", np.zeros(0, dtype=np.int64))
    np.save(tmp / "trace.npy", np.arange(200, dtype=np.int64) % 17)
    np.save(tmp / "img.npy", np.zeros((28, 28), dtype=np.float32))
    (tmp / "trace.csv").write_text("key,size\n" + "".join(f"{i % 7},100\n" for i in range(50)))
    (tmp / "big.csv").write_text("key\n1\n9223372036854775808\n2\n")
    np.savez(tmp / "neg.npz", x=np.zeros((10, 3, 16, 16), np.uint8), y=-np.ones(10))
    for cls in ("train/a", "train/b", "test/zebra"):
        (tmp / "tree" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp / "tree" / cls / "0.png")
    return {
        "tmp": str(tmp),
        "dir": str(tmp / "dir"),
        "text_npy": str(tmp / "text.npy"),
        "text_pt": str(tmp / "text.pt"),
        "text_npz": str(tmp / "train.npz"),
        "empty": str(tmp / "empty.npy"),
        "trace": str(tmp / "trace.npy"),
        "img": str(tmp / "img.npy"),
        "csv": str(tmp / "trace.csv"),
        "big_csv": str(tmp / "big.csv"),
        "tree": str(tmp / "tree"),
        "neg_npz": str(tmp / "neg.npz"),
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    return make_inputs(tmp_path_factory.mktemp("badin"))


def run_case(case: tuple[str, ...], inputs: dict[str, str]) -> str | None:
    """None when the case keeps the rule, else what broke it."""
    # a port of its own: a case that wrongly started a server cannot answer for the next one
    argv = [a.format(**{**inputs, "port": str(free_port())}) for a in _argv(case)]
    home = inputs["tmp"] + "/home"
    env = dict(os.environ, PYTHONPATH=SRC, HOME=home, SPIDERCACHE_HOME=home + "/state", COLUMNS="100")
    env.pop("SPIDERCACHE_TOKEN", None)
    # its own process group: a case that wrongly starts work (servers included) is ended whole
    proc = subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=inputs["tmp"],
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return f"still running after {TIMEOUT} s (work started, or a hang)"
    lines = [line for line in stderr.splitlines() if line.strip()]
    problems = []
    if proc.returncode != 2:
        problems.append(f"exit {proc.returncode}")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"stderr {lines[:4]!r}")
    if stdout.strip():
        problems.append(f"stdout {stdout.strip().splitlines()[:2]!r}")
    if "Traceback" in stdout + stderr or "Usage:" in stdout + stderr:
        problems.append("traceback or usage")
    return "; ".join(problems) or None


def test_table_is_big_and_covers_every_command_group():
    assert len(CASES) >= 120
    groups = {c[0] for c in CASES if c[0] != "-m"} | {c[2] for c in CASES if c[0] == "-m"}
    want = {"demo", "doctor", "train", "trace", "sim", "store", "bench", "server", "session", "gati"}
    want |= {"embed", "mapreduce", "results", "ms_cache_server", "cache_admin"}
    assert want <= groups
    bench = {c[1] for c in CASES if c[0] == "bench"}
    from spidercache.bench import BENCHMARKS

    assert set(BENCHMARKS) <= bench


def test_every_bad_input_is_one_error_line(inputs):
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: run_case(case, inputs), CASES))
    failures = [f"{' '.join(case)}: {why}" for case, why in zip(CASES, results) if why]
    assert not failures, f"{len(failures)} of {len(CASES)} cases break the rule:\n" + "\n".join(failures)
