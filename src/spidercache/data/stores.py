"""The stores of a training cache, from the specs the CLI and ``CachedLoader(store=...)`` take.

``memory`` is the shared-memory slot store of this process tree (one copy for
all DataLoader workers; per rank under DDP). Every other spec goes through
``engine.stores.open_store`` (``lmdb:PATH``, ``redis://h:p[,h:p...]``,
``redis-cluster://...``, ``memcached://...``, ``server://host:port/SESSION``)
and is opened lazily in each process that uses it. A list of specs gives one
store per cache level (SpiderCache's layout: important samples on one Redis,
unimportant / homophily samples on another).
"""

from __future__ import annotations

import functools

from ..engine.execute import Opened, StoreHandle
from ..engine.stores import open_store
from ..engine.stores.shm import ShmSlotStore
from ..errors import StoreUnavailable, UserError
from .budget import Sizing


def is_memory(specs: list[str]) -> bool:
    return len(specs) == 1 and specs[0].strip().lower() in ("memory", "shm")


def as_specs(store) -> list[str]:
    specs = [store] if isinstance(store, str) else list(store)
    if not specs or not all(isinstance(s, str) and s.strip() for s in specs):
        raise UserError(f"store must be a spec such as 'memory' or 'redis://host:port', got {store!r}")
    return [s.strip() for s in specs]


def open_handles(
    specs: list[str], sizing: Sizing, n_ids: int, prefix: str, shared: bool
) -> list[StoreHandle]:
    """One handle per level; network stores are checked now (UserError if one does not answer)."""
    if is_memory(specs):
        return [StoreHandle(Opened(ShmSlotStore(n_ids, sizing.n_slots, sizing.slot_bytes, shared)), "memory")]
    handles = []
    for spec in specs:
        opener = functools.partial(open_store, spec, prefix=prefix)
        try:
            st = opener()
            check = getattr(st, "check", None)
            if check is not None:
                check()
            st.close()
        except StoreUnavailable as exc:
            raise UserError(f"cache store {spec}: {exc}") from None
        handles.append(StoreHandle(opener, spec))
    return handles


def train_store_specs(
    backend: str,
    *,
    host_ip: str = "127.0.0.1",
    port_num: int = 6379,
    port_num2: int | None = 6380,
    cache_nodes: int = 1,
    redis_nodes: str | None = None,
    redis_cluster: bool = False,
    lmdb_path: str | None = None,
    memcached_servers: str | None = None,
    session: int | None = None,
    server_port: int = 50052,
) -> list[str]:
    """``spidercache train``'s ``--cache-backend`` and SpiderCache's flags as store specs (one per level).

    ``redis`` with ``--cache_nodes N > 1`` (or ``--redis-nodes``): N independent
    servers, ``port_num``, ``port_num2``, ``port_num2 + 1``, ... (keys spread by
    consistent hashing; ``--redis-cluster``: a Redis Cluster instead). With one
    node: SpiderCache's two levels, ``port_num`` (important samples) and
    ``port_num2`` (unimportant / homophily samples).
    """
    kind = backend.strip().lower()
    if kind == "memory":
        return ["memory"]
    if kind == "lmdb":
        return [f"lmdb:{lmdb_path or '.spidercache/train-cache'}"]
    if kind == "redis":
        if cache_nodes > 1 or redis_nodes:
            if redis_nodes:
                nodes = redis_nodes
            else:
                ports = [port_num] + [(port_num2 or port_num + 1) + k for k in range(cache_nodes - 1)]
                nodes = ",".join(f"{host_ip}:{p}" for p in ports)
            return [f"redis-cluster://{nodes}" if redis_cluster else f"redis://{nodes}"]
        specs = [f"redis://{host_ip}:{port_num}"]
        if port_num2 and port_num2 != port_num:
            specs.append(f"redis://{host_ip}:{port_num2}")
        return specs
    if kind == "memcached":
        return [f"memcached://{memcached_servers or host_ip + ':11211'}"]
    if kind == "server":
        if session is None:
            raise UserError("--cache-backend server needs --session ID (spidercache server session new)")
        return [f"server://{host_ip}:{server_port}/{session}"]
    raise UserError(f"unknown cache backend {backend!r}; choose from memory, lmdb, redis, memcached, server")
