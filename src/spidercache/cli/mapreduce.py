"""`spidercache mapreduce train|weights`: DisCo's weight cache (benchmark: `spidercache bench weights`)."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

mapreduce_app = typer.Typer(
    help="Map/reduce training on Dask with layer weights cached in memcached.", no_args_is_help=True
)


@mapreduce_app.command("train")
def train(
    servers: Optional[str] = typer.Option(
        None, help="memcached pool HOST:PORT,HOST:PORT (default: start two on loopback)."
    ),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (default: a LocalCluster)."),
    workers: int = typer.Option(2, help="LocalCluster workers (ignored with --scheduler)."),
    threads: bool = typer.Option(
        False, "--threads", help="LocalCluster workers as threads instead of processes."
    ),
    job: str = typer.Option("fmnist", help="Job name: the weights live under JOB/NODE."),
    network: str = typer.Option("small", help="Network to train (see spidercache.models)."),
    data: str = typer.Option("fashion-mnist", help="fashion-mnist or synthetic."),
    data_root: str = typer.Option("/usr/share/datasets/fashion-mnist", help="Fashion-MNIST folder."),
    nodes: int = typer.Option(2, help="Map tasks (data partitions) per round."),
    rounds: int = typer.Option(6, help="Map/reduce rounds."),
    start: str = typer.Option(
        "reduced", help="Start weights of a map task: reduced, own, best, neighbour, scratch."
    ),
    reduce: str = typer.Option("average", help="Reduce: average or fittest."),
    steps: int = typer.Option(40, help="SGD steps per map task."),
    batch_size: int = typer.Option(64, help="Batch size."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    train_samples: int = typer.Option(8000, help="Training samples, split over the nodes."),
    val_samples: int = typer.Option(1000, help="Validation samples (fitness and the plot)."),
    seed: int = typer.Option(0, help="Seed."),
    local_mb: int = typer.Option(256, help="MB of weight chunks each worker process keeps (0: none)."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also run from scratch every round."),
    plot: Optional[str] = typer.Option("mapreduce.png", help="PNG of accuracy per round ('' for none)."),
    results: Optional[str] = typer.Option(
        None, help="Results store: lmdb:PATH, redis://HOST:PORT, memcached://HOST:PORT."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run even if this exact job's result is cached."),
    resume: bool = typer.Option(
        False, "--resume", help="Start from weights an earlier run left in the cache."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Train in map/reduce rounds, starting map tasks from cached weights; plot vs from scratch."""
    values = dict(locals())
    import warnings
    from dataclasses import fields

    from ..weights.experiment import plot_rounds, run_experiment
    from ..weights.mapreduce import MapReduceConfig
    from .output import console

    cfg = MapReduceConfig(**{f.name: values[f.name] for f in fields(MapReduceConfig) if f.name in values})
    cfg.validate()
    _check_outputs(results, plot)
    err = console(stderr=True, quiet=json_out)

    on_round = _round_printer(err, rounds)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallbacks are reported in the result's warning list
        out = run_experiment(
            cfg,
            servers=servers,
            scheduler=scheduler,
            workers=workers,
            processes=not threads,
            compare=compare,
            results=results,
            no_cache=no_cache,
            resume=resume,
            on_round=on_round,
            on_ready=lambda addrs: err.print(f"memcached pool: {', '.join(addrs)}"),
        )
    if plot:
        series = {f"cached weights (start={start})": out["cached"]["accuracy"]}
        if out["scratch"]:
            series["from scratch every round"] = out["scratch"]["accuracy"]
        out["plot"] = plot_rounds(series, plot)
    if json_out:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    _print_result(out, job, start, plot, err)


def _check_outputs(results: Optional[str], plot: Optional[str]) -> None:
    """A results store that cannot be opened, or a plot that cannot be written, fails before the rounds."""
    from ..paths import check_output_path
    from ..weights.memo import open_results_store

    if results:
        open_results_store(results).close()
    if plot:
        check_output_path(plot)


def _round_printer(console, rounds: int):
    def on_round(label: str, r: int, summary: dict) -> None:
        acc = summary["val_accuracy"]
        console.print(
            f"[{label}] round {r + 1}/{rounds}: val accuracy "
            f"{'-' if acc is None else f'{acc:.3f}'}  ({summary['seconds']:.1f} s, "
            f"starts: {', '.join(m['source'] for m in summary['maps'])}; weight chunks read "
            f"{summary['chunks_read']}, from memcached {summary['chunks_from_memcached']})"
        )

    return on_round


def _print_result(out: dict, job: str, start: str, plot: Optional[str], err) -> None:
    """The table on stdout; warnings, the figure and the plot path on ``err`` (a stderr console)."""
    from rich.table import Table

    from .output import console

    table = Table(
        title=f"map/reduce {job}: validation accuracy per round"
        + (" (cached result)" if out["memo"]["hit"] else "")
    )
    table.add_column("round", justify="right")
    table.add_column(f"start={start}", justify="right")
    if out["scratch"]:
        table.add_column("from scratch", justify="right")
    for i, acc in enumerate(out["cached"]["accuracy"]):
        cells = [str(i + 1), "-" if acc is None else f"{acc:.3f}"]
        if out["scratch"]:
            s = out["scratch"]["accuracy"][i]
            cells.append("-" if s is None else f"{s:.3f}")
        table.add_row(*cells)
    console().print(table)
    for line in out["cached"]["warnings"] + ((out["scratch"] or {}).get("warnings") or []):
        err.print(f"warning: {line}")
    if out["figure"]:
        f = out["figure"]
        err.print(
            f"from-scratch final accuracy {f['scratch_final_accuracy']:.3f} reached by the cached run in "
            f"round {f['cached_rounds_to_match']} of {f['rounds']}"
        )
    if plot:
        err.print(f"plot: {plot}")


@mapreduce_app.command("weights")
def weights(
    job: str = typer.Argument(..., help="Job name."),
    servers: str = typer.Option(..., help="memcached pool HOST:PORT,HOST:PORT."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the nodes of JOB with their latest cached version and fitness."""
    from ..weights.weight_cache import WeightCache
    from .output import print_rows

    with WeightCache(servers) as cache:
        infos = cache.infos(job)
    rows = [
        {
            "node": i.node,
            "version": i.seq,
            "fitness": i.fitness,
            "layers": len(i.layers),
            "megabytes": round(i.nbytes / 1e6, 3),
            "created": i.created,
        }
        for i in infos
    ]
    print_rows(
        rows,
        json_out=json_out,
        title=f"cached weights of {job}",
        columns=[
            ("node", lambda r: r["node"]),
            ("version", lambda r: str(r["version"])),
            ("fitness", lambda r: "-" if r["fitness"] is None else f"{r['fitness']:.4f}"),
            ("layers", lambda r: str(r["layers"])),
            ("megabytes", lambda r: f"{r['megabytes']:.3f}"),
        ],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(mapreduce_app, name="mapreduce")
