"""`spidercache bench train`: train once per policy x working set x seed.

Rows (one per policy and working set, means over seeds of the epochs after the
first): hit ratio, substitution ratio, epoch and data-wait seconds, final test
accuracy with its spread; ``info["epochs"]`` holds every epoch's row. ``plot``
draws served share and accuracy against the working set.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Optional

from ..checks import at_least
from ..errors import UserError
from .runner import Rows, parse_numbers, parse_options

HELP = {
    "dataset": "fashion-mnist or a path (CIFAR folder, ImageFolder tree, .npz).",
    "policies": "Comma-separated training policies.",
    "working_set": "Comma-separated working sets (fraction of the data cached).",
    "seeds": "Seeds per (policy, working set).",
    "policy_option": "key=value passed to every policy (repeatable).",
    "plot": "Draw served share and accuracy against the working set as a PNG here.",
}


EPOCH_KEYS = (
    "policy",
    "working_set",
    "seed",
    "epoch",
    "hit_ratio",
    "substitution_ratio",
    "epoch_seconds",
    "data_wait_seconds",
    "test_accuracy",
    "lost_hits",
)


def train_logged(config: dict, log: Callable[[str], None]):
    """``data.train.train`` of ``TrainConfig(**config)``, with one line of log per run."""
    from ..data.train import TrainConfig, train

    t0 = time.perf_counter()
    result = train(TrainConfig(**config))
    log(
        f"{config['policy']:8s} ws={config['working_set_size']:<5g} seed={config['seed']}: "
        f"final acc {result.rows[-1]['test_accuracy']:.2f}%, "
        f"hit {result.summary['hit_ratio_after_first_epoch']:.3f}, subst "
        f"{result.summary['substitution_ratio_after_first_epoch']:.3f} ({time.perf_counter() - t0:.0f} s)"
    )
    return result


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

        def per_seed(f, by_seed=by_seed):
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
        out.append(
            {
                "policy": policy,
                "working_set": ws,
                "seeds": len(by_seed),
                "hit_ratio": statistics.mean(hit),
                "substitution_ratio": statistics.mean(sub),
                "epoch_seconds": statistics.mean(sec),
                "first_epoch_seconds": statistics.mean(first),
                "data_wait_seconds": statistics.mean(wait),
                "test_accuracy": statistics.mean(acc),
                "test_accuracy_spread": (max(acc) - min(acc)) / 2 if len(acc) > 1 else 0.0,
                "test_accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            }
        )
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
        a2.errorbar(
            ws,
            [a["test_accuracy"] for a in pts],
            yerr=[a["test_accuracy_spread"] for a in pts],
            fmt="o-",
            capsize=3,
            label=policy,
        )
    (
        a1.set_xlabel("working set (fraction cached)"),
        a1.set_ylabel("share of requests (o: hits+subst., x: hits)"),
    )
    a2.set_xlabel("working set"), a2.set_ylabel("final test accuracy (%), mean ± half-range over seeds")
    a1.legend(fontsize=7), a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    dataset: str = "fashion-mnist",
    network: str = "small",
    policies: str = "none,lru,minio,shade,icache",
    working_set: str = "0.1,0.2,0.4",
    epochs: int = 3,
    storage_latency_ms: float = 5.0,
    train_samples: int = 0,
    test_samples: int = 0,
    workers: int = 2,
    seeds: int = 1,
    batch_size: int = 256,
    cache_backend: str = "memory",
    policy_option: Optional[list[str]] = None,
    plot: Optional[Path] = None,
    log: Callable[[str], None] = print,
) -> Rows:
    """Train once per policy x working set x seed; hit ratio, substitution, epoch time, accuracy."""
    from ..data.policies import policy_class

    names = [p.strip() for p in policies.split(",") if p.strip()]
    for p in names:
        policy_class(p)
    sets = parse_numbers("--working-set", working_set)
    at_least(1, flag=True, seeds=seeds)
    if plot:
        from ..paths import check_output_path

        check_output_path(plot)
    opts = parse_options(policy_option or [])
    base = dict(
        train_paths=_dataset_paths(dataset),
        network=network,
        epochs=epochs,
        batch_size=batch_size,
        storage_latency_ms=storage_latency_ms,
        train_samples=train_samples,
        test_samples=test_samples,
        workers=workers,
        cache_backend=cache_backend,
        progress=False,
    )
    rows: list[dict] = []
    for seed in range(seeds):
        for ws in sets:
            for p in names:
                if p == "none" and ws != sets[0]:
                    # `none` caches nothing: one run per seed serves every working set
                    continue
                cfg = dict(base, policy=p, working_set_size=ws, seed=seed, policy_options=dict(opts))
                rows += [{k: r[k] for k in EPOCH_KEYS} for r in train_logged(cfg, log).rows]
    # `none` ran once per seed: its rows stand for every working set
    rows += [dict(r, working_set=ws) for r in rows if r["policy"] == "none" for ws in sets[1:]]
    agg = aggregate(rows)
    agg.sort(key=lambda a: (a["working_set"], names.index(a["policy"]) if a["policy"] in names else 0))
    if plot:
        plot_aggregate(agg, str(plot))
    return Rows(
        agg,
        {
            "dataset": dataset,
            "network": network,
            "epochs": epochs,
            "storage_latency_ms": storage_latency_ms,
            "seeds": seeds,
            "epoch_rows": rows,
        },
    )


def table(rows: Rows):
    from .runner import rows_table

    i = rows.info
    title = (
        f"bench train: {i['dataset']}, {i['network']}, {i['epochs']} epochs, {i['storage_latency_ms']:g} ms "
        f"storage, {i['seeds']} seed(s); ratios and times averaged over epochs after the first"
    )
    return rows_table(
        rows,
        title,
        [
            ("policy", lambda a: a["policy"]),
            ("working set", lambda a: f"{a['working_set']:g}"),
            ("hit", lambda a: f"{a['hit_ratio']:.3f}"),
            ("subst.", lambda a: f"{a['substitution_ratio']:.3f}"),
            ("served", lambda a: f"{a['hit_ratio'] + a['substitution_ratio']:.3f}"),
            ("epoch s", lambda a: f"{a['epoch_seconds']:.2f}"),
            ("first epoch s", lambda a: f"{a['first_epoch_seconds']:.2f}"),
            ("data wait s", lambda a: f"{a['data_wait_seconds']:.2f}"),
            ("final acc %", lambda a: f"{a['test_accuracy']:.2f}"),
            ("± (half-range)", lambda a: f"{a['test_accuracy_spread']:.2f}"),
        ],
    )
