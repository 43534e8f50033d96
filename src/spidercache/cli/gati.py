"""`spidercache gati ...`: learned inference caches (GATI): build, serve, query, bench, train-base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _epsilons(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--epsilons must be numbers separated by commas, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise UserError("--epsilons needs at least one value, none negative")
    return values


def _variants(text: Optional[str]) -> Optional[tuple[str, ...]]:
    from ..inference.heads import VARIANTS

    if not text:
        return None
    chosen = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        raise UserError(f"unknown head variant in {text!r}; choose from {', '.join(VARIANTS)}")
    return chosen


def register(app: typer.Typer) -> None:
    gati = typer.Typer(help="Learned caches inside a network for low-latency inference (GATI).", no_args_is_help=True)
    app.add_typer(gati, name="gati")

    @gati.command("train-base")
    def train_base(
        network: str = typer.Option("resnet18", "--network", help="alexnet, vgg11, vgg16, resnet18/34/50, small"),
        dataset: str = typer.Option("fashion-mnist", help="dataset name"),
        data_root: Optional[str] = typer.Option(None, help="dataset folder (default: the Debian package's)"),
        epochs: int = typer.Option(1, min=1),
        train_samples: int = typer.Option(20000, min=1, help="first N images of the fixed shuffled training split"),
        lr: float = typer.Option(0.05, min=1e-6, help="peak learning rate of the one-cycle schedule (deep nets want less)"),
        threads: Optional[int] = typer.Option(None, help="torch threads"),
        out: Path = typer.Option(..., "--out", help="checkpoint to write"),
    ) -> None:
        """Train a base network quickly (the full trainer is `spidercache train`)."""
        import torch

        from ..inference.basemodel import train_base_model
        from ..inference.bench import load_dataset, splits

        if threads:
            torch.set_num_threads(threads)
        ds = load_dataset(dataset, data_root, train=True)
        base_idx, _, _ = splits(len(ds), train_samples, 1, 1)
        base = train_base_model(network, ds.data[base_idx], ds.targets[base_idx], len(ds.classes), epochs=epochs, lr=lr,
                                progress=lambda s, t, l: _say(f"step {s}/{t} loss {l:.3f}") if s % 50 == 0 or s == t else None)
        base.meta["dataset"] = dataset
        base.save(out)
        _say(f"wrote {out} (fingerprint {base.fingerprint()[:12]})")

    @gati.command("build")
    def build(
        model: Path = typer.Option(..., "--model", help="base model checkpoint (state dict with metadata)"),
        out: Path = typer.Option(..., "--out", help="folder for the heads and their measurements"),
        dataset: str = typer.Option("fashion-mnist"),
        data_root: Optional[str] = typer.Option(None),
        train_samples: Optional[int] = typer.Option(None, help="images the base model trained on (skipped); default from the checkpoint"),
        head_samples: int = typer.Option(10000, min=2, help="images to train heads on"),
        val_samples: int = typer.Option(5000, min=2, help="validation images for thresholds (never the test split)"),
        head_epochs: int = typer.Option(8, min=1),
        variants: Optional[str] = typer.Option(None, help="comma-separated subset of gap_linear,pool2_mlp,pool4_mlp,conv1x1"),
        threads: Optional[int] = typer.Option(None),
    ) -> None:
        """Exploration: train every head variant at every layer; measure hit rate, accuracy, latency, memory."""
        import torch

        from ..inference.basemodel import load_checkpoint
        from ..inference.bench import load_dataset, splits
        from ..inference.explore import explore

        if threads:
            torch.set_num_threads(threads)
        chosen = list(_variants(variants) or ()) or None
        base = load_checkpoint(model)
        ds = load_dataset(dataset, data_root, train=True)
        base.check_shape(tuple(ds.data.shape[1:]))
        n_base = train_samples if train_samples is not None else int(base.meta.get("train_samples", 0)) or 1
        _, head_idx, val_idx = splits(len(ds), n_base, head_samples, val_samples)
        ex = explore(base, ds.data[head_idx], ds.targets[head_idx], ds.data[val_idx], ds.targets[val_idx],
                     variants=chosen, head_epochs=head_epochs, progress=_say)
        path = ex.save(out)
        _say(f"wrote {path} ({len(ex.heads)} heads, base fingerprint {ex.base_fingerprint[:12]})")

    @gati.command("serve")
    def serve(
        model: Path = typer.Option(..., "--model", help="base model checkpoint"),
        caches: Path = typer.Option(..., "--caches", help="folder written by `gati build`"),
        port: int = typer.Option(50053, min=0, max=65535),
        host: str = typer.Option("127.0.0.1"),
        epsilon: float = typer.Option(1.0, min=0.0, help="accuracy loss budget in points (validation split)"),
        memory_budget: Optional[int] = typer.Option(None, help="bytes for all heads together"),
        online: bool = typer.Option(True, help="retrain heads in the background from the base model's answers on misses"),
        threads: int = typer.Option(1, min=1, help="torch threads"),
    ) -> None:
        """Serve predictions over gRPC until interrupted."""
        import time

        import torch

        from ..inference.basemodel import load_checkpoint
        from ..inference.compose import compose
        from ..inference.explore import load_exploration
        from ..inference.runtime import GatiRuntime, OnlineRetrainer
        from ..inference.serve import GatiServicer, start_server

        torch.set_num_threads(threads)
        base = load_checkpoint(model)
        ex = load_exploration(caches, expected_fingerprint=base.fingerprint())
        comp = compose(ex, epsilon=epsilon, batch=1, memory_budget=memory_budget)
        runtime = GatiRuntime.from_composition(base, ex, comp)
        retrainer = OnlineRetrainer(runtime).start() if online else None
        classes = None
        if base.meta.get("dataset", "fashion-mnist") == "fashion-mnist":
            from ..data.datasets import FASHION_MNIST_CLASSES

            classes = list(FASHION_MNIST_CLASSES)
        server, bound = start_server(GatiServicer(runtime, classes, epsilon), port=port, host=host)
        _say(f"serving {base.network} with heads {' '.join(comp.describe(ex)) or '(none)'} on {host}:{bound} "
             f"(validation: base {comp.val_base_accuracy:.2f}%, gati {comp.val_accuracy:.2f}%, "
             f"expected speedup {comp.base_expected_ms / comp.expected_ms:.2f}x)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            if retrainer is not None:
                retrainer.stop()
            server.stop(1)

    @gati.command("query")
    def query(
        images: List[Path] = typer.Argument(..., help="PNG/JPEG or .npy images"),
        address: str = typer.Option("127.0.0.1:50053", help="host:port of `gati serve`"),
        as_json: bool = typer.Option(False, "--json"),
        timeout: float = typer.Option(10.0),
    ) -> None:
        """Ask a GATI server; prints prediction, answering layer and latency per image."""
        from ..inference.serve import GatiClient, read_image

        client = GatiClient(address, timeout)
        try:
            results = []
            for path in images:
                r = client.predict(read_image(path))
                results.append({"image": str(path), "prediction": r.prediction, "label": r.label, "layer": r.layer,
                                "layer_index": r.layer_index, "confidence": r.confidence,
                                "server_ms": r.server_ms, "latency_ms": r.roundtrip_ms})
                if not as_json:
                    typer.echo(f"{path}: {r.prediction} ({r.label}) answered by {r.layer} "
                               f"conf {r.confidence:.3f} in {r.roundtrip_ms:.2f} ms (model {r.server_ms:.2f} ms)")
            if as_json:
                typer.echo(json.dumps(results, indent=1))
        finally:
            client.close()

    @gati.command("bench")
    def bench(
        model: str = typer.Option("resnet18", "--model", help="network to train, or ignored with --checkpoint"),
        dataset: str = typer.Option("fashion-mnist"),
        data_root: Optional[str] = typer.Option(None),
        checkpoint: Optional[str] = typer.Option(None, help="benchmark this trained checkpoint instead of training"),
        epochs: int = typer.Option(1, min=1),
        train_samples: int = typer.Option(20000, min=1),
        head_samples: int = typer.Option(10000, min=2),
        val_samples: int = typer.Option(5000, min=2),
        head_epochs: int = typer.Option(8, min=1),
        epsilons: str = typer.Option("0.25,0.5,1,1.5,2,3", help="accuracy-loss budgets in points"),
        batches: str = typer.Option("1,32"),
        requests: int = typer.Option(300, min=10, help="timed requests at batch 1 (batch B: requests/B)"),
        test_samples: Optional[int] = typer.Option(None, min=1, help="report on the first N test images (default: all)"),
        variants: Optional[str] = typer.Option(None, help="explore only these head variants (comma-separated)"),
        retime: bool = typer.Option(False, help="re-measure unit and head latencies of reused heads before composing"),
        z: float = typer.Option(1.0, help="standard errors added to the validation loss (overfitting guard)"),
        threads: int = typer.Option(1, min=1, help="torch threads while timing"),
        train_threads: Optional[int] = typer.Option(None, help="torch threads while training"),
        work_dir: str = typer.Option("~/.cache/spidercache/gati", help="trained models and heads are kept here"),
        rebuild: bool = typer.Option(False, help="retrain even if a matching model/heads exist in --work-dir"),
        rpc: bool = typer.Option(True, help="also measure gRPC overhead on loopback"),
        gpu: bool = typer.Option(False, help="also time the same compositions on a CUDA GPU when there is one"),
        as_json: bool = typer.Option(False, "--json"),
        plot: Optional[str] = typer.Option(None, "--plot", help="PNG: latency against accuracy"),
    ) -> None:
        """Base network against GATI over several epsilons, at batch 1 and 32."""
        from ..inference import bench as gb

        try:
            batch_sizes = tuple(int(b) for b in batches.split(","))
        except ValueError:
            raise UserError(f"--batches must be integers separated by commas, got {batches!r}") from None
        result = gb.run_bench(model=model, dataset=dataset, data_root=data_root, epochs=epochs,
                              train_samples=train_samples, head_samples=head_samples, val_samples=val_samples,
                              epsilons=_epsilons(epsilons), batches=batch_sizes, latency_requests=requests,
                              checkpoint=checkpoint, work_dir=work_dir, train_threads=train_threads, threads=threads,
                              z=z, head_epochs=head_epochs, rpc=rpc, rebuild=rebuild, gpu=gpu,
                              test_samples=test_samples, variants=_variants(variants), retime=retime, say=_say)
        rows = result["rows"]
        if plot:
            gb.plot(rows, plot)
            _say(f"wrote {plot}")
        if as_json:
            typer.echo(json.dumps(rows, indent=1, default=float))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"GATI on {rows[0]['model']} ({rows[0]['epochs']} epoch(s), {rows[0]['train_samples']} images)")
        for col in ("dev", "batch", "ε", "heads", "base ms", "gati ms", "base p99", "gati p99", "speedup", "base acc", "gati acc", "loss"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.get("device", "cpu"), str(r["batch"]), f"{r['epsilon']:g}", " ".join(r["heads"]) or "-", f"{r['base_mean_ms']:.2f}",
                          f"{r['gati_mean_ms']:.2f}", f"{r['base_p99_ms']:.2f}", f"{r['gati_p99_ms']:.2f}",
                          f"{r['speedup']:.2f}x", f"{r['base_accuracy']:.2f}", f"{r['gati_accuracy']:.2f}",
                          f"{r['accuracy_loss']:+.2f}")
        Console().print(table)
        if result["rpc"]:
            rp = result["rpc"]
            Console().print(f"gRPC loopback overhead: mean {rp['overhead_mean_ms']:.3f} ms, p50 {rp['overhead_p50_ms']:.3f} ms "
                            f"per request (round trip {rp['roundtrip_mean_ms']:.3f} ms); beyond the whole handler "
                            f"p50 {rp['overhead_vs_handler_p50_ms']:.3f} ms; an empty call alone p50 "
                            f"{rp['empty_rpc_p50_ms']:.3f} ms (load average {rp['load_average']:.1f})")
