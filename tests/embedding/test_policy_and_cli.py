import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from spidercache.embedding.models import ModelConfig, load_model
from spidercache.embedding.traces import GenConfig, generate
from spidercache.embedding.train import train
from spidercache.engine.ids import remap_trace
from spidercache.engine.policies import make_policy


def run_cli_inprocess(capsys, *args) -> tuple[int, str]:
    """The real entry point, in this process (a subprocess costs seconds of imports)."""
    from spidercache.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr().err


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "spidercache", *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("emb")
    keys = generate(GenConfig(tables=2, rows=2000, batch_size=16, batches=20, seed=0))
    np.save(d / "trace.npy", keys)
    train(
        keys,
        d / "model",
        ModelConfig(model="cache", steps=60, checkpoint_every=30, hidden_size=8, batch_size=512),
    )
    train(
        keys,
        d / "model" / "prefetch",
        ModelConfig(
            model="prefetch",
            steps=20,
            checkpoint_every=10,
            hidden_size=8,
            batch_size=512,
        ),
    )
    return d, keys


def test_learned_policies_keep_capacity_and_report_evictions(tiny):
    import spidercache.embedding.policy  # noqa: F401

    d, keys = tiny
    ids, n = remap_trace(keys)
    cache = load_model(d / "model")
    pre = load_model(d / "model" / "prefetch")
    for name, kw in (
        ("learned+offline", {}),
        ("learned", {}),
        (
            "learned+prefetch",
            {"prefetch_model": pre, "prefetch_share": 0.2, "prefetch_threshold": 0.0},
        ),
    ):
        evicted: list[int] = []
        pol = make_policy(
            name,
            200,
            n,
            model=cache,
            on_evict=lambda e, evicted=evicted: evicted.extend(e.tolist()),
            **kw,
        )
        for s in range(0, ids.size, 1000):
            batch = ids[s : s + 1000]
            hits = pol.access(batch)
            assert pol.size <= 200
            assert hits.shape == batch.shape
        st = pol.stats()
        assert st.requests == ids.size and 0 < st.hits < ids.size
        assert len(evicted) == st.evictions
        assert pol.resident_ids().size == pol.size
        if name == "learned+prefetch":
            assert st.prefetches > 0 and 0 <= st.prefetch_hits <= st.prefetches


def _python_lrfu(ids, capacity, tau):
    """Reference: evict the resident with the smallest decayed count now (ties: older key first)."""
    import math

    dec, seen, res, hits = {}, {}, set(), []
    for t, x in enumerate(ids.tolist()):
        dec[x] = dec[x] * math.exp((seen[x] - t) / tau) + 1.0 if x in seen else 1.0
        seen[x] = t
        if x in res:
            hits.append(True)
            continue
        hits.append(False)
        if len(res) >= capacity:
            # score fixed at last access: log(count) + t_last / tau (same order as the count now)
            res.remove(min(res, key=lambda r: math.log(dec[r]) + seen[r] / tau))
        res.add(x)
    return np.array(hits)


def test_decay_ordering_equals_python_lrfu_and_next_use_ordering_runs(tiny):
    import spidercache.embedding.policy  # noqa: F401

    d, keys = tiny
    ids, n = remap_trace(keys[:6000])
    cache = load_model(d / "model")
    pol = make_policy("learned+offline", 150, n, model=cache, model_weight=0.0, decay_tau=2.0)
    got = np.concatenate([pol.access(ids[s : s + 700]) for s in range(0, ids.size, 700)])
    assert np.array_equal(got, _python_lrfu(ids, 150, 2.0 * 150))
    # the model's offset changes decisions (a weight that did nothing would pass silently)
    weighted = make_policy("learned+offline", 150, n, model=cache, model_weight=3.0, decay_tau=2.0)
    other = np.concatenate([weighted.access(ids[s : s + 700]) for s in range(0, ids.size, 700)])
    assert not np.array_equal(other, got)
    old = make_policy("learned+offline", 150, n, model=cache, ordering="next_use")
    old.access(ids)
    assert old.size <= 150 and 0 < old.stats().hits < ids.size
    with pytest.raises(ValueError):
        make_policy("learned+offline", 150, n, model=cache, ordering="nope")


def test_eval_json_rows_and_gap(tiny):
    d, _ = tiny
    r = run_cli(
        "embed",
        "eval",
        d / "trace.npy",
        "--model",
        d / "model",
        "--policies",
        "lru,lfu,arc,s3fifo,opt,learned,learned+prefetch",
        "--cache-size",
        "0.1,300",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 14
    for row in rows:
        assert {
            "policy",
            "cache_size",
            "capacity",
            "requests",
            "hits",
            "hit_ratio",
            "gap_closed",
            "best_heuristic",
            "winner",
        } <= set(row)
    by = {(x["policy"], x["cache_size"]): x for x in rows}
    best = by[("lru", 0.1)]["best_heuristic"]
    assert by[(best, 0.1)]["gap_closed"] == 0.0 and by[("opt", 0.1)]["gap_closed"] == 1.0
    top = max(
        (x for x in rows if x["cache_size"] == 0.1 and x["policy"] != "opt"),
        key=lambda x: x["hit_ratio"],
    )
    assert by[("lru", 0.1)]["winner"] == top["policy"]
    assert by[("opt", 300)]["capacity"] == 300
    assert by[("opt", 0.1)]["hit_ratio"] >= by[("learned", 0.1)]["hit_ratio"]


def test_gen_optgen_sample_commands(tmp_path):
    r = run_cli(
        "embed",
        "gen",
        "-o",
        tmp_path / "t.npy",
        "--tables",
        "2",
        "--rows",
        "500",
        "--batches",
        "5",
        "--batch-size",
        "8",
    )
    assert r.returncode == 0, r.stderr
    keys = np.load(tmp_path / "t.npy")
    r = run_cli(
        "embed",
        "optgen",
        tmp_path / "t.npy",
        "--cache-size",
        "0.1",
        "-o",
        tmp_path / "l.npy",
    )
    assert r.returncode == 0, r.stderr
    labels = np.load(tmp_path / "l.npy")
    assert labels.size == keys.size and labels.dtype.names == (
        "hit",
        "keep",
        "next_use_distance",
    )
    r = run_cli(
        "embed",
        "sample",
        tmp_path / "t.npy",
        "-o",
        tmp_path / "s",
        "--rate",
        "0.5",
        "--batch-lookups",
        "50",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "sample_0.npy").exists()


def test_bad_input_is_one_line_exit_2(tmp_path, tiny, capsys):
    d, _ = tiny
    np.save(tmp_path / "neg.npy", np.array([3, -1, 4]))
    (tmp_path / "odd.bin").write_bytes(b"\x00\x01not a trace\xff")
    torch.save({"indices": torch.arange(3)}, tmp_path / "bad.pt")
    notes = tmp_path / "embedding.md"
    notes.write_text("# hand-written analysis\n")
    cases = [
        ("embed", "optgen", tmp_path / "neg.npy", "-o", tmp_path / "x.npy"),
        ("embed", "optgen", tmp_path / "bad.pt", "-o", tmp_path / "x.npy"),
        (
            "embed",
            "optgen",
            d / "trace.npy",
            "--cache-size",
            "0",
            "-o",
            tmp_path / "x.npy",
        ),
        ("embed", "eval", d / "trace.npy", "--policies", "lru", "--cache-size", "0"),
        ("embed", "eval", d / "trace.npy", "--policies", "lru,nosuch"),
        (
            "embed",
            "train",
            "--model",
            "cache",
            "--trace",
            d / "trace.npy",
            "--out",
            d / "model",
            "--resume",
            "--hidden-size",
            "16",
        ),
        (
            "embed",
            "eval",
            d / "trace.npy",
            "--model",
            d / "model" / "prefetch",
            "--policies",
            "learned",
        ),
        ("embed", "eval", d / "trace.npy", "--policies", "learned+offline"),
        ("embed", "eval", tmp_path / "odd.bin"),
        ("embed", "headroom", "--cache-size", "0"),
        ("embed", "headroom", "--samples", "0"),
        ("embed", "headroom", "--drift", "1.5"),
        # the benchmark never writes over hand-written notes (refused before any work)
        ("bench", "embed", "--requests", "1000", "--docs-path", notes),
    ]
    for args in cases:
        code, err = run_cli_inprocess(capsys, *args)
        assert code == 2, (args, err)
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, err)
    assert notes.read_text() == "# hand-written analysis\n"


def test_kill_minus_9_then_resume_equals_uninterrupted(tmp_path):
    keys = generate(GenConfig(tables=2, rows=1000, batch_size=8, batches=10, seed=5))
    np.save(tmp_path / "t.npy", keys)
    args = [
        "--model",
        "cache",
        "--trace",
        tmp_path / "t.npy",
        "--steps",
        "1500",
        "--checkpoint-every",
        "300",
        "--hidden-size",
        "8",
        "--batch-size",
        "256",
        "--seed",
        "7",
    ]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spidercache",
            "embed",
            "train",
            *map(str, args),
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert step < 1500, "the run finished before it could be killed"
    assert not (out / "model.pt").exists()
    r = run_cli("embed", "train", *args, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "straight"
    r = run_cli("embed", "train", *args, "--out", ref)
    assert r.returncode == 0, r.stderr
    a, b = load_model(out), load_model(ref)
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k
    assert (out / "loss.png").exists() and json.loads((out / "config.json").read_text())["seed"] == 7


def test_family_then_eval_without_a_model_names_the_winner(tmp_path, capsys):
    code, err = run_cli_inprocess(
        capsys,
        "embed",
        "family",
        "dlrm-c",
        "-o",
        tmp_path / "f.npy",
        "--requests",
        "30000",
    )
    assert code in (0, None), err
    from spidercache.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["embed", "eval", str(tmp_path / "f.npy"), "--cache-size", "0.1", "--json"])
    assert exc.value.code in (0, None)
    rows = json.loads(capsys.readouterr().out)
    by = {r["policy"]: r for r in rows}
    assert set(by) == {"lru", "lfu", "arc", "s3fifo", "opt", "learned"}
    best = by["learned"]["best_heuristic"]
    assert by[best]["hit_ratio"] == max(by[h]["hit_ratio"] for h in ("lru", "lfu", "arc", "s3fifo"))
    from spidercache.embedding.adaptive import DEFAULT_EXPERTS

    assert by["learned"]["leader"] in DEFAULT_EXPERTS
    assert by["learned"]["hit_ratio"] >= by[best]["hit_ratio"] - 0.02  # a short trace: warm-up included
