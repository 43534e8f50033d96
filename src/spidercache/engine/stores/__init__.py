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
======================================  ==========================================
"""

from __future__ import annotations

from urllib.parse import urlparse

from ...errors import StoreUnavailable, UserError
from .base import Key, Store, Value
from .lmdb_store import LMDBStore
from .memcached_store import MemcachedStore
from .memory import MemoryStore
from .redis_store import RedisStore, parse_nodes
from .spill import SpillStore

_MB = 1 << 20

SPEC_HELP = (
    "memory[:MB] | lmdb:PATH | spill:MB:PATH | redis://host:port[/prefix] | "
    "redis-cluster://h:p,h:p[/prefix] | memcached://h:p,h:p[/prefix]"
)


def _megabytes(text: str, spec: str) -> int:
    try:
        mb = float(text)
    except ValueError:
        raise UserError(f"bad store spec {spec!r}: {text!r} is not a size in MB") from None
    if not mb > 0:
        raise UserError(f"bad store spec {spec!r}: the size must be positive, got {text}")
    return int(mb * _MB)


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
        if scheme == "redis" and len(nodes) == 1:
            host, port = nodes[0]
            return RedisStore(host, port, prefix=key_prefix)
        return RedisStore(prefix=key_prefix, cluster=True, startup_nodes=nodes)
    raise UserError(f"unknown store {spec!r}; expected one of: {SPEC_HELP}")


__all__ = [
    "Store",
    "Key",
    "Value",
    "MemoryStore",
    "LMDBStore",
    "SpillStore",
    "RedisStore",
    "MemcachedStore",
    "open_store",
    "StoreUnavailable",
    "SPEC_HELP",
]
