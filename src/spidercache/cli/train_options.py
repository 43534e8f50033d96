"""The options of `spidercache train`, one row each: name -> (type, typer declaration with its default).

``cli/train.py`` builds its command's signature from this table (as ``cli/bench.py``
does for the benchmarks), so the command stays a short function; the names,
flags, aliases, defaults and help texts are the ones users know, in this order.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, List, Optional

import typer

Opt = typer.Option

OPTIONS: dict[str, tuple[Any, Any]] = {
    "train_paths": (
        Optional[List[str]],
        typer.Argument(
            None,
            help="Dataset: a Fashion-MNIST or CIFAR folder, an ImageFolder tree (a path or an http(s)://, "
            "s3://, file:// URL; root/train evaluates on root/test or root/val), or train.npz [test.npz]. "
            "None: the embedded Fashion-MNIST.",
        ),
    ),
    "network": (str, Opt("small", "--network", help="small, alexnet, vgg11, vgg16, resnet18/34/50.")),
    "batch_size": (int, Opt(256, "--batch-size")),
    "epochs": (int, Opt(10, "--epochs")),
    "lr": (float, Opt(0.05, "--lr")),
    "cache_training_data": (
        bool,
        Opt(
            True,
            "--cache-training-data/--no-cache-training-data",
            help="Serve training data through the cache (off: every read goes to storage).",
        ),
    ),
    "working_set_size": (
        float,
        Opt(0.1, "--working-set", help="Cache size as a fraction of the training set, in (0, 1]."),
    ),
    "cache_nodes": (
        int,
        Opt(
            1,
            "--cache-nodes",
            help="Redis servers; N > 1: keys spread by consistent hashing over "
            "--port-num, --port-num2, --port-num2 + 1, ... (or --redis-nodes).",
        ),
    ),
    "redis_cluster": (
        bool,
        Opt(False, "--redis-cluster", help="--cache-nodes / --redis-nodes name a Redis Cluster instead."),
    ),
    "host_ip": (str, Opt("127.0.0.1", "--host-ip")),
    "port_num": (int, Opt(6379, "--port-num", help="Redis for important samples.")),
    "port_num2": (int, Opt(6380, "--port-num2", help="Redis for unimportant / homophily samples.")),
    "port_num3": (int, Opt(6381, "--port-num3", help="Redis for the shared split ratio.")),
    "policy": (
        str,
        Opt(
            "",
            "--policy",
            help="none, lru, minio, shade, icache, spider, spider-noh, spider-nois (default: spider).",
        ),
    ),
    "policy_option": (
        Optional[List[str]],
        Opt(None, "--policy-option", help="key=value passed to the policy (repeatable)."),
    ),
    "cache_backend": (
        str,
        Opt("memory", "--cache-backend", help="memory | lmdb | redis | memcached | server"),
    ),
    "lmdb_path": (Optional[str], Opt(None, "--lmdb-path")),
    "redis_nodes": (Optional[str], Opt(None, "--redis-nodes", help="Redis servers h:p,h:p.")),
    "cache": (str, Opt("decoded", "--cache", help="decoded: cache decoded samples; raw: the files.")),
    "strict": (bool, Opt(False, "--strict", help="An image that fails to decode is an error.")),
    "cache_bytes": (
        Optional[int],
        Opt(None, "--cache-bytes", help="Byte budget of the cache (instead of --working-set)."),
    ),
    "memcached_servers": (Optional[str], Opt(None, "--memcached-servers")),
    "session": (Optional[int], Opt(None, "--session", help="Cache server session id.")),
    "server_port": (int, Opt(50052, "--server-port")),
    "storage_latency_ms": (float, Opt(5.0, "--storage-latency-ms")),
    "storage_bandwidth_mbps": (float, Opt(0.0, "--storage-bandwidth-mbps", help="MB/s; 0: unlimited.")),
    "workers": (int, Opt(2, "--workers", help="DataLoader worker processes.")),
    "threads": (
        int,
        Opt(
            0,
            "--threads",
            help="CPU: torch threads for the model step; 0 = every core while the cache serves.",
        ),
    ),
    "train_samples": (int, Opt(0, "--train-samples", help="Fixed random subset of the training set.")),
    "test_samples": (int, Opt(0, "--test-samples")),
    "image_size": (int, Opt(32, "--image-size", help="ImageFolder images are resized to this.")),
    "augment": (bool, Opt(False, "--augment", help="Random flip + crop after the cache.")),
    "seed": (int, Opt(0, "--seed")),
    "device": (str, Opt("auto", "--device", help="auto, cpu, cuda, cuda:N.")),
    "log": (
        Optional[str],
        Opt(
            None,
            "--epoch-log",
            "--log",
            help="Per-epoch JSON lines (--epoch-log under torchrun, which "
            "claims --log as an abbreviation of its own options).",
        ),
    ),
    "plot": (Optional[str], Opt(None, "--plot", help="PNG with hit ratio and accuracy per epoch.")),
    "checkpoint_dir": (Optional[str], Opt(None, "--checkpoint-dir")),
    "resume": (bool, Opt(False, "--resume", help="Continue from --checkpoint-dir/last.pt.")),
    "config": (Optional[Path], Opt(None, "--config", help="TOML file with any of these options.")),
    "quiet": (bool, Opt(False, "--quiet", help="No progress bars.")),
    "json_out": (bool, Opt(False, "--json", help="Print the rows and summary as JSON.")),
}
# What the command's parameters carry besides TrainConfig's fields.
NOT_CONFIG = ("policy_option", "config", "quiet", "json_out")


def signature() -> inspect.Signature:
    """The command's signature for typer: the context, then every option of the table."""
    kw = inspect.Parameter.KEYWORD_ONLY
    ctx = inspect.Parameter("ctx", kw, annotation=typer.Context)
    return inspect.Signature(
        [ctx] + [inspect.Parameter(n, kw, default=d, annotation=t) for n, (t, d) in OPTIONS.items()]
    )
