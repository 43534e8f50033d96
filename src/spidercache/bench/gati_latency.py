"""The latency part of ``gati bench``: base against GATI request by request, per batch and epsilon.

Latency is measured with the base model and GATI interleaved (base, gati,
base, gati, ...) so that other jobs on the machine slow both alike; accuracy
of every composition on the test split comes from one pass that keeps every
head's output (``test_outputs``), checked against the real runtime once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from ..inference.basemodel import BaseModel, accuracy
from ..inference.compose import assess, compose
from ..inference.explore import Exploration, collect_activations, measure_latency
from ..inference.heads import head_outputs
from ..inference.resume import run_key
from ..inference.runtime import GatiRuntime


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@torch.inference_mode()
def paired_latency(
    base: BaseModel,
    runtime: GatiRuntime,
    x: torch.Tensor,
    batch: int,
    max_requests: int,
    sync: Callable[[], None] = lambda: None,
) -> tuple[list[float], list[float]]:
    """Per-request ms of the base model and of GATI, interleaved, on the same inputs."""
    base_ms, gati_ms = [], []
    n_req = min(max_requests, len(x) // batch)
    for j in range(3):  # warm-up: allocator, caches
        base.model(x[j * batch : (j + 1) * batch])
        runtime.predict(x[j * batch : (j + 1) * batch])
    for j in range(n_req):
        xb = x[j * batch : (j + 1) * batch]
        t = time.perf_counter()
        base.model(xb)
        sync()
        base_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        runtime.predict(xb)
        sync()
        gati_ms.append((time.perf_counter() - t) * 1000)
    return base_ms, gati_ms


def latency_rows(
    o: dict,
    base: BaseModel,
    ex: Exploration,
    test_x: torch.Tensor,
    test_y: np.ndarray,
    test_conf,
    test_head_pred,
    base_pred,
    say: Callable[[str], None],
):
    """One row per (batch, epsilon) on the CPU; also returns the batch-1, epsilon-1 runtime (or None)."""
    rows, runtime_eps1, z = [], None, o["z"]
    base_acc = accuracy(base_pred, test_y)
    for batch in o["batches"]:
        for eps in o["epsilons"]:
            comp = compose(ex, epsilon=eps, batch=batch, z=z, holdout=o["holdout"], folds=o["folds"])
            runtime = GatiRuntime.from_composition(base, ex, comp)
            _, gati_acc, rates = assess(ex, comp, test_conf, test_head_pred, test_y, base_pred)
            # The same search without the standard-error guard (z = 0): what
            # fitting the validation split exactly would have chosen, on test.
            loose = compose(ex, epsilon=eps, batch=batch, z=0.0, folds=0)
            _, loose_acc, _ = assess(ex, loose, test_conf, test_head_pred, test_y, base_pred)
            hit_rates = {name.split("@")[0]: rate for name, rate in zip(comp.describe(ex), rates)}
            hit_rates["base"] = 100.0 - sum(rates)
            runtime_acc = None
            if batch == 1 and runtime_eps1 is None and abs(eps - 1.0) < 1e-9:
                runtime_eps1 = runtime
                runtime_acc = _runtime_check(runtime, test_x, test_y, gati_acc, say)
            n_req = o["latency_requests"] if batch == 1 else max(10, o["latency_requests"] // batch)
            b_ms, g_ms = paired_latency(base, runtime, test_x, batch, n_req)
            row = {
                "section": "latency",
                "model": base.network,
                "batch": batch,
                "epsilon": eps,
                "heads": comp.describe(ex),
                **_timing(b_ms, g_ms),
                "base_accuracy": base_acc,
                "gati_accuracy": gati_acc,
                "accuracy_loss": base_acc - gati_acc,
                "val_loss_bound": comp.loss_bound,
                "expected_speedup": comp.base_expected_ms / comp.expected_ms,
                "val_base_accuracy": comp.val_base_accuracy,
                "val_accuracy": comp.val_accuracy,
                "unguarded_heads": loose.describe(ex),
                "unguarded_accuracy_loss": base_acc - loose_acc,
                "unguarded_expected_speedup": loose.base_expected_ms / loose.expected_ms,
                "z": z,
                "holdout": o["holdout"],
                "checked_on": comp.checked_on,
                "select_epsilon": comp.select_epsilon,
                "folds": o["folds"],
                "optimism": comp.optimism,
                "gati_accuracy_runtime": runtime_acc,
                "hit_rates": hit_rates,
                "memory_bytes": comp.memory_bytes,
                "exact_search": comp.exact,
                "epochs": base.meta.get("epochs"),
                "train_samples": base.meta.get("train_samples"),
                "threads": o["threads"],
                "test_samples": len(test_y),
                "head_samples": o["head_samples"],
                "val_samples": o["val_samples"],
                "device": "cpu",
            }
            rows.append(row)
            say(
                f"batch {batch:>2} eps {eps:<4} speedup {row['speedup']:.2f}x  acc {gati_acc:.2f}% "
                f"(base {base_acc:.2f}%)  heads {' '.join(row['heads']) or '-'}"
            )
    return rows, runtime_eps1


def _runtime_check(
    runtime: GatiRuntime, test_x, test_y, gati_acc: float, say: Callable[[str], None]
) -> float:
    """The runtime's own accuracy on the test split, which must equal the bookkeeping's."""
    with torch.inference_mode():
        pred = np.concatenate(
            [runtime.predict(test_x[s : s + 500]).labels.numpy() for s in range(0, len(test_x), 500)]
        )
    runtime_acc = accuracy(pred, test_y)
    say(f"check: runtime accuracy {runtime_acc:.2f}% vs bookkeeping {gati_acc:.2f}%")
    # More than one test image apart: the table would report accuracies the served
    # runtime does not have (stale cached outputs, or a bug), so the run stops here.
    if abs(runtime_acc - gati_acc) > 100.0 / max(1, len(test_y)) + 1e-9:
        raise UserError(
            f"check failed: runtime accuracy {runtime_acc:.2f}% vs bookkeeping {gati_acc:.2f}% "
            "on the test split (cached outputs of other data? rerun with --rebuild)"
        )
    return runtime_acc


def _timing(b_ms: list[float], g_ms: list[float]) -> dict:
    return {
        "base_mean_ms": float(np.mean(b_ms)),
        "gati_mean_ms": float(np.mean(g_ms)),
        "base_p50_ms": _percentile(b_ms, 50),
        "gati_p50_ms": _percentile(g_ms, 50),
        "base_p99_ms": _percentile(b_ms, 99),
        "gati_p99_ms": _percentile(g_ms, 99),
        "speedup": float(np.mean(b_ms) / np.mean(g_ms)),
        "requests": len(b_ms),
    }


def test_outputs(
    base: BaseModel,
    ex: Exploration,
    images: np.ndarray,
    cache_dir: Path,
    rebuild: bool,
    say: Callable[[str], None],
    device: str = "cpu",
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Base predictions and every head's (confidence, prediction) on the test images.

    Kept in ``cache_dir`` next to the heads (same base fingerprint and heads), so
    that a rerun of the benchmark spends its time on latency, not on this pass.
    """
    path = cache_dir / "test_outputs.pt"
    # The heads' validation outputs identify the trained heads (retrained heads differ).
    heads_digest = hashlib.sha256(b"".join(h.val_conf.tobytes() for h in ex.heads)).hexdigest()
    # The test images themselves, not only their count: another dataset of the same size must not
    # reuse these outputs.
    images_digest = run_key(images, np.zeros(0))
    if path.is_file() and not rebuild:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if (
            blob.get("fingerprint") == base.fingerprint()
            and blob.get("heads") == heads_digest
            and blob.get("n_images") == len(images)
            and blob.get("images") == images_digest
        ):
            say(f"reusing test-split outputs {path}")
            return (
                blob["base_pred"].numpy(),
                [c.numpy() for c in blob["conf"]],
                [p.numpy() for p in blob["pred"]],
            )
    say("running the base model and every head over the test split")
    acts, logits = collect_activations(base, images, device=device)
    base_pred = logits.argmax(1).numpy()
    heads = [ex.build_head(k) for k in range(len(ex.heads))]
    outputs = [head_outputs(head, acts[h.unit][head.grid]) for head, h in zip(heads, ex.heads)]
    conf, pred = [o[0] for o in outputs], [o[1] for o in outputs]
    torch.save(
        {
            "fingerprint": base.fingerprint(),
            "heads": heads_digest,
            "n_images": len(images),
            "images": images_digest,
            "base_pred": torch.from_numpy(base_pred),
            "conf": [torch.from_numpy(c) for c in conf],
            "pred": [torch.from_numpy(p) for p in pred],
        },
        path,
    )
    return base_pred, conf, pred


def gpu_rows(
    base: BaseModel,
    ex: Exploration,
    cpu_rows: list[dict],
    test_x: torch.Tensor,
    outputs: tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray],
    latency_requests: int,
    say: Callable[[str], None],
    z: float = 1.0,
    device: str = "cuda",
) -> list[dict]:
    """The benchmark on ``device``: GPU latency of GATI against the GPU base, per CPU row's (batch, ε).

    Units and heads are timed again on the device and the composition is chosen
    with those costs (on a GPU a batch-1 layer costs about one kernel launch
    whatever its size, so the CPU's choice is not the GPU's); its test accuracy
    comes from the same per-head test outputs (``outputs``: test labels, head
    confidences, head predictions, base predictions).
    """
    test_y, test_conf, test_head_pred, base_pred = outputs
    on_dev = replace(ex, unit_ms={}, finish_ms={}, heads=[replace(h, latency_ms={}) for h in ex.heads])
    measure_latency(base, on_dev, say=say, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    x, out = test_x.to(device), []
    base_acc = accuracy(base_pred, test_y)
    for row in cpu_rows:
        comp = compose(
            on_dev,
            epsilon=row["epsilon"],
            batch=row["batch"],
            z=z,
            holdout=row.get("holdout", 0.0),
            folds=row.get("folds", 0),
        )
        _, gati_acc, rates = assess(on_dev, comp, test_conf, test_head_pred, test_y, base_pred)
        runtime = GatiRuntime.from_composition(base, on_dev, comp).to(device)
        n_req = latency_requests if row["batch"] == 1 else max(10, latency_requests // row["batch"])
        b_ms, g_ms = paired_latency(base, runtime, x, row["batch"], n_req, sync)
        hit_rates = {name.split("@")[0]: rate for name, rate in zip(comp.describe(on_dev), rates)}
        hit_rates["base"] = 100.0 - sum(rates)
        r = dict(row, device=device, heads=comp.describe(on_dev), **_timing(b_ms, g_ms), hit_rates=hit_rates)
        r.update(gati_accuracy=gati_acc, accuracy_loss=base_acc - gati_acc, gati_accuracy_runtime=None)
        r.update(expected_speedup=comp.base_expected_ms / comp.expected_ms, memory_bytes=comp.memory_bytes)
        out.append(r)
        say(
            f"{device} batch {row['batch']:>2} eps {row['epsilon']:<4} speedup {r['speedup']:.2f}x "
            f"(base {r['base_mean_ms']:.3f} ms, gati {r['gati_mean_ms']:.3f} ms) acc {gati_acc:.2f}%"
        )
    base.model.cpu()
    return out
