"""`spidercache gati bench`: the GATI benchmark (``bench.gati.run``) from the command line."""

from __future__ import annotations

import json
from typing import Optional

import typer

from ..errors import UserError
from .gati import DATASET_HELP, _device, _epsilons, _positive, _say, _variants

_COUNTED = (
    "epochs",
    "train_samples",
    "head_samples",
    "val_samples",
    "requests",
    "test_samples",
    "threads",
    "train_threads",
    "clients",
    "head_epochs",
    "stream_requests",
)


def _check(batches: str, gpu: bool, counts: dict[str, int | None], opts: dict) -> tuple[int, ...]:
    from ..models import network_key
    from ..paths import check_output_path

    if opts["checkpoint"] is None:
        network_key(opts["model"])  # an unknown network fails before the training line
    if opts["plot"]:
        check_output_path(opts["plot"])
    try:
        batch_sizes = tuple(int(b) for b in batches.split(","))
    except ValueError:
        raise UserError(f"--batches must be integers separated by commas, got {batches!r}") from None
    for name, v in counts.items():
        _positive(name, v, 10 if name in ("--requests", "--stream-requests") else 1)
    if min(batch_sizes) < 1:
        raise UserError("--batches must be positive")
    if gpu:
        _device("cuda")
    return batch_sizes


def register_bench(gati: typer.Typer) -> None:
    @gati.command("bench")
    def bench(
        model: str = typer.Option(
            "resnet18", "--network", help="network to train, or ignored with --checkpoint"
        ),
        dataset: str = typer.Option("fashion-mnist", help=DATASET_HELP),
        data_root: Optional[str] = typer.Option(None),
        image_size: Optional[int] = typer.Option(
            None, help="input size of the trained base (images resized)"
        ),
        stem: Optional[str] = typer.Option(None, help="ResNets: cifar or imagenet"),
        checkpoint: Optional[str] = typer.Option(
            None, help="benchmark this trained checkpoint instead of training"
        ),
        epochs: int = typer.Option(30, help="most epochs (with --converge) or exactly this many"),
        converge: bool = typer.Option(True, help="train the base until validation accuracy stops improving"),
        lr: float = typer.Option(0.05),
        train_samples: int = typer.Option(20000),
        head_samples: int = typer.Option(10000),
        val_samples: int = typer.Option(5000),
        head_epochs: int = typer.Option(8),
        epsilons: str = typer.Option("0.25,0.5,1,1.5,2,3", help="accuracy-loss budgets in points"),
        batches: str = typer.Option("1,32"),
        requests: int = typer.Option(300, help="timed requests at batch 1 (batch B: requests/B)"),
        test_samples: Optional[int] = typer.Option(
            None, help="report on the first N test images (default: all)"
        ),
        variants: Optional[str] = typer.Option(
            None, help="explore only these head variants (comma-separated)"
        ),
        retime: bool = typer.Option(
            False, help="re-measure unit and head latencies of reused heads before composing"
        ),
        z: float = typer.Option(1.0, help="standard errors added to the validation loss (overfitting guard)"),
        threads: int = typer.Option(1, help="torch threads while timing"),
        train_threads: Optional[int] = typer.Option(None, help="torch threads while training"),
        work_dir: str = typer.Option(
            "~/.cache/spidercache/gati", help="trained models and heads are kept here"
        ),
        rebuild: bool = typer.Option(
            False, help="retrain even if a matching model/heads exist in --work-dir"
        ),
        rpc: bool = typer.Option(True, help="also measure gRPC overhead on loopback"),
        serving: bool = typer.Option(True, help="batch-1 against batched serving under concurrent clients"),
        clients: int = typer.Option(8, help="concurrent clients for the serving figure"),
        window_ms: float = typer.Option(2.0, help="batching window of the batched server"),
        stream: bool = typer.Option(True, help="online retraining on a shifting stream"),
        stream_requests: int = typer.Option(3000, help="requests in the shifting stream"),
        stream_rate: float = typer.Option(500.0, help="arrivals per second in the stream (0: back to back)"),
        gpu: bool = typer.Option(
            False, help="also time the same compositions on a CUDA GPU (error when none)"
        ),
        train_device: Optional[str] = typer.Option(
            None, help="cpu or cuda for training (default: cuda if any)"
        ),
        as_json: bool = typer.Option(False, "--json"),
        plot: Optional[str] = typer.Option(None, "--plot", help="PNG: latency against accuracy"),
    ) -> None:
        """Base network against GATI over several epsilons; serving and online retraining figures."""
        opts = dict(locals())  # the flags are run()'s options, but for these:
        counts = {f"--{k.replace('_', '-')}": opts[k] for k in _COUNTED}
        opts.update(
            batches=_check(opts.pop("batches"), gpu, counts, opts),
            latency_requests=opts.pop("requests"),
            epsilons=_epsilons(epsilons),
            variants=_variants(variants),
            train_device=_device(train_device) if train_device else None,
        )
        del opts["as_json"], opts["plot"]
        from ..bench import gati as gb

        rows = gb.run(say=_say, **opts)
        if plot:
            gb.plot(rows, plot)
            _say(f"wrote {plot}")
        if as_json:
            typer.echo(json.dumps(rows, indent=1, default=float))
            return
        gb.print_tables(rows)
