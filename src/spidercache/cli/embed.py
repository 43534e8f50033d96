"""`spidercache embed ...`: embedding-row traces, Belady labels, learned models, evaluation.

Commands: gen, sample, optgen, train, eval; and `bench embed` on the bench group.
Each is a thin layer over a function in ``spidercache.embedding``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..console import console
from ..paths import check_output_path

embed_app = typer.Typer(
    help="Embedding-row caching: traces, Belady labels, learned admission and prefetch.", no_args_is_help=True
)
# How a command that reads a trace is told a CSV's key column or a format, as `sim` is.
COLUMN_OPT = typer.Option(None, "--column", help="CSV column with the keys (name or 0-based index).")
FORMAT_OPT = typer.Option(
    None,
    "--format",
    help="Trace format when the name does not tell it: npy, txt, csv, oracleGeneral, vscsi, lis.",
)


@embed_app.command("gen")
def gen(
    out: Path = typer.Option(
        ..., "-o", "--out", help="Output .npy (or .txt) trace of keys table << 40 | row."
    ),
    tables: int = typer.Option(8, help="Number of embedding tables."),
    rows: int = typer.Option(50_000, help="Rows per table."),
    alpha: float = typer.Option(1.05, help="Zipf exponent per table (FBGEMM's --alpha)."),
    batch_size: int = typer.Option(128, help="Bags per table per batch."),
    pooling: float = typer.Option(10.0, help="Mean lookups per bag (pooling factor)."),
    batches: int = typer.Option(160, help="Number of batches."),
    drift: float = typer.Option(
        0.001, help="Per batch, probability that a popularity rank moves to another row."
    ),
    burst_rate: float = typer.Option(0.05, help="Expected bursts started per batch (0: none)."),
    one_off: float = typer.Option(0.05, help="Share of lookups that go to rows used only once."),
    seed: int = typer.Option(0, help="Random seed."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Synthetic DLRM trace (per-table Zipf, pooling, batches) with drift, bursts and one-off rows."""
    import numpy as np
    from rich.progress import Progress

    from ..embedding.traces import GenConfig, generate
    from ..sim.traces import write_trace

    cfg = GenConfig(
        tables=tables,
        rows=rows,
        alpha=alpha,
        batch_size=batch_size,
        pooling=pooling,
        batches=batches,
        drift=drift,
        burst_rate=burst_rate,
        one_off=one_off,
        seed=seed,
    )
    cfg.check()
    err = console(stderr=True)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("generating", total=batches)
        keys = generate(cfg, progress=lambda done, total: bar.update(task, completed=done))
    path = write_trace(out, keys)
    res = {
        "path": str(path),
        "lookups": int(keys.size),
        "distinct": int(np.unique(keys).size),
        "tables": tables,
    }
    if json_out:
        typer.echo(json.dumps(res))
    else:
        typer.echo(
            f"wrote {path}: {res['lookups']:,} lookups, {res['distinct']:,} distinct rows, {tables} tables"
        )


@embed_app.command("family")
def family_cmd(
    name: str = typer.Argument(..., help="Validation family (see docs/embedding.md): zipf-0.8, dlrm-c, ..."),
    out: Path = typer.Option(..., "-o", "--out", help="Output .npy (or .txt) trace."),
    requests: int = typer.Option(2_000_000, help="Lookups."),
    seed: Optional[int] = typer.Option(None, help="Seed (default: the family's own)."),
) -> None:
    """Write one of the validation trace families (built independently of `embed gen`)."""
    from ..embedding import families
    from ..sim.traces import write_trace

    keys = families.make(name, requests, seed)
    role = "tuning" if name in families.TUNE else "reporting"
    typer.echo(f"wrote {write_trace(out, keys)}: {keys.size:,} lookups of family {name} (used for {role})")


@embed_app.command("sample")
def sample_cmd(
    trace: Path = typer.Argument(..., help="Trace: .pt (dlrm_datasets), .npy or text (one index per line)."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for sample_<i>.npy shards."),
    rate: float = typer.Option(0.8, help="Share of batches kept."),
    batch_lookups: int = typer.Option(4096, help="Lookups per batch."),
    shard_size: int = typer.Option(5_000_000, help="Indices per shard."),
    seed: int = typer.Option(0, help="Random seed."),
    column: Optional[str] = COLUMN_OPT,
    fmt: Optional[str] = FORMAT_OPT,
) -> None:
    """RecMG's sampling: keep a share of the batches, shuffled, in shards of 5 M indices."""
    from ..embedding.traces import read_embedding_trace, sample

    res = sample(read_embedding_trace(trace, column, fmt), out, rate, batch_lookups, shard_size, seed)
    typer.echo(
        f"kept {res.batches_kept} of {res.batches_total} batches ({res.indices:,} indices) "
        f"in {len(res.shards)} shard(s) under {out}"
    )


@embed_app.command("optgen")
def optgen_cmd(
    trace: Path = typer.Argument(..., help="Trace: .pt (dlrm_datasets), .npy or text."),
    cache_size: float = typer.Option(0.1, help="<= 1: fraction of distinct keys; > 1: number of rows."),
    out: Path = typer.Option(..., "-o", "--out", help="Labels .npy: records (hit, keep, next_use_distance)."),
    bypass: bool = typer.Option(
        False, help="OPT may refuse a miss (default: demand paging, as the engine's OPT)."
    ),
    column: Optional[str] = COLUMN_OPT,
    fmt: Optional[str] = FORMAT_OPT,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Belady labels per access: OPT hit, keep-until-next-use, next-use distance (-1: never)."""
    import time

    import numpy as np

    from ..embedding.optgen import optgen
    from ..embedding.traces import read_embedding_trace
    from ..engine.capacity import capacity_for

    capacity_for(cache_size, 1)  # a bad size or output path fails before reading the trace
    check_output_path(out)
    if out.suffix.lower() != ".npy":  # np.save adds it, as write_trace does: name the file written
        out = check_output_path(out.with_name(out.name + ".npy"))
    keys = read_embedding_trace(trace, column, fmt)
    t0 = time.perf_counter()
    labels = optgen(keys, cache_size, bypass=bypass)
    sec = time.perf_counter() - t0
    np.save(out, labels.to_records())
    res = {
        "path": str(out),
        "labels": int(keys.size),
        "capacity": labels.capacity,
        "distinct": labels.distinct,
        "opt_hit_ratio": labels.hit_ratio,
        "requests_per_s": keys.size / sec,
    }
    if json_out:
        typer.echo(json.dumps(res))
        return
    typer.echo(
        f"wrote {out}: {keys.size:,} labels, capacity {labels.capacity:,} of {labels.distinct:,} distinct, "
        f"OPT hit ratio {labels.hit_ratio:.4f}, {keys.size / sec:,.0f} requests/s"
    )


@embed_app.command("train")
def train_cmd(
    model: str = typer.Option(..., "--kind", help="Which model: cache or prefetch."),
    trace: Path = typer.Option(..., help="Training trace: .pt, .npy or text."),
    out: Path = typer.Option(..., help="Folder for config.json, checkpoint.pt, model.pt, loss.png."),
    resume: bool = typer.Option(False, "--resume", help="Continue from out/checkpoint.pt (RecMG's -e)."),
    config: Optional[Path] = typer.Option(None, help="A config JSON (like RecMG's example_caching.json)."),
    steps: Optional[int] = typer.Option(None, help="Training steps (overrides the config)."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Steps between checkpoints."),
    hidden_size: Optional[int] = typer.Option(None, help="Width of the MLP."),
    batch_size: Optional[int] = typer.Option(None, help="Minibatch size."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    column: Optional[str] = COLUMN_OPT,
    fmt: Optional[str] = FORMAT_OPT,
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Train the cache model (OPT labels) or the prefetch model (set loss); checkpoints and resume."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..embedding.models import ModelConfig
    from ..embedding.traces import read_embedding_trace
    from ..embedding.train import train
    from ..errors import UserError

    if model not in ("cache", "prefetch"):
        raise UserError(f"--kind must be cache or prefetch, got {model!r}")
    if config is not None:
        if not config.exists():
            raise UserError(f"config file not found: {config}")
        try:
            cfg = ModelConfig.from_dict(json.loads(config.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"{config} is not a valid model config: {str(exc).splitlines()[0]}") from None
    elif resume and (out / "config.json").exists():
        cfg = ModelConfig.from_dict(json.loads((out / "config.json").read_text()))
    else:
        cfg = ModelConfig(model=model)
    cfg.model = model
    for name, value in (
        ("steps", steps),
        ("checkpoint_every", checkpoint_every),
        ("hidden_size", hidden_size),
        ("batch_size", batch_size),
        ("seed", seed),
    ):
        if value is not None:
            setattr(cfg, name, value)
    cfg.check()  # a bad config value is one line naming its key, before the trace is read
    keys = read_embedding_trace(trace, column, fmt)
    err = console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(f"training {model} model", total=cfg.steps, loss=float("nan"))
        metrics = train(
            keys,
            out,
            cfg,
            resume=resume,
            progress=lambda s, total, loss: bar.update(task, completed=s, loss=loss),
        )
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
        return
    typer.echo(f"wrote {out}/model.pt ({model} model, {metrics.get('steps', cfg.steps)} steps)")
    for k, v in metrics.items():
        if k != "steps":
            typer.echo(
                f"  {k.replace('_', ' ')}: {v:.4f}"
                if isinstance(v, float)
                else f"  {k.replace('_', ' ')}: {v:,}"
            )


@embed_app.command("eval")
def eval_cmd(
    trace: Path = typer.Argument(..., help="Trace: .pt (dlrm_datasets) or any format `sim` reads."),
    model: Optional[Path] = typer.Option(
        None,
        "--model-dir",
        help="Cache-model folder from `embed train --kind cache`: "
        "warm-starts `learned`; needed by learned+offline/+prefetch.",
    ),
    prefetch_model: Optional[Path] = typer.Option(
        None, help="Prefetch-model folder (default: MODEL/prefetch)."
    ),
    policies: str = typer.Option("lru,lfu,arc,s3fifo,opt,learned", help="Comma-separated."),
    cache_size: str = typer.Option(
        "0.05,0.1,0.2", help="Comma-separated: <= 1 fraction of distinct keys, > 1 rows."
    ),
    column: Optional[str] = COLUMN_OPT,
    fmt: Optional[str] = FORMAT_OPT,
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list of rows."),
) -> None:
    """Per cache size: each policy's hit ratio, the share of the best-heuristic -> OPT gap it closes
    ((h - h_best) / (h_OPT - h_best), h_best the best of lru/lfu/arc/s3fifo), and the winner."""
    from rich.table import Table

    from ..embedding.evaluate import evaluate, parse_list, parse_sizes
    from ..embedding.traces import read_embedding_trace

    names = parse_list(policies, "policy")
    sizes = parse_sizes(cache_size)
    keys = read_embedding_trace(trace, column, fmt)
    rows = evaluate(keys, names, sizes, model, prefetch_model)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Embedding cache: {trace.name} ({rows[0]['requests']:,} requests)")
    for col in ("policy", "cache size", "capacity", "hit ratio", "gap closed", "note"):
        table.add_column(col, justify="left" if col in ("policy", "note") else "right")
    for r in rows:
        note = []
        if r["policy"] == r["best_heuristic"]:
            note.append("best heuristic")
        if r["policy"] == r["winner"]:
            note.append("WINNER")
        if "leader" in r:
            note.append(f"following {r['leader']} ({r['switches']} switches)")
        if "prefetches" in r:
            note.append(f"{r['prefetches']:,} prefetched ({r['prefetch_hits']:,} hit)")
        table.add_row(
            r["policy"],
            f"{r['cache_size']:g}",
            f"{r['capacity']:,}",
            f"{r['hit_ratio']:.4f}",
            f"{r['gap_closed']:+.3f}",
            ", ".join(note),
        )
    console().print(table)


@embed_app.command("headroom")
def headroom_cmd(
    seed: int = typer.Option(1, help="Generator seed of the trace."),
    drift: float = typer.Option(0.002, help="Drift of the trace (per batch, share of ranks that move)."),
    burst_rate: float = typer.Option(0.05, help="Bursts started per batch."),
    one_off: float = typer.Option(0.05, help="Share of lookups to one-off rows."),
    requests: int = typer.Option(2_000_000, help="Lookups (about)."),
    cache_size: float = typer.Option(0.1, help="<= 1: fraction of distinct keys; > 1: rows."),
    model: Optional[Path] = typer.Option(
        None, "--model-dir", help="Cache-model folder: warm-starts the learned policy."
    ),
    ablations: bool = typer.Option(
        False, "--ablations", help="Also the posterior oracle without each piece of truth."
    ),
    samples: int = typer.Option(64, help="Residents sampled per eviction by the posterior oracle."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """What an online policy can reach on a generated trace: classic policies, the posterior and
    true-rate oracles, LRU with an admission oracle (the issue's reference) and OPT, each with the
    share of the best-classic-to-OPT gap it closes."""
    from rich.table import Table

    from ..checks import at_least
    from ..embedding.evaluate import parse_sizes
    from ..embedding.headroom import headroom

    (size,) = parse_sizes(str(cache_size))
    at_least(1, flag=True, samples=samples, requests=requests)
    from rich.progress import Progress

    err = console(stderr=True)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("headroom", total=None)

        def step(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        rows = headroom(
            requests,
            size,
            model,
            ablations,
            samples,
            progress=step,
            seed=seed,
            drift=drift,
            burst_rate=burst_rate,
            one_off=one_off,
        )
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Headroom at cache size {size:g}: seed {seed}, drift {drift}")
    for col in ("policy / oracle", "hit ratio", "closed vs best classic"):
        table.add_column(col, justify="left" if col.startswith("policy") else "right")
    for r in rows:
        table.add_row(r["name"], f"{r['hit_ratio']:.4f}", f"{r['closed']:.3f}")
    console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(embed_app, name="embed")
