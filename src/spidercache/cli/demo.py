"""`spidercache demo`: the main job that `make demo` runs.

It is `spidercache train` with no flags (small CNN, Fashion-MNIST, in-process
cache at 10% working set, 5 ms emulated storage), cut to 3 epochs on a fixed
random subset of 6,000 training and 2,000 test images so that it finishes in
about a minute on two cores.
"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        epochs: int = typer.Option(3, "--epochs"),
        train_samples: int = typer.Option(6000, "--train-samples"),
        test_samples: int = typer.Option(2000, "--test-samples"),
        plot: str = typer.Option("", "--plot", help="Also write a PNG with hit ratio and accuracy."),
        json_out: bool = typer.Option(False, "--json", help="Print the rows and summary as JSON."),
    ) -> None:
        """Train the small CNN on Fashion-MNIST through a 10% in-process cache over 5 ms storage."""
        from ..checks import at_least
        from ..data.train import TrainConfig, train
        from .train import print_summary

        # 0 would mean the whole set: not a one-minute demo
        at_least(1, flag=True, train_samples=train_samples, test_samples=test_samples)
        cfg = TrainConfig(
            epochs=epochs,
            train_samples=train_samples,
            test_samples=test_samples,
            plot=plot or None,
            progress=not json_out,
        )
        cfg.validate()  # before the plan line: a bad flag prints nothing but its error
        typer.echo(
            err=json_out,  # stdout stays JSON with --json
            message=f"spidercache demo: {cfg.network} CNN on {train_samples} Fashion-MNIST images, policy "
            f"{cfg.policy}, cache {cfg.working_set_size:.0%} of the data in memory, "
            f"{cfg.storage_latency_ms:g} ms per storage read, {cfg.workers} loader workers",
        )
        result = train(cfg)
        if json_out:
            typer.echo(json.dumps({"rows": result.rows, "summary": result.summary}, indent=2, default=str))
        else:
            print_summary(result.rows, result.summary)
