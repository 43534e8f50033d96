"""``spidercache gati bench``: base network against GATI, latency and accuracy, over several epsilons.

``run(**opts)`` returns rows (dicts), each with a ``section``:

* ``base``: the base network, its test accuracy and how it was trained (epochs,
  validation history, whether the validation accuracy stopped improving);
* ``latency``: one per (device, batch, epsilon): base against GATI, mean / p50 /
  p99 ms per request, test accuracy of both, the heads and their hit rates;
* ``rpc``: loopback gRPC overhead per request (``inference.loadtest``);
* ``serving``: throughput and p50/p99 under concurrent clients, batch-1 serving
  against the batching server (``inference.loadtest``);
* ``retraining``: a stream whose inputs shift, with and without online
  retraining, per window (``inference.stream``).

Splits of the training set (fixed seed): the base model's training images,
then disjoint head-training images and a validation split on which ``compose``
chooses heads and thresholds (and on which the base's training stops when it
converges); the test split is used only to report. Latency is measured request
by request with the base model and GATI interleaved (base, gati, base, gati,
...) so that other jobs on the machine slow both alike; figures are ratios
within one run.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from ..inference.basemodel import BaseModel, accuracy, evaluate, load_checkpoint, resize_images
from ..inference.build import images_for, train_base
from ..inference.compose import assess, compose
from ..inference.datasets import DEFAULT_DATASET, ImageSplits, check_classes, load_splits, splits
from ..inference.explore import Exploration, collect_activations, explore, load_exploration, measure_latency
from ..inference.heads import VARIANTS, head_outputs
from ..inference.runtime import GatiRuntime

DEFAULT_EPSILONS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@torch.inference_mode()
def paired_latency(base: BaseModel, runtime: GatiRuntime, x: torch.Tensor, batch: int, max_requests: int,
                   sync: Callable[[], None] = lambda: None) -> tuple[list[float], list[float]]:
    """Per-request ms of the base model and of GATI, interleaved, on the same inputs."""
    base_ms, gati_ms = [], []
    n_req = min(max_requests, len(x) // batch)
    for j in range(3):  # warm-up: allocator, caches
        base.model(x[j * batch:(j + 1) * batch])
        runtime.predict(x[j * batch:(j + 1) * batch])
    for j in range(n_req):
        xb = x[j * batch:(j + 1) * batch]
        t = time.perf_counter()
        base.model(xb)
        sync()
        base_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        runtime.predict(xb)
        sync()
        gati_ms.append((time.perf_counter() - t) * 1000)
    return base_ms, gati_ms


RUN_DEFAULTS = dict(
    model="resnet18", dataset=DEFAULT_DATASET, data_root=None, image_size=None, stem=None, epochs=30,
    converge=True, train_samples=20000, head_samples=10000, val_samples=5000, epsilons=DEFAULT_EPSILONS,
    batches=(1, 32), latency_requests=300, checkpoint=None, work_dir="~/.cache/spidercache/gati",
    train_threads=None, threads=1, z=1.0, head_epochs=8, rpc=True, serving=True, clients=8, window_ms=2.0,
    stream=True, stream_requests=3000, rebuild=False, gpu=False, test_samples=None, variants=None, retime=False,
    lr=0.05, train_device=None,
)


def run(say: Callable[[str], None] = lambda _m: None, **opts) -> list[dict]:
    """The whole GATI benchmark; options as ``RUN_DEFAULTS`` (the CLI's flags), rows as the module docstring."""
    unknown = set(opts) - set(RUN_DEFAULTS)
    if unknown:
        raise UserError(f"unknown GATI benchmark option(s): {', '.join(sorted(unknown))}")
    o = dict(RUN_DEFAULTS, **opts)
    if o["gpu"] and not torch.cuda.is_available():
        raise UserError("--gpu: no CUDA GPU is visible to torch on this machine")
    work = Path(o["work_dir"]).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    data = load_splits(o["dataset"], o["data_root"], o["image_size"])
    if data.note:
        say(data.note)
    base_idx, head_idx, val_idx = splits(len(data.train_images), o["train_samples"], o["head_samples"],
                                         o["val_samples"])
    if o["train_threads"]:
        torch.set_num_threads(o["train_threads"])
    # Training and the exploration's forward passes use a GPU when there is one;
    # latency is measured on the CPU (and, with gpu=True, on the GPU as well).
    work_device = o["train_device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    if work_device == "cuda" and not torch.cuda.is_available():
        raise UserError("train_device cuda: no CUDA GPU is visible to torch on this machine")
    base = _base_model(o, data, base_idx, val_idx, work, work_device, say)
    check_classes(base.num_classes, data)
    train_x = images_for(data, base.input_shape, say)
    n_test = len(data.test_images) if not o["test_samples"] else min(o["test_samples"], len(data.test_images))
    test_images = resize_images(data.test_images[:n_test], base.input_shape)
    test_y = np.asarray(data.test_labels[:n_test])
    val_acc = evaluate(base, train_x[val_idx], data.train_labels[val_idx], work_device)
    ex, cache_dir = _heads(o, base, train_x, data.train_labels, head_idx, val_idx, work, work_device, say)
    base_pred, test_conf, test_head_pred = test_outputs(base, ex, test_images, cache_dir, o["rebuild"], say,
                                                         work_device)
    base_acc = accuracy(base_pred, test_y)
    say(f"base test accuracy {base_acc:.2f}% (validation {val_acc:.2f}%)")
    rows = [_base_row(base, o, base_acc, val_acc, n_test, data)]
    torch.set_num_threads(o["threads"])
    test_x = base.preprocess(test_images)
    lat, runtime_eps1 = _latency_rows(o, base, ex, test_x, test_y, test_conf, test_head_pred, base_pred, say)
    rows += lat
    if o["gpu"]:
        rows += gpu_rows(base, ex, lat, test_x, o["latency_requests"], say, o["z"])
    if runtime_eps1 is not None:
        rows += _serving_rows(o, runtime_eps1, test_images, say)
    if o["stream"] and runtime_eps1 is not None:
        from ..inference.stream import drift_stream

        comp = compose(ex, epsilon=1.0, batch=1, z=o["z"])
        rows += drift_stream(lambda: GatiRuntime.from_composition(base, ex, comp), test_images, test_y,
                             requests=o["stream_requests"], say=say)
    for r in rows:
        r.setdefault("load_average", os.getloadavg()[0])
    return rows


def _base_model(o: dict, data: ImageSplits, base_idx, val_idx, work: Path, device: str,
                say: Callable[[str], None]) -> BaseModel:
    """The checkpoint given, or one trained here (kept in ``work`` under a name that says how)."""
    if o["checkpoint"]:
        base = load_checkpoint(o["checkpoint"])
        if base.network != o["model"]:
            say(f"checkpoint holds {base.network}; benchmarking it instead of {o['model']}")
        return base
    tag = hashlib.sha256(f"{o['dataset']}|{o['data_root']}|{o['image_size']}".encode()).hexdigest()[:8]
    mode = "conv" if o["converge"] else "e"
    ckpt = work / (f"{o['model']}-{o['stem'] or 'cifar'}-{tag}-{mode}{o['epochs']}-n{o['train_samples']}"
                   f"-v{o['val_samples']}-lr{o['lr']:g}.pt")
    if ckpt.is_file() and not o["rebuild"]:
        say(f"reusing base model {ckpt}")
        return load_checkpoint(ckpt)
    base = train_base(data, o["model"], stem=o["stem"], image_size=o["image_size"], epochs=o["epochs"],
                      converge=o["converge"], train_samples=o["train_samples"], head_samples=o["head_samples"],
                      val_samples=o["val_samples"], lr=o["lr"], device=device, say=say)
    base.save(ckpt)
    return base


def _heads(o: dict, base: BaseModel, train_x: np.ndarray, train_y: np.ndarray, head_idx, val_idx, work: Path,
           device: str, say: Callable[[str], None]) -> tuple[Exploration, Path]:
    """Explored heads for ``base``: reused from ``work`` when they match, else trained and timed."""
    variants = o["variants"]
    # The variant list is part of the name: heads explored with another set of variants are not reused.
    variant_tag = hashlib.sha256(",".join(variants or VARIANTS).encode()).hexdigest()[:6]
    cache_dir = work / (f"caches-{base.fingerprint()[:12]}-h{o['head_samples']}-v{o['val_samples']}"
                        f"-he{o['head_epochs']}-{variant_tag}")
    ex: Exploration | None = None
    retime = o["retime"]
    if (cache_dir / "gati.pt").is_file() and not o["rebuild"]:
        say(f"reusing explored heads {cache_dir}")
        ex = load_exploration(cache_dir, base.fingerprint())
    if ex is None:
        torch.set_num_threads(o["train_threads"] or torch.get_num_threads())
        ex = explore(base, train_x[head_idx], train_y[head_idx], train_x[val_idx], train_y[val_idx],
                     variants=list(variants) if variants else None, head_epochs=o["head_epochs"], progress=say,
                     device=device)
        retime = retime or torch.get_num_threads() != o["threads"]
    if retime:  # the cost model must see the thread count the latency is measured with
        torch.set_num_threads(o["threads"])
        measure_latency(base, ex, say=say)
    if retime or not (cache_dir / "gati.pt").is_file():
        ex.save(cache_dir)
    return ex, cache_dir


def _base_row(base: BaseModel, o: dict, base_acc: float, val_acc: float, n_test: int, data: ImageSplits) -> dict:
    meta = base.meta
    return {"section": "base", "model": base.network, "stem": base.stem or "cifar", "dataset": data.name,
            "input_shape": list(base.input_shape), "num_classes": base.num_classes,
            "test_accuracy": base_acc, "val_accuracy": val_acc, "epochs": meta.get("epochs"),
            "best_epoch": meta.get("best_epoch"), "converged": meta.get("converged"),
            "max_epochs": meta.get("max_epochs"), "val_history": meta.get("val_history"),
            "train_samples": meta.get("train_samples"), "train_seconds": meta.get("train_seconds"),
            "test_samples": n_test, "dataset_note": data.note, "checkpoint": o["checkpoint"]}


def _latency_rows(o: dict, base: BaseModel, ex: Exploration, test_x: torch.Tensor, test_y: np.ndarray,
                  test_conf, test_head_pred, base_pred, say: Callable[[str], None]):
    """One row per (batch, epsilon) on the CPU; also returns the batch-1, epsilon-1 runtime (or None)."""
    rows, runtime_eps1, z = [], None, o["z"]
    base_acc = accuracy(base_pred, test_y)
    for batch in o["batches"]:
        for eps in o["epsilons"]:
            comp = compose(ex, epsilon=eps, batch=batch, z=z)
            runtime = GatiRuntime.from_composition(base, ex, comp)
            _, gati_acc, rates = assess(ex, comp, test_conf, test_head_pred, test_y, base_pred)
            # The same search without the standard-error guard (z = 0): what
            # fitting the validation split exactly would have chosen, on test.
            loose = compose(ex, epsilon=eps, batch=batch, z=0.0)
            _, loose_acc, _ = assess(ex, loose, test_conf, test_head_pred, test_y, base_pred)
            hit_rates = {name.split("@")[0]: rate for name, rate in zip(comp.describe(ex), rates)}
            hit_rates["base"] = 100.0 - sum(rates)
            runtime_acc = None
            if batch == 1 and runtime_eps1 is None and abs(eps - 1.0) < 1e-9:
                runtime_eps1 = runtime
                with torch.inference_mode():
                    pred = np.concatenate([runtime.predict(test_x[s:s + 500]).labels.numpy()
                                           for s in range(0, len(test_x), 500)])
                runtime_acc = accuracy(pred, test_y)
                say(f"check: runtime accuracy {runtime_acc:.2f}% vs bookkeeping {gati_acc:.2f}%")
            n_req = o["latency_requests"] if batch == 1 else max(10, o["latency_requests"] // batch)
            b_ms, g_ms = paired_latency(base, runtime, test_x, batch, n_req)
            row = {
                "section": "latency", "model": base.network, "batch": batch, "epsilon": eps,
                "heads": comp.describe(ex), **_timing(b_ms, g_ms),
                "base_accuracy": base_acc, "gati_accuracy": gati_acc, "accuracy_loss": base_acc - gati_acc,
                "val_loss_bound": comp.loss_bound, "expected_speedup": comp.base_expected_ms / comp.expected_ms,
                "val_base_accuracy": comp.val_base_accuracy, "val_accuracy": comp.val_accuracy,
                "unguarded_heads": loose.describe(ex), "unguarded_accuracy_loss": base_acc - loose_acc,
                "unguarded_expected_speedup": loose.base_expected_ms / loose.expected_ms, "z": z,
                "gati_accuracy_runtime": runtime_acc, "hit_rates": hit_rates, "memory_bytes": comp.memory_bytes,
                "exact_search": comp.exact, "epochs": base.meta.get("epochs"),
                "train_samples": base.meta.get("train_samples"), "threads": o["threads"],
                "test_samples": len(test_y), "head_samples": o["head_samples"], "val_samples": o["val_samples"],
                "device": "cpu",
            }
            rows.append(row)
            say(f"batch {batch:>2} eps {eps:<4} speedup {row['speedup']:.2f}x  acc {gati_acc:.2f}% "
                f"(base {base_acc:.2f}%)  heads {' '.join(row['heads']) or '-'}")
    return rows, runtime_eps1


def _timing(b_ms: list[float], g_ms: list[float]) -> dict:
    return {"base_mean_ms": float(np.mean(b_ms)), "gati_mean_ms": float(np.mean(g_ms)),
            "base_p50_ms": _percentile(b_ms, 50), "gati_p50_ms": _percentile(g_ms, 50),
            "base_p99_ms": _percentile(b_ms, 99), "gati_p99_ms": _percentile(g_ms, 99),
            "speedup": float(np.mean(b_ms) / np.mean(g_ms)), "requests": len(b_ms)}


def _serving_rows(o: dict, runtime: GatiRuntime, test_images: np.ndarray, say: Callable[[str], None]) -> list[dict]:
    """RPC overhead at batch 1 and batch-1 against batched serving under concurrent clients."""
    from ..inference.loadtest import concurrent_load, rpc_overhead

    rows = []
    if o["rpc"]:
        r = rpc_overhead(runtime, test_images[:o["latency_requests"]])
        say(f"RPC overhead {r['overhead_mean_ms']:.3f} ms/request (mean round trip {r['roundtrip_mean_ms']:.3f} ms)")
        rows.append({"section": "rpc", **r})
    if o["serving"]:
        per_client = max(20, o["latency_requests"] // 2)
        for window in (0.0, o["window_ms"]):
            r = concurrent_load(runtime, test_images, clients=o["clients"], requests_per_client=per_client,
                                window_ms=window)
            say(f"serving {'batched, window ' + format(window, 'g') + ' ms' if window else 'batch 1'}: "
                f"{o['clients']} clients {r['throughput_rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, mean batch {r['mean_batch']:.2f}")
            rows.append({"section": "serving", **r})
    return rows


def test_outputs(base: BaseModel, ex: Exploration, images: np.ndarray, cache_dir: Path, rebuild: bool,
                 say: Callable[[str], None], device: str = "cpu") -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Base predictions and every head's (confidence, prediction) on the test images.

    Kept in ``cache_dir`` next to the heads (same base fingerprint and heads), so
    that a rerun of the benchmark spends its time on latency, not on this pass.
    """
    path = cache_dir / "test_outputs.pt"
    # The heads' validation outputs identify the trained heads (retrained heads differ).
    heads_digest = hashlib.sha256(b"".join(h.val_conf.tobytes() for h in ex.heads)).hexdigest()
    if path.is_file() and not rebuild:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("fingerprint") == base.fingerprint() and blob.get("heads") == heads_digest \
                and blob.get("n_images") == len(images):
            say(f"reusing test-split outputs {path}")
            return blob["base_pred"].numpy(), [c.numpy() for c in blob["conf"]], [p.numpy() for p in blob["pred"]]
    say("running the base model and every head over the test split")
    acts, logits = collect_activations(base, images, device=device)
    base_pred = logits.argmax(1).numpy()
    heads = [ex.build_head(k) for k in range(len(ex.heads))]
    outputs = [head_outputs(head, acts[h.unit][head.grid]) for head, h in zip(heads, ex.heads)]
    conf, pred = [o[0] for o in outputs], [o[1] for o in outputs]
    torch.save({"fingerprint": base.fingerprint(), "heads": heads_digest, "n_images": len(images),
                "base_pred": torch.from_numpy(base_pred), "conf": [torch.from_numpy(c) for c in conf],
                "pred": [torch.from_numpy(p) for p in pred]}, path)
    return base_pred, conf, pred


def gpu_rows(base: BaseModel, ex: Exploration, cpu_rows: list[dict], test_x: torch.Tensor,
             latency_requests: int, say: Callable[[str], None], z: float = 1.0) -> list[dict]:
    """The CPU rows' compositions timed on the GPU (same heads, thresholds and accuracy).

    The compositions were chosen with CPU costs; on a GPU a batch-1 layer costs
    about one kernel launch whatever its size, so the best choice there may differ.
    """
    out = []
    x = test_x.cuda()
    sync = torch.cuda.synchronize
    for row in cpu_rows:
        comp = compose(ex, epsilon=row["epsilon"], batch=row["batch"], z=z)
        runtime = GatiRuntime.from_composition(base, ex, comp).to("cuda")
        b_ms, g_ms = paired_latency(base, runtime, x, row["batch"],
                                    latency_requests if row["batch"] == 1 else max(10, latency_requests // row["batch"]), sync)
        r = dict(row, device="cuda", **_timing(b_ms, g_ms), gati_accuracy_runtime=None)
        out.append(r)
        say(f"GPU batch {row['batch']:>2} eps {row['epsilon']:<4} speedup {r['speedup']:.2f}x "
            f"(base {r['base_mean_ms']:.3f} ms, gati {r['gati_mean_ms']:.3f} ms)")
    base.model.cpu()
    return out


def plot(rows: list[dict], path: str) -> None:
    """Latency against test accuracy per batch size, like the paper's trade-off figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["section"] == "latency" and r.get("device", "cpu") == "cpu"]
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.2), squeeze=False)
    for ax, b in zip(axes[0], batches):
        rs = sorted([r for r in rows if r["batch"] == b], key=lambda r: r["epsilon"])
        ax.plot([r["gati_mean_ms"] for r in rs], [r["gati_accuracy"] for r in rs], "o-", label="GATI")
        for r in rs:
            ax.annotate(f"ε={r['epsilon']:g}", (r["gati_mean_ms"], r["gati_accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -8))
        ax.plot([np.mean([r["base_mean_ms"] for r in rs])], [rs[0]["base_accuracy"]], "k*", ms=12, label="base model")
        ax.set_xlabel(f"mean latency per request of {b} (ms)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{rs[0]['model']}, batch {b}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_tables(rows: list[dict]) -> None:
    """The rows as the CLI prints them: base line, latency table, RPC, serving and retraining lines."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    base = next(r for r in rows if r["section"] == "base")
    how = (f"{base['epochs']} epoch(s), best epoch {base['best_epoch']}, "
           f"{'converged' if base['converged'] else 'NOT converged'}" if base["converged"] is not None
           else f"{base['epochs']} epoch(s), fixed schedule")
    console.print(f"base {base['model']} ({base['stem']} stem, input {'x'.join(map(str, base['input_shape']))}) on "
                  f"{base['dataset']}: test accuracy {base['test_accuracy']:.2f}%, validation "
                  f"{base['val_accuracy']:.2f}% ({how})")
    table = Table(title=f"GATI on {base['model']}")
    for col in ("dev", "batch", "ε", "heads", "base ms", "gati ms", "base p99", "gati p99", "speedup", "base acc",
                "gati acc", "loss"):
        table.add_column(col)
    for r in (r for r in rows if r["section"] == "latency"):
        table.add_row(r["device"], str(r["batch"]), f"{r['epsilon']:g}", " ".join(r["heads"]) or "-",
                      f"{r['base_mean_ms']:.2f}", f"{r['gati_mean_ms']:.2f}", f"{r['base_p99_ms']:.2f}",
                      f"{r['gati_p99_ms']:.2f}", f"{r['speedup']:.2f}x", f"{r['base_accuracy']:.2f}",
                      f"{r['gati_accuracy']:.2f}", f"{r['accuracy_loss']:+.2f}")
    console.print(table)
    for rp in (r for r in rows if r["section"] == "rpc"):
        console.print(f"gRPC loopback overhead: mean {rp['overhead_mean_ms']:.3f} ms, p50 {rp['overhead_p50_ms']:.3f} ms "
                      f"per request (round trip {rp['roundtrip_mean_ms']:.3f} ms); beyond the whole handler "
                      f"p50 {rp['overhead_vs_handler_p50_ms']:.3f} ms; an empty call alone p50 "
                      f"{rp['empty_rpc_p50_ms']:.3f} ms (load average {rp['load_average']:.1f})")
    for r in (r for r in rows if r["section"] == "serving"):
        console.print(f"serving {r['mode']:<8} window {r['window_ms']:g} ms, {r['clients']} clients: "
                      f"{r['throughput_rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                      f"mean batch {r['mean_batch']:.2f} (load average {r['load_average']:.1f})")
    for r in (r for r in rows if r["section"] == "retraining" and r["window"] is None):
        secs = r["retrain_seconds"]
        busy = r["mean_ms_while_retraining"]
        console.print(
            f"stream {r['mode']:<10}: hit rate {r['hit_rate_before_shift']:.1f}% before the shift, "
            f"{r['hit_rate_after_shift']:.1f}% after (last window {r['hit_rate_last_window']:.1f}%); accuracy "
            f"{r['accuracy_before_shift']:.2f}% -> {r['accuracy_after_shift']:.2f}% (last window "
            f"{r['accuracy_last_window']:.2f}%); {r['retrains']} retrain(s)"
            + (f" of {np.mean(secs):.2f} s each, {r['swaps']} swapped in" if secs else "")
            + (f"; latency {busy:.2f} ms while retraining vs {r['mean_ms_otherwise']:.2f} ms otherwise"
               if busy is not None and r["mean_ms_otherwise"] is not None else ""))
