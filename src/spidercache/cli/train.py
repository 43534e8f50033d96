"""`spidercache train`: train a network with its training data served through a cache.

Flags are kebab-case; SpiderCache's original spellings (``--batch_size``,
``--cache_training_data``, ``--working_set_size``, ``--cache_nodes``,
``--host_ip``, ``--port_num``, ``--port_num2``) work as hidden aliases
(``spidercache.cli.canonical_flags``); every flag can also come from
``--config file.toml`` (keys are the flag names with ``_`` or ``-``), and a
flag given on the command line wins over the file. The command is a thin
layer over ``spidercache.data.train.train``.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import List, Optional

import tomllib
import typer

from ..bench.runner import parse_options
from ..errors import UserError

_INT_FIELDS = {
    "batch_size",
    "epochs",
    "cache_nodes",
    "port_num",
    "port_num2",
    "port_num3",
    "workers",
    "prefetch_factor",
    "train_samples",
    "test_samples",
    "image_size",
    "seed",
    "server_port",
    "cache_bytes",
}


def load_config_file(path: Path) -> dict:
    from ..data.train import TrainConfig

    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    raw = raw.get("train", raw)  # a [train] table or top-level keys
    names = {f.name for f in fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in names:
            raise UserError(f"config file {path}: unknown option {key!r}")
        out[name] = value
    return out


def register(app: typer.Typer) -> None:

    @app.command("train", context_settings={"allow_interspersed_args": True})
    def train_cmd(
        ctx: typer.Context,
        train_paths: Optional[List[str]] = typer.Argument(
            None,
            help="Dataset: a Fashion-MNIST or CIFAR folder, an ImageFolder tree (a path or an http(s)://, "
            "s3://, file:// URL; root/train evaluates on root/test or root/val), or train.npz [test.npz]. "
            "None: the embedded Fashion-MNIST.",
        ),
        network: str = typer.Option(
            "small", "--network", help="small, alexnet, vgg11, vgg16, resnet18/34/50."
        ),
        batch_size: int = typer.Option(256, "--batch-size"),
        epochs: int = typer.Option(10, "--epochs"),
        lr: float = typer.Option(0.05, "--lr"),
        cache_training_data: bool = typer.Option(
            True,
            "--cache-training-data/--no-cache-training-data",
            help="Serve training data through the cache (off: every read goes to storage).",
        ),
        working_set_size: float = typer.Option(
            0.1, "--working-set", help="Cache size as a fraction of the training set, in (0, 1]."
        ),
        cache_nodes: int = typer.Option(
            1,
            "--cache-nodes",
            help="Redis servers; N > 1: keys spread by consistent hashing over "
            "--port-num, --port-num2, --port-num2 + 1, ... (or --redis-nodes).",
        ),
        redis_cluster: bool = typer.Option(
            False, "--redis-cluster", help="--cache-nodes / --redis-nodes name a Redis Cluster instead."
        ),
        host_ip: str = typer.Option("127.0.0.1", "--host-ip"),
        port_num: int = typer.Option(6379, "--port-num", help="Redis for important samples."),
        port_num2: int = typer.Option(6380, "--port-num2", help="Redis for unimportant / homophily samples."),
        port_num3: int = typer.Option(6381, "--port-num3", help="Redis for the shared split ratio."),
        policy: str = typer.Option(
            "",
            "--policy",
            help="none, lru, minio, shade, icache, spider, spider-noh, spider-nois (default: spider).",
        ),
        policy_option: Optional[List[str]] = typer.Option(
            None, "--policy-option", help="key=value passed to the policy (repeatable)."
        ),
        cache_backend: str = typer.Option(
            "memory", "--cache-backend", help="memory | lmdb | redis | memcached | server"
        ),
        lmdb_path: Optional[str] = typer.Option(None, "--lmdb-path"),
        redis_nodes: Optional[str] = typer.Option(None, "--redis-nodes", help="Redis servers h:p,h:p."),
        cache: str = typer.Option(
            "decoded", "--cache", help="decoded: cache decoded samples; raw: the files."
        ),
        strict: bool = typer.Option(False, "--strict", help="An image that fails to decode is an error."),
        cache_bytes: Optional[int] = typer.Option(
            None, "--cache-bytes", help="Byte budget of the cache (instead of --working-set)."
        ),
        memcached_servers: Optional[str] = typer.Option(None, "--memcached-servers"),
        session: Optional[int] = typer.Option(None, "--session", help="Cache server session id."),
        server_port: int = typer.Option(50052, "--server-port"),
        storage_latency_ms: float = typer.Option(5.0, "--storage-latency-ms"),
        storage_bandwidth_mbps: float = typer.Option(
            0.0, "--storage-bandwidth-mbps", help="MB/s; 0: unlimited."
        ),
        workers: int = typer.Option(2, "--workers", help="DataLoader worker processes."),
        train_samples: int = typer.Option(
            0, "--train-samples", help="Fixed random subset of the training set."
        ),
        test_samples: int = typer.Option(0, "--test-samples"),
        image_size: int = typer.Option(32, "--image-size", help="ImageFolder images are resized to this."),
        augment: bool = typer.Option(False, "--augment", help="Random flip + crop after the cache."),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
        log: Optional[str] = typer.Option(
            None,
            "--epoch-log",
            "--log",
            help="Per-epoch JSON lines (--epoch-log under torchrun, which "
            "claims --log as an abbreviation of its own options).",
        ),
        plot: Optional[str] = typer.Option(None, "--plot", help="PNG with hit ratio and accuracy per epoch."),
        checkpoint_dir: Optional[str] = typer.Option(None, "--checkpoint-dir"),
        resume: bool = typer.Option(False, "--resume", help="Continue from --checkpoint-dir/last.pt."),
        config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any of these options."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        json_out: bool = typer.Option(False, "--json", help="Print the rows and summary as JSON."),
    ) -> None:
        """Train a network; its training samples come through a cache over slow storage."""
        from ..data.policies import DEFAULT_POLICY
        from ..data.train import TrainConfig, train

        given = dict(
            train_paths=list(train_paths or []),
            network=network,
            batch_size=batch_size,
            epochs=epochs,
            lr=lr,
            cache_training_data=cache_training_data,
            working_set_size=working_set_size,
            cache_nodes=cache_nodes,
            host_ip=host_ip,
            port_num=port_num,
            port_num2=port_num2,
            port_num3=port_num3,
            policy=policy,
            cache_backend=cache_backend,
            lmdb_path=lmdb_path,
            redis_nodes=redis_nodes,
            redis_cluster=redis_cluster,
            cache=cache,
            strict=strict,
            cache_bytes=cache_bytes,
            memcached_servers=memcached_servers,
            session=session,
            server_port=server_port,
            storage_latency_ms=storage_latency_ms,
            storage_bandwidth_mbps=storage_bandwidth_mbps,
            workers=workers,
            train_samples=train_samples,
            test_samples=test_samples,
            image_size=image_size,
            augment=augment,
            seed=seed,
            device=device,
            log=log,
            plot=plot,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
        )
        values = {}
        if config is not None:
            values.update(load_config_file(config))
        for name, value in given.items():
            param = "train_paths" if name == "train_paths" else name
            source = ctx.get_parameter_source(param)
            # (typer ships its own click: compare the source by name)
            from_default = source is None or getattr(source, "name", "") in ("DEFAULT", "DEFAULT_MAP")
            if config is None or not from_default or name not in values:
                values[name] = value
        if not values.get("policy"):
            values["policy"] = DEFAULT_POLICY
        opts = dict(values.pop("policy_options", {}) or {})
        opts.update(parse_options(policy_option or []))
        values["progress"] = not (quiet or json_out)
        try:
            cfg = TrainConfig(**values, policy_options=opts)
        except TypeError as exc:
            raise UserError(f"bad option: {exc}") from None
        for name in _INT_FIELDS:
            v = getattr(cfg, name)
            if v is not None and not isinstance(v, int):
                raise UserError(f"option {name} must be an integer, got {v!r}")
        result = train(cfg)
        if not result.rows or int(os.environ.get("RANK", "0")) != 0:
            return  # under torchrun only rank 0 reports
        if json_out:
            typer.echo(json.dumps({"rows": result.rows, "summary": result.summary}, indent=1))
            return
        print_summary(result.rows, result.summary)


def print_summary(rows: list[dict], summary: dict) -> None:
    from rich.table import Table

    from .output import console

    t = Table(
        title=f"spidercache train: {summary['policy']} on {summary['train_samples']} samples, "
        f"{summary['network']}, working set {summary['working_set']:g}"
    )
    for col in ("epoch", "loss", "test acc %", "hit", "subst.", "lost", "epoch s", "data wait s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["epoch"]),
            f"{r['loss']:.3f}",
            f"{r['test_accuracy']:.2f}",
            f"{r['hit_ratio']:.3f}",
            f"{r['substitution_ratio']:.3f}",
            str(r["lost_hits"]),
            f"{r['epoch_seconds']:.2f}",
            f"{r['data_wait_seconds']:.2f}",
        )
    c = console()
    c.print(t)
    c.print(
        f"cache: {summary['backend']}; storage: {summary['storage']}; "
        f"after the first epoch: hit ratio {summary['hit_ratio_after_first_epoch']:.3f}, "
        f"substitution ratio {summary['substitution_ratio_after_first_epoch']:.3f}, "
        f"{summary['mean_epoch_seconds_after_first']:.2f} s per epoch (first "
        f"{summary['first_epoch_seconds']:.2f} s)"
        + (
            f"; {summary['lost_hits']} planned hits read from storage instead (value still on its way in, "
            "or the store failed)"
            if summary["lost_hits"]
            else ""
        )
    )
