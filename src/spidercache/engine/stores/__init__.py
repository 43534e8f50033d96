"""Stores: where cached bytes live. One file per store, one protocol (``base.Store``).

``open_store(spec)`` builds one from a short text spec, the form the CLI and
config files use:

======================================  ==========================================
``memory`` / ``memory:MB``              in-process dict (optional byte budget, MB)
``lmdb:PATH``                           LMDB directory (persistent)
``spill:MB:PATH``                       MB of memory over LMDB at PATH
``redis://host:port[/prefix]``          one Redis server
``redis-cluster://h:p,h:p[/prefix]``    Redis Cluster (startup nodes)
``memcached://h:p,h:p[/prefix]``        memcached servers (consistent hashing)
``redis://h:p,h:p[/prefix]``            independent Redis servers (consistent hashing)
``server://host:port/SESSION``          a session of the cache server (its client,
                                        loaded by name: the engine does not import it)
======================================  ==========================================
"""

from __future__ import annotations

import functools
import os
from urllib.parse import urlparse

from ...errors import StoreUnavailable, UserError
from .base import Key, Store, Value
from .lmdb_store import LMDBStore
from .memcached_store import MemcachedStore
from .memory import MemoryStore
from .redis_store import RedisStore, ShardedStore, parse_nodes
from .spill import SpillStore

_MB = 1 << 20

SPEC_HELP = (
    "memory[:MB] | lmdb:PATH | spill:MB:PATH | redis://host:port[,host:port][/prefix] | "
    "redis-cluster://h:p,h:p[/prefix] | memcached://h:p,h:p[/prefix] | server://host:port/SESSION"
)
# stores that live in a front-end, imported by name on first use
_BY_NAME = {"server": "spidercache.server.client:DatasetCache"}


def _megabytes(text: str, spec: str) -> int:
    try:
        mb = float(text)
    except ValueError:
        raise UserError(f"bad store spec {spec!r}: {text!r} is not a size in MB") from None
    if not mb > 0:
        raise UserError(f"bad store spec {spec!r}: the size must be positive, got {text}")
    if mb * _MB > physical_memory():
        raise UserError(
            f"bad store spec {spec!r}: {text} MB is more than this machine's "
            f"{physical_memory() // _MB:,} MB of RAM"
        )
    return int(mb * _MB)


def physical_memory() -> int:
    """Bytes of RAM on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def open_store(spec: str, *, prefix: str | None = None) -> Store:
    """Open the store described by ``spec`` (see the module docstring).

    Raises ``UserError`` for a malformed spec and ``StoreUnavailable`` for a
    server that does not answer. ``prefix`` overrides the key prefix of network
    stores (default ``sc``, or the path part of the URL).
    """
    spec = spec.strip()
    scheme, sep, rest = spec.partition(":")
    scheme = scheme.lower()
    if scheme == "memory":
        return MemoryStore(_megabytes(rest, spec) if rest else None)
    if scheme == "lmdb":
        if not rest:
            raise UserError(f"bad store spec {spec!r}: expected lmdb:PATH")
        return LMDBStore(rest)
    if scheme == "spill":
        mb, sep2, path = rest.partition(":")
        if not sep2 or not path:
            raise UserError(f"bad store spec {spec!r}: expected spill:MB:PATH")
        return SpillStore(MemoryStore(_megabytes(mb, spec)), LMDBStore(path))
    if scheme in ("redis", "redis-cluster", "memcached"):
        url = urlparse(spec)
        if not rest.startswith("//") or not url.netloc:
            raise UserError(f"bad store spec {spec!r}: expected {scheme}://host:port[,host:port][/prefix]")
        nodes = parse_nodes(url.netloc)
        key_prefix = prefix or url.path.strip("/") or "sc"
        if scheme == "memcached":
            return MemcachedStore(nodes, prefix=key_prefix)
        if scheme == "redis":
            if len(nodes) == 1:
                return RedisStore(nodes[0][0], nodes[0][1], prefix=key_prefix)
            return ShardedStore(
                [functools.partial(RedisStore, h, p, prefix=key_prefix) for h, p in nodes],
                [f"{h}:{p}" for h, p in nodes],
            )
        return RedisStore(prefix=key_prefix, cluster=True, startup_nodes=nodes)
    if scheme == "server":
        return _server_store(spec, prefix)
    raise UserError(f"unknown store {spec!r}; expected one of: {SPEC_HELP}")


def _server_store(spec: str, pipeline: str | None) -> Store:
    import importlib

    url = urlparse(spec)
    session = url.path.strip("/")
    if not url.hostname or not session.isdigit():
        raise UserError(f"bad store spec {spec!r}: expected server://host:port/SESSION (a number)")
    module, name = _BY_NAME["server"].split(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(int(session), hostname=url.hostname, port=url.port or 50052, pipeline=pipeline or "")


__all__ = [
    "Store",
    "Key",
    "Value",
    "MemoryStore",
    "LMDBStore",
    "SpillStore",
    "RedisStore",
    "MemcachedStore",
    "ShardedStore",
    "open_store",
    "StoreUnavailable",
    "SPEC_HELP",
]
