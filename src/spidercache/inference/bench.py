"""``spidercache gati bench``: base network against GATI, latency and accuracy, over several epsilons.

Splits of the training set (fixed seed): the base model's training images,
then disjoint head-training images and a validation split on which ``compose``
chooses heads and thresholds; the test split is used only to report. Latency
is measured request by request with the base model and GATI interleaved
(base, gati, base, gati, ...) so that other jobs on the machine slow both
alike; figures are ratios within one run.
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
from .basemodel import BaseModel, accuracy, load_checkpoint, train_base_model
from .compose import assess, compose
from .explore import Exploration, collect_activations, explore, load_exploration, measure_latency
from .heads import VARIANTS, head_outputs
from .runtime import GatiRuntime

DEFAULT_EPSILONS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


def load_dataset(name: str, root: str | None = None, train: bool = True):
    from ..data import datasets

    key = name.lower().replace("_", "-")
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return datasets.FashionMNIST(root or datasets.FASHION_MNIST_ROOT, train=train)
    if key in ("cifar10", "cifar-10") and hasattr(datasets, "CIFAR10"):
        if not root:
            raise UserError("--data-root is needed for CIFAR-10 (the cifar-10-batches-py folder)")
        return datasets.CIFAR10(root, train=train)
    raise UserError(f"unsupported dataset {name!r} for the GATI benchmark (fashion-mnist"
                    f"{', cifar10' if hasattr(datasets, 'CIFAR10') else ''})")


def splits(n_total: int, train_samples: int, head_samples: int, val_samples: int, seed: int = 0):
    if min(train_samples, head_samples, val_samples) <= 0:
        raise UserError("train, head and validation sample counts must be positive")
    if train_samples + head_samples + val_samples > n_total:
        raise UserError(f"{train_samples} + {head_samples} + {val_samples} samples exceed the {n_total} training images")
    perm = np.random.default_rng(seed).permutation(n_total)
    a, b = train_samples, train_samples + head_samples
    return perm[:a], perm[a:b], perm[b:b + val_samples]


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


def rpc_overhead(runtime: GatiRuntime, images: np.ndarray, requests: int = 300) -> dict:
    """Loopback gRPC: mean round trip minus the server's model time, per request.

    Also, in the same rounds: the round trip minus the server's whole handler
    (decode + model + reply), and the round trip of ``Info`` (an RPC with no
    work behind it), the floor that grpcio itself sets on this machine.
    """
    from .serve import GatiClient, GatiServicer, start_server

    server, port = start_server(GatiServicer(runtime), port=0)
    client = GatiClient(f"127.0.0.1:{port}")
    try:
        for i in range(10):
            client.predict(images[i % len(images)])
            client.info()
        rt, sv, hd, floor = [], [], [], []
        for i in range(requests):
            r = client.predict(images[i % len(images)])
            rt.append(r.roundtrip_ms)
            sv.append(r.server_ms)
            hd.append(r.handler_ms)
            t = time.perf_counter()
            client.info()
            floor.append((time.perf_counter() - t) * 1000)
    finally:
        client.close()
        server.stop(0)
    over = np.asarray(rt) - np.asarray(sv)
    over_handler = np.asarray(rt) - np.asarray(hd)
    return {"requests": requests, "roundtrip_mean_ms": float(np.mean(rt)), "server_model_mean_ms": float(np.mean(sv)),
            "overhead_mean_ms": float(over.mean()), "overhead_p50_ms": float(np.median(over)),
            "overhead_p99_ms": float(np.percentile(over, 99)),
            "overhead_vs_handler_mean_ms": float(over_handler.mean()),
            "overhead_vs_handler_p50_ms": float(np.median(over_handler)),
            "empty_rpc_mean_ms": float(np.mean(floor)), "empty_rpc_p50_ms": float(np.median(floor)),
            "load_average": os.getloadavg()[0]}


def run_bench(
    model: str = "resnet18",
    dataset: str = "fashion-mnist",
    data_root: str | None = None,
    epochs: int = 1,
    train_samples: int = 20000,
    head_samples: int = 10000,
    val_samples: int = 5000,
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS,
    batches: tuple[int, ...] = (1, 32),
    latency_requests: int = 300,
    checkpoint: str | None = None,
    work_dir: str | os.PathLike = "~/.cache/spidercache/gati",
    train_threads: int | None = None,
    threads: int = 1,
    z: float = 1.0,
    head_epochs: int = 8,
    rpc: bool = True,
    rebuild: bool = False,
    gpu: bool = False,
    test_samples: int | None = None,
    variants: tuple[str, ...] | None = None,
    retime: bool = False,
    say: Callable[[str], None] = lambda _m: None,
) -> dict:
    work = Path(work_dir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    train_set = load_dataset(dataset, data_root, train=True)
    test_set = load_dataset(dataset, data_root, train=False)
    base_idx, head_idx, val_idx = splits(len(train_set), train_samples, head_samples, val_samples)
    if train_threads:
        torch.set_num_threads(train_threads)
    # Training and the exploration's forward passes use a GPU when there is one;
    # latency is measured on the CPU (and, with gpu=True, on the GPU as well).
    work_device = "cuda" if torch.cuda.is_available() else "cpu"

    if checkpoint:
        base = load_checkpoint(checkpoint)
        if base.network != model:
            say(f"checkpoint holds {base.network}; benchmarking it instead of {model}")
    else:
        ckpt = work / f"{model}-{dataset}-e{epochs}-n{train_samples}.pt"
        if ckpt.is_file() and not rebuild:
            say(f"reusing base model {ckpt}")
            base = load_checkpoint(ckpt)
        else:
            say(f"training {model} for {epochs} epoch(s) on {train_samples} images ({torch.get_num_threads()} threads)")
            last = [time.perf_counter()]

            def progress(step: int, total: int, loss: float) -> None:
                if time.perf_counter() - last[0] > 30 or step == total:
                    last[0] = time.perf_counter()
                    say(f"  step {step}/{total} loss {loss:.3f}")

            base = train_base_model(model, train_set.data[base_idx], train_set.targets[base_idx],
                                    len(train_set.classes), epochs=epochs, progress=progress,
                                    device=work_device)
            base.meta["dataset"] = dataset
            base.save(ckpt)
    base.check_shape(tuple(test_set.data.shape[1:]))
    # The first N test images (all by default): a smaller report set for the
    # expensive networks on a CPU; never used to choose anything.
    n_test = len(test_set.data) if not test_samples else min(test_samples, len(test_set.data))
    test_images = test_set.data[:n_test]
    test_x = base.preprocess(test_images)
    test_y = np.asarray(test_set.targets[:n_test])

    # The variant list is part of the name: heads explored with another set of variants are not reused.
    variant_tag = hashlib.sha256(",".join(variants or VARIANTS).encode()).hexdigest()[:6]
    cache_dir = work / f"caches-{base.fingerprint()[:12]}-h{head_samples}-v{val_samples}-he{head_epochs}-{variant_tag}"
    ex: Exploration | None = None
    if (cache_dir / "gati.pt").is_file() and not rebuild:
        say(f"reusing explored heads {cache_dir}")
        ex = load_exploration(cache_dir, base.fingerprint())
    if ex is None:
        torch.set_num_threads(train_threads or torch.get_num_threads())
        ex = explore(base, train_set.data[head_idx], train_set.targets[head_idx], train_set.data[val_idx],
                     train_set.targets[val_idx], variants=list(variants) if variants else None,
                     head_epochs=head_epochs, progress=say, device=work_device)
        retime = retime or torch.get_num_threads() != threads
    if retime:  # the cost model must see the thread count the latency is measured with
        torch.set_num_threads(threads)
        measure_latency(base, ex, say=say)
    if retime or not (cache_dir / "gati.pt").is_file():
        ex.save(cache_dir)

    # One pass over the test split gives every head's output on every test image;
    # accuracy of any composition is then exact bookkeeping (checked against the
    # real runtime on one configuration below).
    base_pred, test_conf, test_head_pred = test_outputs(base, ex, test_images, cache_dir, rebuild, say, work_device)
    base_acc = accuracy(base_pred, test_y)
    say(f"base test accuracy {base_acc:.2f}%")
    torch.set_num_threads(threads)
    rows = []
    runtime_eps1 = None
    for batch in batches:
        for eps in epsilons:
            comp = compose(ex, epsilon=eps, batch=batch, z=z)
            runtime = GatiRuntime.from_composition(base, ex, comp)
            _, gati_acc, rates = assess(ex, comp, test_conf, test_head_pred, test_y, base_pred)
            # The same search without the standard-error guard (z = 0): what
            # fitting the validation split exactly would have chosen, on test.
            loose = compose(ex, epsilon=eps, batch=batch, z=0.0)
            _, loose_acc, _ = assess(ex, loose, test_conf, test_head_pred, test_y, base_pred)
            names = comp.describe(ex)
            hit_rates = {name.split("@")[0]: rate for name, rate in zip(names, rates)}
            hit_rates["base"] = 100.0 - sum(rates)
            runtime_acc = None
            if batch == 1 and runtime_eps1 is None and abs(eps - 1.0) < 1e-9:
                runtime_eps1 = runtime
                with torch.inference_mode():
                    pred = np.concatenate([runtime.predict(test_x[s:s + 500]).labels.numpy()
                                           for s in range(0, len(test_x), 500)])
                runtime_acc = accuracy(pred, test_y)
                say(f"check: runtime accuracy {runtime_acc:.2f}% vs bookkeeping {gati_acc:.2f}%")
            b_ms, g_ms = paired_latency(base, runtime, test_x, batch, latency_requests if batch == 1 else max(10, latency_requests // batch))
            row = {
                "model": base.network, "batch": batch, "epsilon": eps, "heads": comp.describe(ex),
                "base_mean_ms": float(np.mean(b_ms)), "gati_mean_ms": float(np.mean(g_ms)),
                "base_p50_ms": _percentile(b_ms, 50), "gati_p50_ms": _percentile(g_ms, 50),
                "base_p99_ms": _percentile(b_ms, 99), "gati_p99_ms": _percentile(g_ms, 99),
                "speedup": float(np.mean(b_ms) / np.mean(g_ms)),
                "base_accuracy": base_acc, "gati_accuracy": gati_acc, "accuracy_loss": base_acc - gati_acc,
                "val_loss_bound": comp.loss_bound, "expected_speedup": comp.base_expected_ms / comp.expected_ms,
                "val_base_accuracy": comp.val_base_accuracy, "val_accuracy": comp.val_accuracy,
                "unguarded_heads": loose.describe(ex), "unguarded_accuracy_loss": base_acc - loose_acc,
                "unguarded_expected_speedup": loose.base_expected_ms / loose.expected_ms, "z": z,
                "gati_accuracy_runtime": runtime_acc, "hit_rates": hit_rates, "memory_bytes": comp.memory_bytes, "exact_search": comp.exact,
                "requests": len(b_ms), "epochs": int(base.meta.get("epochs", epochs)),
                "train_samples": int(base.meta.get("train_samples", train_samples)), "threads": threads,
                "test_samples": n_test, "head_samples": head_samples, "val_samples": val_samples,
                "train_seconds": base.meta.get("train_seconds"),
                "device": "cpu",
            }
            rows.append(row)
            say(f"batch {batch:>2} eps {eps:<4} speedup {row['speedup']:.2f}x  acc {gati_acc:.2f}% "
                f"(base {base_acc:.2f}%)  heads {' '.join(row['heads']) or '-'}")
    rpc_stats = None
    if rpc and runtime_eps1 is not None:
        rpc_stats = rpc_overhead(runtime_eps1, test_images[:latency_requests])
        say(f"RPC overhead {rpc_stats['overhead_mean_ms']:.3f} ms/request (mean round trip {rpc_stats['roundtrip_mean_ms']:.3f} ms)")
        for row in rows:
            row["rpc_overhead_ms"] = rpc_stats["overhead_mean_ms"]
    if gpu and torch.cuda.is_available():
        rows += gpu_rows(base, ex, rows, test_x, latency_requests, say, z)
    return {"rows": rows, "rpc": rpc_stats, "exploration": ex.summary(), "cache_dir": str(cache_dir)}


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
        r = dict(row, device="cuda", base_mean_ms=float(np.mean(b_ms)), gati_mean_ms=float(np.mean(g_ms)),
                 base_p50_ms=_percentile(b_ms, 50), gati_p50_ms=_percentile(g_ms, 50),
                 base_p99_ms=_percentile(b_ms, 99), gati_p99_ms=_percentile(g_ms, 99),
                 speedup=float(np.mean(b_ms) / np.mean(g_ms)), requests=len(b_ms), gati_accuracy_runtime=None)
        r.pop("rpc_overhead_ms", None)
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

    rows = [r for r in rows if r.get("device", "cpu") == "cpu"]
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
