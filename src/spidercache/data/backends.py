"""``--cache-backend``: build the value holder of a training cache by name.

=============  ==============================================================
``memory``     shared-memory slots in this process tree (one copy for all
               DataLoader workers; per rank under DDP)
``lmdb``       an LMDB directory (``--lmdb-path``), shared by every process
               on the host, survives the job
``redis``      SpiderCache's layout: important samples on ``host_ip:port_num``,
               unimportant / homophily samples on ``host_ip:port_num2``;
               ``--cache_nodes N > 1``: a Redis Cluster on ports
               ``port_num .. port_num+N-1`` (or ``--redis-nodes``)
``memcached``  ``--memcached-servers h:p,h:p`` (default ``host_ip:11211``)
``server``     a session of Spider Cache's cache server (``--session ID``)
=============  ==============================================================
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import StoreUnavailable, UserError
from .cached import SlotBackend, StoreBackend
from .loader import slot_count

BACKENDS = ("memory", "lmdb", "redis", "memcached", "server")


def _open_server(session: int, host: str, port: int, pipeline: str, size_mb: int):
    from ..server.client import DatasetCache

    return DatasetCache(session, size=size_mb, hostname=host, port=port, pipeline=pipeline)


def make_backend(kind: str, *, capacity: int, sample_shape: tuple[int, ...], dtype: np.dtype,
                 fingerprint: str, batch_size: int, workers: int = 0, prefetch_factor: int = 2,
                 host_ip: str = "127.0.0.1", port_num: int = 6379, port_num2: int | None = 6380,
                 cache_nodes: int = 1, redis_nodes: str | None = None, lmdb_path: str | None = None,
                 memcached_servers: str | None = None, session: int | None = None,
                 server_port: int = 50052, check: bool = True):
    """The backend called ``kind``; network backends are checked now (UserError if down)."""
    kind = kind.strip().lower()
    if kind not in BACKENDS:
        raise UserError(f"unknown cache backend {kind!r}; choose from {', '.join(BACKENDS)}")
    if capacity <= 0:
        return None
    if kind == "memory":
        return SlotBackend(slot_count(capacity, batch_size, workers, prefetch_factor), sample_shape, dtype,
                           shared=workers > 0)
    from ..engine.stores import open_store

    prefix = "spidercache-train"
    if kind == "lmdb":
        path = Path(lmdb_path or Path(".spidercache") / "train-cache")
        path.mkdir(parents=True, exist_ok=True)
        openers = [functools.partial(open_store, f"lmdb:{path}")]
        label = f"lmdb:{path}"
    elif kind == "redis":
        if cache_nodes > 1 or redis_nodes:
            nodes = redis_nodes or ",".join(f"{host_ip}:{port_num + i}" for i in range(cache_nodes))
            openers = [functools.partial(open_store, f"redis-cluster://{nodes}", prefix=prefix)]
            label = f"redis-cluster://{nodes}"
        else:
            specs = [f"redis://{host_ip}:{port_num}"]
            if port_num2 and port_num2 != port_num:
                specs.append(f"redis://{host_ip}:{port_num2}")
            openers = [functools.partial(open_store, s, prefix=prefix) for s in specs]
            label = " + ".join(specs)
    elif kind == "memcached":
        servers = memcached_servers or f"{host_ip}:11211"
        openers = [functools.partial(open_store, f"memcached://{servers}", prefix=prefix)]
        label = f"memcached://{servers}"
    else:  # server
        if session is None:
            raise UserError("--cache-backend server needs --session ID (spidercache server session new)")
        size_mb = max(1, int(capacity * int(np.prod(sample_shape)) * np.dtype(dtype).itemsize * 1.2) >> 20)
        openers = [functools.partial(_open_server, int(session), host_ip, int(server_port), fingerprint, size_mb)]
        label = f"cache server {host_ip}:{server_port} session {session}"
        backend = StoreBackend(openers, fingerprint, sample_shape, dtype, label=label, int_keys=True)
        if check:
            backend.check()
        return backend
    backend = StoreBackend(openers, fingerprint, sample_shape, dtype, label=label)
    if check:
        backend.check()
    return backend
