"""`gati bench` end to end on a tiny network and a few hundred Fashion-MNIST images (fast)."""

import pytest
import torch

from spidercache.bench.gati import run


def test_bench_rows_reuse_and_runtime_check(tmp_path):
    torch.set_num_threads(1)
    settings = dict(
        model="small",
        epochs=1,
        converge=False,
        serving=False,
        stream=False,
        train_samples=300,
        head_samples=200,
        val_samples=200,
        test_samples=300,
        epsilons="1,50",
        batches="1,4",
        requests=12,
        head_epochs=2,
        variants="pool2_mlp,pool7_mlp",
        work_dir=str(tmp_path),
        threads=1,
        rpc=False,
    )
    said: list[str] = []
    first = run(**settings, log=said.append)
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
    again = [r for r in run(**settings, retime=True, log=said.append) if r["section"] == "latency"]
    assert any("reusing base model" in m for m in said)
    assert any("reusing explored heads" in m for m in said)
    assert any("reusing test-split outputs" in m for m in said)
    assert any("timing the base network" in m for m in said)  # --retime measured again
    assert [r["gati_accuracy"] for r in again] == [r["gati_accuracy"] for r in rows]


def test_device_rows_compose_with_the_devices_own_costs(tiny_base, tiny_exploration):
    """gpu_rows on the CPU (the code path a GPU takes): re-timed units, a composition per row, accuracy."""
    import numpy as np
    from gati_synthetic import make_images

    from spidercache.bench.gati_latency import gpu_rows
    from spidercache.inference.compose import assess, compose
    from spidercache.inference.explore import collect_activations
    from spidercache.inference.heads import head_outputs

    x, y = make_images(96, seed=51)
    acts, logits = collect_activations(tiny_base, x)
    base_pred = logits.argmax(1).numpy()
    heads = [tiny_exploration.build_head(k) for k in range(len(tiny_exploration.heads))]
    outs = [head_outputs(h, acts[r.unit][h.grid]) for h, r in zip(heads, tiny_exploration.heads)]
    conf, pred = [o[0] for o in outs], [o[1] for o in outs]
    cpu_rows = [
        {"batch": 1, "epsilon": 5.0, "section": "latency"},
        {"batch": 4, "epsilon": 5.0, "section": "latency"},
    ]
    before = dict(tiny_exploration.unit_ms)
    rows = gpu_rows(
        tiny_base,
        tiny_exploration,
        cpu_rows,
        tiny_base.preprocess(x),
        (y, conf, pred, base_pred),
        8,
        lambda _m: None,
        device="cpu",
    )
    assert tiny_exploration.unit_ms == before  # the exploration's own timings are left alone
    for r in rows:
        assert r["device"] == "cpu" and r["requests"] > 0 and r["speedup"] > 0
        assert sum(r["hit_rates"].values()) == pytest.approx(100.0)
        comp = compose(tiny_exploration, epsilon=5.0, batch=r["batch"])
        _, acc, _ = assess(tiny_exploration, comp, conf, pred, y, base_pred)
        if [h.split("@")[0] for h in comp.describe(tiny_exploration)] == [
            h.split("@")[0] for h in r["heads"]
        ]:
            assert r["gati_accuracy"] == pytest.approx(acc)
        assert r["accuracy_loss"] == pytest.approx(float(np.mean(base_pred == y)) * 100 - r["gati_accuracy"])


def test_bench_does_not_reuse_heads_or_outputs_of_another_dataset(tmp_path, tiny_base):
    """Two datasets of the same sizes through one work dir: the second explores and runs afresh."""
    import numpy as np
    from gati_synthetic import make_images

    tiny_base.save(tmp_path / "base.pt")
    for name, seed in (("a", 61), ("b", 62)):
        x, y = make_images(200, seed=seed)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y if name == "a" else (y + 1) % 4)
    settings = dict(
        checkpoint=str(tmp_path / "base.pt"),
        serving=False,
        stream=False,
        train_samples=60,
        head_samples=60,
        val_samples=50,
        test_samples=20,
        epsilons="1",
        batches="1",
        requests=10,
        head_epochs=1,
        variants="pool2_mlp",
        work_dir=str(tmp_path / "work"),
        threads=1,
        rpc=False,
    )
    run(**settings, dataset=str(tmp_path / "a.npz"), log=lambda _m: None)
    said: list[str] = []
    rows = run(**settings, dataset=str(tmp_path / "b.npz"), log=said.append)
    assert not any("reusing explored heads" in m or "reusing test-split outputs" in m for m in said), said
    check = next(r for r in rows if r["section"] == "latency")
    assert check["gati_accuracy_runtime"] == pytest.approx(check["gati_accuracy"])
