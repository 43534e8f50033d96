"""`gati bench` end to end on a tiny network and a few hundred Fashion-MNIST images (fast)."""

import pytest
import torch

from spidercache.bench.gati import run


def test_bench_rows_reuse_and_runtime_check(tmp_path):
    torch.set_num_threads(1)
    settings = dict(model="small", epochs=1, converge=False, serving=False, stream=False, train_samples=300, head_samples=200, val_samples=200, test_samples=300,
                    epsilons=(1.0, 50.0), batches=(1, 4), latency_requests=12, head_epochs=2,
                    variants=("pool2_mlp", "pool7_mlp"), work_dir=tmp_path, threads=1, rpc=False)
    said: list[str] = []
    first = run(**settings, say=said.append)
    assert first[0]["section"] == "base" and first[0]["converged"] is None and first[0]["epochs"] == 1
    rows = [r for r in first if r["section"] == "latency"]
    assert [(r["batch"], r["epsilon"]) for r in rows] == [(1, 1.0), (1, 50.0), (4, 1.0), (4, 50.0)]
    for r in rows:
        assert r["test_samples"] == 300 and r["speedup"] > 0
        assert all(h.split(":")[1].split("@")[0] in ("pool2_mlp", "pool7_mlp") for h in r["heads"])
        assert sum(r["hit_rates"].values()) == pytest.approx(100.0)
        assert r["accuracy_loss"] == pytest.approx(r["base_accuracy"] - r["gati_accuracy"])
    # bookkeeping on the test split equals what the runtime really answered
    check = rows[0]
    assert check["gati_accuracy_runtime"] == pytest.approx(check["gati_accuracy"])
    # a 50-point budget lets every image leave at a head; the guard is part of the row
    assert rows[1]["val_loss_bound"] <= 50.0 and rows[1]["z"] == 1.0

    said.clear()
    again = [r for r in run(**settings, retime=True, say=said.append) if r["section"] == "latency"]
    assert any("reusing base model" in m for m in said)
    assert any("reusing explored heads" in m for m in said)
    assert any("reusing test-split outputs" in m for m in said)
    assert any("timing the base network" in m for m in said)  # --retime measured again
    assert [r["gati_accuracy"] for r in again] == [r["gati_accuracy"] for r in rows]
