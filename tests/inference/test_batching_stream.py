"""Batched serving (same answers, real batches, throughput) and the shifting-stream retraining figures."""

import numpy as np
import pytest
import torch
from gati_synthetic import make_images

from spidercache.inference.batching import Batcher
from spidercache.inference.loadtest import compare_serving, concurrent_load
from spidercache.inference.runtime import Exit, GatiRuntime
from spidercache.inference.stream import drift_stream, shift_images


def runtime(tiny_base, tiny_exploration, threshold=0.9):
    exits = [
        Exit(h.unit, h.name, tiny_exploration.build_head(i), threshold)
        for i, h in enumerate(tiny_exploration.heads)
        if h.variant == "pool2_mlp"
    ]
    return GatiRuntime(tiny_base, exits)


@pytest.mark.parametrize("parallel", [1, 3])
def test_batcher_answers_each_request_as_the_runtime_does(tiny_base, tiny_exploration, parallel):
    rt = runtime(tiny_base, tiny_exploration)
    x, _ = make_images(24, seed=41)
    xt = tiny_base.preprocess(x)
    want = rt.predict(xt)
    batcher = Batcher(rt, window_ms=50.0, max_batch=8, parallel=parallel, split_ms=0.0)  # 3: in 3 chunks
    try:
        futures = [batcher.submit(xt[i : i + 1]) for i in range(len(x))]
        got = [f.result(timeout=30) for f in futures]
    finally:
        batcher.close()
    assert [g.label for g in got] == want.labels.tolist()
    assert [g.exit_unit for g in got] == want.exit_unit.tolist()
    assert max(g.batch_size for g in got) > 1 and batcher.mean_batch > 1  # requests really shared batches
    assert all(g.batch_size <= 8 for g in got)


def test_concurrent_load_reports_throughput_and_batches(tiny_base, tiny_exploration):
    rt = runtime(tiny_base, tiny_exploration)
    x, _ = make_images(16, seed=42)
    single = concurrent_load(rt, x, clients=4, requests_per_client=15)
    batched = concurrent_load(rt, x, clients=4, requests_per_client=15, window_ms=5.0)
    assert single["mode"] == "batch-1" and single["mean_batch"] == 1.0 and single["requests"] == 60
    assert batched["mode"] == "batched" and batched["mean_batch"] > 1.0
    for r in (single, batched):
        assert r["throughput_rps"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0


def test_batcher_splits_only_slow_batches(tiny_base, tiny_exploration):
    rt = runtime(tiny_base, tiny_exploration)
    xt = tiny_base.preprocess(make_images(8, seed=45)[0])
    slow, fast = Batcher(rt, parallel=2, split_ms=0.0), Batcher(rt, parallel=2, split_ms=1e9)
    try:
        assert slow._predict(xt)[3] == 2 and fast._predict(xt)[3] == 1
        assert slow._predict(xt)[:3] == fast._predict(xt)[:3]
    finally:
        slow.close()
        fast.close()


def test_compare_serving_runs_both_modes_side_by_side(tiny_base, tiny_exploration):
    rt = runtime(tiny_base, tiny_exploration)
    x, _ = make_images(16, seed=44)
    torch.set_num_threads(1)
    rows = compare_serving(rt, x, clients=4, requests_per_client=6, window_ms=5.0, rounds=1)
    assert torch.get_num_threads() == 1  # the thread setting of each run is restored
    runs = [r for r in rows if r["section"] == "serving"]
    assert {r["mode"] for r in runs} == {"batch-1", "batched"} and all(r["requests"] == 24 for r in runs)
    assert all(r["cpu_ms_per_request"] > 0 and r["cores_used"] > 0 for r in runs)
    (summary,) = [r for r in rows if r["section"] == "serving_summary"]
    best_one = max(r["throughput_rps"] for r in runs if r["mode"] == "batch-1")
    best_many = max(r["throughput_rps"] for r in runs if r["mode"] == "batched")
    assert summary["throughput_ratio"] == pytest.approx(best_many / best_one)


def test_stream_shift_lowers_hits_and_retraining_is_measured(tiny_base, tiny_exploration):
    torch.set_num_threads(1)
    x, y = make_images(200, seed=43)
    shifted = shift_images(x)
    assert shifted.min() >= 90 and shifted.dtype == np.uint8
    rows = drift_stream(
        lambda: runtime(tiny_base, tiny_exploration, 0.8), x, y, requests=900, windows=3, min_new=64
    )
    summary = {r["mode"]: r for r in rows if r["window"] is None}
    windows = [r for r in rows if r["window"] is not None]
    assert {r["mode"] for r in windows} == {"static", "retraining"} and len(windows) == 6
    assert not windows[0]["shifted"] and windows[2]["shifted"]
    static, retrain = summary["static"], summary["retraining"]
    assert static["retrains"] == 0 and static["mean_ms_while_retraining"] is None
    assert retrain["retrains"] >= 1 and all(s > 0 for s in retrain["retrain_seconds"])
    assert retrain["swaps"] <= retrain["retrains"] and retrain["requests"] == 900
    assert static["base_accuracy_after_shift"] == retrain["base_accuracy_after_shift"]  # one base, one stream
    assert all(0 <= w["base_accuracy"] <= 100 for w in windows)
    assert 0 <= retrain["hit_rate_after_shift"] <= 100 and retrain["shift_at"] == 300
