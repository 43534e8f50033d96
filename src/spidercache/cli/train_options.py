"""The options of `spidercache train`, one typed alias each (``Annotated`` + ``typer.Option``).

``cli/train.py`` declares its command with these, so the command itself stays a
short function; the names, flags, aliases and help texts are the ones users know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

Opt = typer.Option

TrainPaths = Annotated[
    Optional[List[str]],
    typer.Argument(
        help="Dataset: a Fashion-MNIST or CIFAR folder, an ImageFolder tree (a path or an http(s)://, "
        "s3://, file:// URL; root/train evaluates on root/test or root/val), or train.npz [test.npz]. "
        "None: the embedded Fashion-MNIST.",
    ),
]
Network = Annotated[str, Opt("--network", help="small, alexnet, vgg11, vgg16, resnet18/34/50.")]
BatchSize = Annotated[int, Opt("--batch-size")]
Epochs = Annotated[int, Opt("--epochs")]
Lr = Annotated[float, Opt("--lr")]
CacheTrainingData = Annotated[
    bool,
    Opt(
        "--cache-training-data/--no-cache-training-data",
        help="Serve training data through the cache (off: every read goes to storage).",
    ),
]
WorkingSet = Annotated[
    float, Opt("--working-set", help="Cache size as a fraction of the training set, in (0, 1].")
]
CacheNodes = Annotated[
    int,
    Opt(
        "--cache-nodes",
        help="Redis servers; N > 1: keys spread by consistent hashing over "
        "--port-num, --port-num2, --port-num2 + 1, ... (or --redis-nodes).",
    ),
]
RedisCluster = Annotated[
    bool, Opt("--redis-cluster", help="--cache-nodes / --redis-nodes name a Redis Cluster instead.")
]
HostIp = Annotated[str, Opt("--host-ip")]
PortNum = Annotated[int, Opt("--port-num", help="Redis for important samples.")]
PortNum2 = Annotated[int, Opt("--port-num2", help="Redis for unimportant / homophily samples.")]
PortNum3 = Annotated[int, Opt("--port-num3", help="Redis for the shared split ratio.")]
Policy = Annotated[
    str,
    Opt(
        "--policy", help="none, lru, minio, shade, icache, spider, spider-noh, spider-nois (default: spider)."
    ),
]
PolicyOption = Annotated[
    Optional[List[str]], Opt("--policy-option", help="key=value passed to the policy (repeatable).")
]
CacheBackend = Annotated[str, Opt("--cache-backend", help="memory | lmdb | redis | memcached | server")]
LmdbPath = Annotated[Optional[str], Opt("--lmdb-path")]
RedisNodes = Annotated[Optional[str], Opt("--redis-nodes", help="Redis servers h:p,h:p.")]
Cache = Annotated[str, Opt("--cache", help="decoded: cache decoded samples; raw: the files.")]
Strict = Annotated[bool, Opt("--strict", help="An image that fails to decode is an error.")]
CacheBytes = Annotated[
    Optional[int], Opt("--cache-bytes", help="Byte budget of the cache (instead of --working-set).")
]
MemcachedServers = Annotated[Optional[str], Opt("--memcached-servers")]
Session = Annotated[Optional[int], Opt("--session", help="Cache server session id.")]
ServerPort = Annotated[int, Opt("--server-port")]
StorageLatencyMs = Annotated[float, Opt("--storage-latency-ms")]
StorageBandwidthMbps = Annotated[float, Opt("--storage-bandwidth-mbps", help="MB/s; 0: unlimited.")]
Workers = Annotated[int, Opt("--workers", help="DataLoader worker processes.")]
TrainSamples = Annotated[int, Opt("--train-samples", help="Fixed random subset of the training set.")]
TestSamples = Annotated[int, Opt("--test-samples")]
ImageSize = Annotated[int, Opt("--image-size", help="ImageFolder images are resized to this.")]
Augment = Annotated[bool, Opt("--augment", help="Random flip + crop after the cache.")]
Seed = Annotated[int, Opt("--seed")]
Device = Annotated[str, Opt("--device", help="auto, cpu, cuda, cuda:N.")]
Log = Annotated[
    Optional[str],
    Opt(
        "--epoch-log",
        "--log",
        help="Per-epoch JSON lines (--epoch-log under torchrun, which "
        "claims --log as an abbreviation of its own options).",
    ),
]
Plot = Annotated[Optional[str], Opt("--plot", help="PNG with hit ratio and accuracy per epoch.")]
CheckpointDir = Annotated[Optional[str], Opt("--checkpoint-dir")]
Resume = Annotated[bool, Opt("--resume", help="Continue from --checkpoint-dir/last.pt.")]
Config = Annotated[Optional[Path], Opt("--config", help="TOML file with any of these options.")]
Quiet = Annotated[bool, Opt("--quiet", help="No progress bars.")]
JsonOut = Annotated[bool, Opt("--json", help="Print the rows and summary as JSON.")]

# What the command's parameters carry besides TrainConfig's fields.
NOT_CONFIG = ("policy_option", "config", "quiet", "json_out")
