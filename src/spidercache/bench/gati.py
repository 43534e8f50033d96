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
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..checks import at_least
from ..errors import UserError
from ..inference.basemodel import BaseModel, accuracy, evaluate, load_checkpoint, resize_images
from ..inference.build import images_for, train_base
from ..inference.compose import check_folds, check_holdout, compose
from ..inference.datasets import DEFAULT_DATASET, ImageSplits, check_classes, load_splits, splits
from ..inference.explore import Exploration, explore, load_exploration, measure_latency
from ..inference.heads import VARIANTS
from ..inference.resume import run_key
from ..inference.runtime import GatiRuntime
from ..inference.training import check_precision
from ..paths import check_output_path
from .gati_latency import gpu_rows, latency_rows, test_outputs
from .gati_options import HELP, OPTION_NAMES, check_device, parse_variants
from .gati_report import plot as draw_plot
from .gati_report import tables as table
from .runner import parse_numbers

# what the runner reads: the function, its options' help and flag names, the printed table
__all__ = ["HELP", "OPTION_NAMES", "run", "table"]

# counts checked before any work, by the lowest value each may take
_COUNTS = {
    1: "epochs train_samples head_samples val_samples test_samples threads train_threads clients head_epochs",
    10: "requests stream_requests",
}


def run(
    model: str = "resnet18",
    dataset: str = DEFAULT_DATASET,
    data_root: Optional[str] = None,
    image_size: Optional[int] = None,
    stem: Optional[str] = None,
    checkpoint: Optional[str] = None,
    epochs: int = 30,
    converge: bool = True,
    lr: float = 0.05,
    precision: str = "fp32",
    train_samples: int = 20000,
    head_samples: int = 10000,
    val_samples: int = 5000,
    head_epochs: int = 8,
    epsilons: str = "0.25,0.5,1,1.5,2,3",
    batches: str = "1,32",
    requests: int = 300,
    test_samples: Optional[int] = None,
    variants: Optional[str] = None,
    retime: bool = False,
    z: float = 1.0,
    holdout: float = 0.0,
    folds: int = 4,
    threads: int = 1,
    train_threads: Optional[int] = None,
    work_dir: str = "~/.cache/spidercache/gati",
    rebuild: bool = False,
    rpc: bool = True,
    serving: bool = True,
    clients: int = 8,
    window_ms: float = 2.0,
    stream: bool = True,
    stream_requests: int = 3000,
    stream_rate: float = 500.0,
    gpu: bool = False,
    train_device: Optional[str] = None,
    plot: Optional[str] = None,
    log: Callable[[str], None] = lambda _m: None,
) -> list[dict]:
    """Base network against GATI over several epsilons; serving and online retraining figures."""
    o = dict(locals())
    del o["plot"], o["log"]
    o = _options(o)
    if plot:
        check_output_path(plot)
    rows = _rows(o, log)
    if plot:
        draw_plot(rows, plot)
        log(f"wrote {plot}")
    return rows


def _options(o: dict) -> dict:
    """The run's settings (``o``: its options), every one checked before any work starts."""
    from ..models import network_key

    if o["checkpoint"] is None:
        network_key(o["model"])  # an unknown network fails before the training line
    for low, names in _COUNTS.items():
        at_least(low, flag=True, **{k: o[k] for k in names.split()})
    o["batches"] = tuple(parse_numbers("--batches", o["batches"], int))
    at_least(1, flag=True, batches=min(o["batches"]))
    o["epsilons"] = tuple(parse_numbers("--epsilons", o["epsilons"], float))
    if min(o["epsilons"]) < 0:
        raise UserError("--epsilons: an accuracy-loss budget cannot be negative")
    o["variants"] = parse_variants(o["variants"])
    check_precision(o["precision"])
    check_holdout(o["holdout"])
    check_folds(o["folds"])
    o["latency_requests"] = o.pop("requests")
    if o["gpu"]:
        check_device("cuda")
    if o["train_device"]:
        check_device(o["train_device"])
    return o


def _rows(o: dict, say: Callable[[str], None]) -> list[dict]:
    """The benchmark's rows for the checked settings ``o``."""
    if o["gpu"] and not torch.cuda.is_available():
        raise UserError("--gpu: no CUDA GPU is visible to torch on this machine")
    work = Path(o["work_dir"]).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    data = load_splits(o["dataset"], o["data_root"], o["image_size"])
    if data.note:
        say(data.note)
    base_idx, head_idx, val_idx = splits(
        len(data.train_images), o["train_samples"], o["head_samples"], o["val_samples"]
    )
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
    base_pred, test_conf, test_head_pred = test_outputs(
        base, ex, test_images, cache_dir, o["rebuild"], say, work_device
    )
    base_acc = accuracy(base_pred, test_y)
    say(f"base test accuracy {base_acc:.2f}% (validation {val_acc:.2f}%)")
    rows = [_base_row(base, o, base_acc, val_acc, n_test, data)]
    torch.set_num_threads(o["threads"])
    test_x = base.preprocess(test_images)
    lat, runtime_eps1 = latency_rows(o, base, ex, test_x, test_y, test_conf, test_head_pred, base_pred, say)
    rows += lat
    if o["gpu"]:
        outputs = (test_y, test_conf, test_head_pred, base_pred)
        rows += gpu_rows(base, ex, lat, test_x, outputs, o["latency_requests"], say, o["z"])
    if runtime_eps1 is not None:
        rows += _serving_rows(o, runtime_eps1, test_images, say)
    if o["stream"] and runtime_eps1 is not None:
        from ..inference.stream import drift_stream

        comp = compose(ex, epsilon=1.0, batch=1, z=o["z"], holdout=o["holdout"], folds=o["folds"])
        rows += drift_stream(
            lambda: GatiRuntime.from_composition(base, ex, comp),
            test_images,
            test_y,
            requests=o["stream_requests"],
            rate=o["stream_rate"],
            say=say,
        )
    for r in rows:
        r.setdefault("load_average", os.getloadavg()[0])
    return rows


def _base_model(
    o: dict, data: ImageSplits, base_idx, val_idx, work: Path, device: str, say: Callable[[str], None]
) -> BaseModel:
    """The checkpoint given, or one trained here (kept in ``work`` under a name that says how)."""
    if o["checkpoint"]:
        base = load_checkpoint(o["checkpoint"])
        if base.network != o["model"]:
            say(f"checkpoint holds {base.network}; benchmarking it instead of {o['model']}")
        return base
    tag = hashlib.sha256(f"{o['dataset']}|{o['data_root']}|{o['image_size']}".encode()).hexdigest()[:8]
    mode = "conv" if o["converge"] else "e"
    ckpt = work / (
        f"{o['model']}-{o['stem'] or 'cifar'}-{tag}-{mode}{o['epochs']}-n{o['train_samples']}"
        f"-v{o['val_samples']}-lr{o['lr']:g}{'' if o['precision'] == 'fp32' else '-' + o['precision']}.pt"
    )
    if ckpt.is_file() and not o["rebuild"]:
        say(f"reusing base model {ckpt}")
        return load_checkpoint(ckpt)
    return train_base(  # an interrupted training of this base goes on from its last epoch
        data,
        o["model"],
        stem=o["stem"],
        image_size=o["image_size"],
        epochs=o["epochs"],
        converge=o["converge"],
        train_samples=o["train_samples"],
        head_samples=o["head_samples"],
        val_samples=o["val_samples"],
        lr=o["lr"],
        device=device,
        say=say,
        checkpoint=ckpt,
        fresh=o["rebuild"],
        precision=o["precision"],
    )


def _heads(
    o: dict,
    base: BaseModel,
    train_x: np.ndarray,
    train_y: np.ndarray,
    head_idx,
    val_idx,
    work: Path,
    device: str,
    say: Callable[[str], None],
) -> tuple[Exploration, Path]:
    """Explored heads for ``base``: reused from ``work`` when they match, else trained and timed."""
    variants = o["variants"]
    # The variant list is part of the name: heads explored with another set of variants are not reused.
    variant_tag = hashlib.sha256(",".join(variants or VARIANTS).encode()).hexdigest()[:6]
    # So is the data the heads learn and are validated on (a digest of those images and labels):
    # heads of another dataset with the same sizes would otherwise be reused for this one.
    val_key = run_key(train_x[val_idx], train_y[val_idx])
    data_tag = run_key(train_x[head_idx], train_y[head_idx], val=val_key)[:8]
    cache_dir = work / (
        f"caches-{base.fingerprint()[:12]}-{data_tag}-h{o['head_samples']}-v{o['val_samples']}"
        f"-he{o['head_epochs']}-{variant_tag}"
    )
    ex: Exploration | None = None
    retime = o["retime"]
    if (cache_dir / "gati.pt").is_file() and not o["rebuild"]:
        say(f"reusing explored heads {cache_dir}")
        ex = load_exploration(cache_dir, base.fingerprint())
    if ex is None:
        torch.set_num_threads(o["train_threads"] or torch.get_num_threads())
        ex = explore(
            base,
            train_x[head_idx],
            train_y[head_idx],
            train_x[val_idx],
            train_y[val_idx],
            variants=list(variants) if variants else None,
            head_epochs=o["head_epochs"],
            progress=say,
            device=device,
        )
        retime = retime or torch.get_num_threads() != o["threads"]
    if retime:  # the cost model must see the thread count the latency is measured with
        torch.set_num_threads(o["threads"])
        measure_latency(base, ex, say=say)
    if retime or not (cache_dir / "gati.pt").is_file():
        ex.save(cache_dir)
    return ex, cache_dir


def _base_row(
    base: BaseModel, o: dict, base_acc: float, val_acc: float, n_test: int, data: ImageSplits
) -> dict:
    meta = base.meta
    return {
        "section": "base",
        "model": base.network,
        "stem": base.stem or "cifar",
        "dataset": data.name,
        "input_shape": list(base.input_shape),
        "num_classes": base.num_classes,
        "test_accuracy": base_acc,
        "val_accuracy": val_acc,
        "epochs": meta.get("epochs"),
        "best_epoch": meta.get("best_epoch"),
        "converged": meta.get("converged"),
        "max_epochs": meta.get("max_epochs"),
        "val_history": meta.get("val_history"),
        "train_samples": meta.get("train_samples"),
        "train_seconds": meta.get("train_seconds"),
        "test_samples": n_test,
        "dataset_note": data.note,
        "checkpoint": o["checkpoint"],
    }


def _serving_rows(
    o: dict, runtime: GatiRuntime, test_images: np.ndarray, say: Callable[[str], None]
) -> list[dict]:
    """RPC overhead at batch 1 and batch-1 against batched serving under concurrent clients."""
    from ..inference.loadtest import compare_serving, rpc_overhead

    rows = []
    if o["rpc"]:
        r = rpc_overhead(runtime, test_images[: o["latency_requests"]])
        say(
            f"RPC overhead {r['overhead_mean_ms']:.3f} ms/request "
            f"(mean round trip {r['roundtrip_mean_ms']:.3f} ms)"
        )
        rows.append({"section": "rpc", **r})
    if o["serving"]:  # batch-1 and batched side by side, each at its best thread setting, two rounds
        per_client = max(20, o["latency_requests"] // 4)
        rows += compare_serving(runtime, test_images, o["clients"], per_client, o["window_ms"], 2, say)
    return rows
