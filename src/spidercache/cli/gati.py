"""`spidercache gati ...`: learned inference caches (GATI): train-base, build, serve, query, eval, bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..bench.gati_options import (
    DATASET_HELP,
    FOLDS_HELP,
    HOLDOUT_HELP,
    PRECISION_HELP,
    check_device,
    parse_variants,
)
from ..checks import at_least, between, positive
from .bench import PASS_THROUGH, run_command


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _quiet_grpc() -> None:
    """No gRPC C-core log lines on stderr: a bad address or host must end in its one ``error:`` line.

    gRPC reads GRPC_VERBOSITY when it is first imported, so this runs before; a value the user
    set (to debug gRPC) is kept.
    """
    import os

    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


gati = typer.Typer(
    help="Learned caches inside a network for low-latency inference (GATI).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(gati, name="gati")


@gati.command("train-base")
def train_base(
    network: str = typer.Option(
        "resnet18", "--network", help="alexnet, vgg11, vgg16, resnet18/34/50, small, se-lresnet18e-ir"
    ),
    dataset: str = typer.Option("fashion-mnist", help=DATASET_HELP),
    data_root: Optional[str] = typer.Option(
        None, help="Fashion-MNIST folder (default: the Debian package's)"
    ),
    image_size: Optional[int] = typer.Option(
        None, help="train at this size (images resized); default native"
    ),
    stem: Optional[str] = typer.Option(
        None, help="ResNets: cifar (28-32 px, default) or imagenet (64-224 px)"
    ),
    epochs: int = typer.Option(30, help="most epochs (with --converge) or exactly this many"),
    converge: bool = typer.Option(True, help="stop when validation accuracy stops improving"),
    train_samples: int = typer.Option(20000, help="first N images of the fixed shuffled training split"),
    head_samples: int = typer.Option(10000, help="images set aside for `gati build`'s heads"),
    val_samples: int = typer.Option(5000, help="validation images (convergence; thresholds later)"),
    lr: float = typer.Option(0.05, help="peak learning rate (deep nets want less)"),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    threads: Optional[int] = typer.Option(None, help="torch threads"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    out: Path = typer.Option(..., "--out", help="checkpoint to write"),
    as_json: bool = typer.Option(False, "--json", help="print what was trained as JSON on stdout"),
) -> None:
    """Train a base network (the full trainer is `spidercache train`); progress with an ETA on stderr."""
    import torch

    from ..inference.build import train_base as train
    from ..inference.datasets import load_splits
    from ..inference.training import check_precision

    given = dict(locals())
    at_least(1, flag=True, epochs=epochs, train_samples=train_samples, threads=threads)
    at_least(1, flag=True, head_samples=head_samples, val_samples=val_samples)
    between(8, 1024, flag=True, image_size=image_size)
    positive(flag=True, lr=lr)
    check_precision(precision)
    dev = check_device(device)
    from ..models import network_key
    from ..paths import check_output_path

    network_key(network)  # an unknown name fails before any line is printed
    check_output_path(out)
    if threads:
        torch.set_num_threads(threads)
    data = load_splits(dataset, data_root, image_size)
    if data.note:
        _say(data.note)
    keys = (
        "stem",
        "image_size",
        "epochs",
        "converge",
        "train_samples",
        "head_samples",
        "val_samples",
        "lr",
        "precision",
    )
    base = train(data, network, device=dev, say=_say, checkpoint=out, **{k: given[k] for k in keys})
    _say(f"wrote {out} (fingerprint {base.fingerprint()[:12]})")
    if as_json:
        info = {"checkpoint": str(out), "network": base.network, "stem": base.stem}
        info.update(classifier=base.classifier, input_shape=list(base.input_shape))
        info.update(num_classes=base.num_classes, fingerprint=base.fingerprint(), **base.meta)
        typer.echo(json.dumps(info, indent=1, default=float))


@gati.command("build")
def build(
    model: Path = typer.Option(..., "--checkpoint", help="base model checkpoint (state dict with metadata)"),
    out: Path = typer.Option(..., "--out", help="folder for the heads and their measurements"),
    dataset: str = typer.Option("fashion-mnist", help=DATASET_HELP),
    data_root: Optional[str] = typer.Option(None),
    image_size: Optional[int] = typer.Option(None, help="decode ImageFolder trees at this size"),
    train_samples: Optional[int] = typer.Option(
        None, help="images the base trained on (skipped); default from it"
    ),
    head_samples: int = typer.Option(10000, help="images to train heads on"),
    val_samples: int = typer.Option(5000, help="validation images for thresholds (never the test split)"),
    head_epochs: int = typer.Option(8),
    variants: Optional[str] = typer.Option(
        None, help="comma-separated subset of gap_linear,pool2_mlp,pool4_mlp,conv1x1"
    ),
    threads: Optional[int] = typer.Option(None),
    device: str = typer.Option("cpu", help="cpu or cuda (activations and head training)"),
    as_json: bool = typer.Option(False, "--json", help="print the exploration summary as JSON on stdout"),
) -> None:
    """Exploration: train every head variant at every layer; measure hit rate, accuracy, latency, size."""
    import torch

    from ..inference.basemodel import load_checkpoint
    from ..inference.build import build_caches
    from ..inference.datasets import load_splits

    at_least(2, flag=True, head_samples=head_samples, val_samples=val_samples)
    at_least(1, flag=True, head_epochs=head_epochs, threads=threads)
    dev = check_device(device)
    if threads:
        torch.set_num_threads(threads)
    base = load_checkpoint(model)
    data = load_splits(dataset, data_root, image_size or base.input_shape[1])
    if data.note:
        _say(data.note)
    ex = build_caches(
        base,
        data,
        train_samples=train_samples,
        head_samples=head_samples,
        val_samples=val_samples,
        head_epochs=head_epochs,
        variants=list(parse_variants(variants) or ()) or None,
        device=dev,
        say=_say,
    )
    path = ex.save(out)
    _say(f"wrote {path} ({len(ex.heads)} heads, base fingerprint {ex.base_fingerprint[:12]})")
    if as_json:
        typer.echo(json.dumps(ex.summary(), indent=1, default=float))


def _class_names(base) -> list[str] | None:
    """The names replies carry: stored by train-base; older checkpoints have none (Fashion-MNIST's own)."""
    classes = base.meta.get("classes")
    if isinstance(classes, list) and len(classes) == base.num_classes:
        return [str(c) for c in classes]
    if base.meta.get("dataset", "fashion-mnist") in ("fashion-mnist", "fashion-mnist-train"):
        from ..data.datasets import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)
    return None


@gati.command("serve")
def serve(
    model: Path = typer.Option(..., "--checkpoint", help="base model checkpoint"),
    caches: Path = typer.Option(..., "--caches", help="folder written by `gati build`"),
    port: int = typer.Option(50053, help="0 picks a free port"),
    host: str = typer.Option("127.0.0.1"),
    epsilon: float = typer.Option(1.0, help="accuracy loss budget in points (validation split)"),
    holdout: float = typer.Option(0.0, help=HOLDOUT_HELP),
    folds: int = typer.Option(4, help=FOLDS_HELP),
    memory_budget: Optional[int] = typer.Option(
        None, help="bytes for all heads together (0: no heads, the base network alone)"
    ),
    online: bool = typer.Option(
        True, help="retrain heads in the background from the base model's answers on misses"
    ),
    batch_window_ms: float = typer.Option(
        2.0, help="gather concurrent requests this long into one batch (0: batch 1)"
    ),
    max_batch: int = typer.Option(32, help="largest batch the server forms"),
    batch_workers: int = typer.Option(1, help="batches in flight (gatherers)"),
    batch_chunks: int = typer.Option(1, help="split a batch over this many threads (batches >= 4 ms)"),
    threads: int = typer.Option(1, help="torch threads"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
) -> None:
    """Serve predictions over gRPC until interrupted; concurrent requests are batched."""
    _quiet_grpc()
    import time

    import torch

    from ..inference.basemodel import load_checkpoint
    from ..inference.batching import Batcher
    from ..inference.compose import check_folds, check_holdout, compose
    from ..inference.explore import load_exploration
    from ..inference.runtime import GatiRuntime, OnlineRetrainer
    from ..inference.serve import GatiServicer, start_server

    between(0, 65535, flag=True, port=port)
    at_least(1, flag=True, threads=threads, max_batch=max_batch, batch_workers=batch_workers)
    at_least(1, flag=True, batch_chunks=batch_chunks)
    at_least(0, flag=True, epsilon=epsilon, memory_budget=memory_budget)
    # finite: an infinite window never closes and every request would time out
    between(0, 60_000, flag=True, batch_window_ms=batch_window_ms)
    check_holdout(holdout)
    check_folds(folds)
    dev = check_device(device)
    torch.set_num_threads(threads)
    base = load_checkpoint(model)
    ex = load_exploration(caches, expected_fingerprint=base.fingerprint())
    comp = compose(ex, epsilon=epsilon, batch=1, memory_budget=memory_budget, holdout=holdout, folds=folds)
    runtime = GatiRuntime.from_composition(base, ex, comp).to(dev)
    retrainer = OnlineRetrainer(runtime).start() if online and dev == "cpu" else None
    batcher = (
        Batcher(runtime, batch_window_ms, max_batch, dev, batch_workers, batch_chunks)
        if batch_window_ms > 0
        else None
    )
    classes = _class_names(base)
    server, bound = start_server(GatiServicer(runtime, classes, epsilon, batcher, dev), port=port, host=host)
    _say(
        f"serving {base.network} with heads {' '.join(comp.describe(ex)) or '(none)'} on {host}:{bound} "
        f"({dev}, batching window {batch_window_ms:g} ms; validation: "
        f"base {comp.val_base_accuracy:.2f}%, gati {comp.val_accuracy:.2f}%, "
        f"expected speedup {comp.base_expected_ms / comp.expected_ms:.2f}x)"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if retrainer is not None:
            retrainer.stop()
        server.stop(1)
        if batcher is not None:
            batcher.close()


@gati.command("query")
def query(
    images: List[Path] = typer.Argument(..., help="PNG/JPEG or .npy images"),
    address: str = typer.Option("127.0.0.1:50053", help="host:port of `gati serve`"),
    as_json: bool = typer.Option(False, "--json"),
    timeout: float = typer.Option(10.0),
) -> None:
    """Ask a GATI server; prints prediction, answering layer and latency per image."""
    _quiet_grpc()
    from ..inference.serve import GatiClient, read_image

    client = GatiClient(address, timeout)
    try:
        results = []
        noted = set()
        for path in images:
            r = client.predict(read_image(path))
            if r.note and r.note not in noted:  # once per size
                noted.add(r.note)
                _say(r.note)
            results.append(
                {
                    "image": str(path),
                    "prediction": r.prediction,
                    "label": r.label,
                    "layer": r.layer,
                    "layer_index": r.layer_index,
                    "confidence": r.confidence,
                    "server_ms": r.server_ms,
                    "latency_ms": r.roundtrip_ms,
                }
            )
            if not as_json:
                typer.echo(
                    f"{path}: {r.prediction} ({r.label}) answered by {r.layer} "
                    f"conf {r.confidence:.3f} in {r.roundtrip_ms:.2f} ms (model {r.server_ms:.2f} ms)"
                )
        if as_json:
            typer.echo(json.dumps(results, indent=1))
    finally:
        client.close()


@gati.command("eval")
def evaluate_cmd(
    model: Path = typer.Option(..., "--checkpoint", help="base model checkpoint"),
    dataset: str = typer.Option("fashion-mnist", help=DATASET_HELP),
    data_root: Optional[str] = typer.Option(None),
    pairs: Optional[Path] = typer.Option(None, help="LFW-format pairs.txt: also verification accuracy"),
    pairs_root: Optional[Path] = typer.Option(
        None, help="folder of person folders for --pairs (default: --dataset)"
    ),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Test accuracy of a base network (identification for a face model); with --pairs, verification."""
    from ..inference.basemodel import evaluate, load_checkpoint
    from ..inference.datasets import check_classes, load_splits

    dev = check_device(device)
    base = load_checkpoint(model)
    data = load_splits(dataset, data_root, base.input_shape[1])
    if data.note:
        _say(data.note)
    check_classes(base.num_classes, data)
    result = {
        "network": base.network,
        "classifier": base.classifier,
        "test_images": len(data.test_labels),
        "test_accuracy": evaluate(base, data.test_images, data.test_labels, dev),
    }
    if pairs is not None:
        from ..inference.faces import verify_pairs

        root = pairs_root or Path(dataset.split(",")[0])
        result.update(verify_pairs(base, pairs, root, dev))
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(
        f"{base.network} ({base.classifier} classifier): test accuracy {result['test_accuracy']:.2f}% "
        f"on {result['test_images']} images"
    )
    if pairs is not None:
        typer.echo(
            f"verification: {result['verification_accuracy']:.2f}% on {result['pairs']} pairs "
            f"({result['folds']}-fold)"
        )


@gati.command("bench", context_settings=PASS_THROUGH)
def _bench(ctx: typer.Context) -> None:
    """Base network against GATI over several epsilons; serving and online retraining figures."""
    run_command("gati", list(ctx.args), "spidercache gati bench")  # the same command as `bench gati`
