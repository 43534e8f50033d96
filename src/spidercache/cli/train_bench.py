"""`spidercache bench train` and `spidercache bench loader` (the training-data cache's figures)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .bench import bench_app


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _dataset_paths(dataset: str) -> list[str]:
    if dataset.lower() in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return []
    if not Path(dataset).exists():
        raise UserError(f"--dataset: {dataset!r} is neither 'fashion-mnist' nor an existing path")
    return [dataset]


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and spread over seeds per (policy, working set), epochs after the first."""
    groups: dict[tuple, dict[int, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["policy"], r["working_set"]), {}).setdefault(r["seed"], []).append(r)
    out = []
    for (policy, ws), by_seed in groups.items():
        def per_seed(f):
            vals = []
            for seed_rows in by_seed.values():
                later = [r for r in seed_rows if r["epoch"] > 0] or seed_rows
                vals.append(sum(f(r) for r in later) / len(later))
            return vals
        acc = [sorted(rs, key=lambda r: r["epoch"])[-1]["test_accuracy"] for rs in by_seed.values()]
        hit = per_seed(lambda r: r["hit_ratio"])
        sub = per_seed(lambda r: r["substitution_ratio"])
        sec = per_seed(lambda r: r["epoch_seconds"])
        wait = per_seed(lambda r: r["data_wait_seconds"])
        first = [sorted(rs, key=lambda r: r["epoch"])[0]["epoch_seconds"] for rs in by_seed.values()]
        out.append({"policy": policy, "working_set": ws, "seeds": len(by_seed),
                    "hit_ratio": statistics.mean(hit), "substitution_ratio": statistics.mean(sub),
                    "epoch_seconds": statistics.mean(sec), "first_epoch_seconds": statistics.mean(first),
                    "data_wait_seconds": statistics.mean(wait),
                    "test_accuracy": statistics.mean(acc),
                    "test_accuracy_spread": (max(acc) - min(acc)) / 2 if len(acc) > 1 else 0.0,
                    "test_accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0})
    return out


def plot_aggregate(agg: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for policy in sorted({a["policy"] for a in agg}):
        pts = sorted((a for a in agg if a["policy"] == policy), key=lambda a: a["working_set"])
        ws = [a["working_set"] for a in pts]
        a1.plot(ws, [a["hit_ratio"] + a["substitution_ratio"] for a in pts], "o-", label=f"{policy} served")
        a1.plot(ws, [a["hit_ratio"] for a in pts], "x:", color=a1.lines[-1].get_color())
        a2.errorbar(ws, [a["test_accuracy"] for a in pts], yerr=[a["test_accuracy_spread"] for a in pts],
                    fmt="o-", capsize=3, label=policy)
    a1.set_xlabel("working set (fraction cached)"), a1.set_ylabel("share of requests (o: hits+subst., x: hits)")
    a2.set_xlabel("working set"), a2.set_ylabel("final test accuracy (%), mean ± half-range over seeds")
    a1.legend(fontsize=7), a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@bench_app.command("train")
def bench_train(
    dataset: str = typer.Option("fashion-mnist", "--dataset"),
    network: str = typer.Option("small", "--network"),
    policies: str = typer.Option("none,lru,minio,shade,icache", "--policies"),
    working_set: str = typer.Option("0.1,0.2,0.4", "--working-set"),
    epochs: int = typer.Option(3, "--epochs"),
    storage_latency_ms: float = typer.Option(5.0, "--storage-latency-ms"),
    train_samples: int = typer.Option(0, "--train-samples"),
    test_samples: int = typer.Option(0, "--test-samples"),
    workers: int = typer.Option(2, "--workers"),
    seeds: int = typer.Option(1, "--seeds"),
    batch_size: int = typer.Option(256, "--batch-size"),
    cache_backend: str = typer.Option("memory", "--cache-backend"),
    policy_option: Optional[list[str]] = typer.Option(None, "--policy-option"),
    json_path: Optional[str] = typer.Option(None, "--json"),
    plot: Optional[str] = typer.Option(None, "--plot"),
) -> None:
    """Train once per policy x working set x seed; table of hit ratio, substitution, epoch time, accuracy."""
    from rich.console import Console
    from rich.table import Table

    from ..data.policies import policy_class
    from ..data.train import TrainConfig, train
    from .train import parse_policy_options

    names = [p.strip() for p in policies.split(",") if p.strip()]
    for p in names:
        policy_class(p)
    sets = _floats(working_set, "--working-set")
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    opts = parse_policy_options(policy_option or [])
    console = Console(stderr=True)
    rows: list[dict] = []
    for seed in range(seeds):
        for ws in sets:
            for p in names:
                if p == "none" and ws != sets[0]:
                    # `none` caches nothing: one run per seed serves every working set
                    continue
                cfg = TrainConfig(train_paths=_dataset_paths(dataset), network=network, epochs=epochs,
                                  batch_size=batch_size, policy=p, working_set_size=ws,
                                  storage_latency_ms=storage_latency_ms, train_samples=train_samples,
                                  test_samples=test_samples, workers=workers, seed=seed,
                                  cache_backend=cache_backend, progress=False, policy_options=dict(opts))
                t0 = time.perf_counter()
                result = train(cfg)
                console.print(f"{p:8s} ws={ws:<5g} seed={seed}: final acc {result.rows[-1]['test_accuracy']:.2f}%, "
                              f"hit {result.summary['hit_ratio_after_first_epoch']:.3f}, subst "
                              f"{result.summary['substitution_ratio_after_first_epoch']:.3f} "
                              f"({time.perf_counter() - t0:.0f} s)")
                for r in result.rows:
                    rows.append({k: r[k] for k in ("policy", "working_set", "seed", "epoch", "hit_ratio",
                                                  "substitution_ratio", "epoch_seconds", "data_wait_seconds",
                                                  "test_accuracy", "lost_hits")})
    # `none` ran once per seed: its rows stand for every working set
    extra = []
    for r in rows:
        if r["policy"] == "none":
            extra += [dict(r, working_set=ws) for ws in sets[1:]]
    rows += extra
    agg = aggregate(rows)
    if json_path:
        Path(json_path).write_text(json.dumps({"rows": rows, "summary": agg}, indent=1))
    if plot:
        plot_aggregate(agg, plot)
    t = Table(title=f"bench train: {dataset}, {network}, {epochs} epochs, {storage_latency_ms:g} ms storage, "
                    f"{seeds} seed(s); ratios and times averaged over epochs after the first")
    for c in ("policy", "working set", "hit", "subst.", "served", "epoch s", "first epoch s", "data wait s",
              "final acc %", "± (half-range)"):
        t.add_column(c, justify="right")
    for a in sorted(agg, key=lambda a: (a["working_set"], names.index(a["policy"]) if a["policy"] in names else 0)):
        t.add_row(a["policy"], f"{a['working_set']:g}", f"{a['hit_ratio']:.3f}", f"{a['substitution_ratio']:.3f}",
                  f"{a['hit_ratio'] + a['substitution_ratio']:.3f}", f"{a['epoch_seconds']:.2f}",
                  f"{a['first_epoch_seconds']:.2f}", f"{a['data_wait_seconds']:.2f}", f"{a['test_accuracy']:.2f}",
                  f"{a['test_accuracy_spread']:.2f}")
    Console().print(t)


@bench_app.command("loader")
def bench_loader(
    files: int = typer.Option(20000, "--files", help="JPEG files written from Fashion-MNIST (train split)."),
    root: str = typer.Option(".spidercache/bench-jpeg", "--root", help="Where the JPEG tree is written (kept)."),
    size: int = typer.Option(64, "--size", help="Pixels the files are written at and resized to."),
    epochs: int = typer.Option(3, "--epochs"),
    workers: int = typer.Option(2, "--workers"),
    batch_size: int = typer.Option(256, "--batch-size"),
    cases: str = typer.Option("none,ws1,spider", "--cases", help="none, ws1 (minio at 1.0), spider (0.1), lru."),
    json_path: Optional[str] = typer.Option(None, "--json"),
) -> None:
    """The data path alone over a JPEG ImageFolder read through http://; warm cache vs TensorDataset."""
    from ..bench import loader as bl
    from ..data.imagefolder import ImageFolder

    if files < 1 or epochs < 1 or workers < 0:
        raise UserError("--files and --epochs must be >= 1, --workers >= 0")
    rows = bl.run(root, files, size, size, epochs, workers, batch_size, cases)
    bl.jpeg_folder(root, files, size)
    with bl.http_server(root) as url:
        rows += bl.warm_vs_tensor(ImageFolder(f"{url}/train", size=size), batch_size)
    summ = bl.summary(rows)
    typer.echo(json.dumps(summ, indent=1))
    if json_path:
        Path(json_path).write_text(json.dumps({"rows": rows, "summary": summ}, indent=1))
