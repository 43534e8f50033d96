"""Redis store: one server or a Redis Cluster, batched.

``get_many`` is one MGET (chunked for very large batches); ``put_many`` is one
pipeline of SETs with ``transaction=False`` (one round trip, no MULTI); keys are
``<prefix>:i:<int>`` / ``<prefix>:s:<str>`` so several caches share a server.
On a cluster, keys spread over hash slots: reads use ``mget_nonatomic`` (the
client splits the batch per slot and node) and writes a cluster pipeline,
which redis-py groups per node.

Every failure to talk to Redis (refused, reset, timeout, cluster down) is
raised as ``StoreUnavailable``; a constructor that cannot reach its server
raises it too, with the address in the message. Retries are kept short on
purpose: a cache that waits seconds for a dead server slows the job it is
supposed to speed up, and the ``Cache`` above backs off and retries later.
"""

from __future__ import annotations

from typing import Sequence
from urllib.parse import urlparse

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from ...errors import StoreUnavailable, UserError
from .base import Key, Store, Value, as_key_list, check_batch, key_text

_READ_CHUNK = 8192
# RedisClusterException (no slots, no reachable node) is not a RedisError.
_REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)


def _quick_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1)


def parse_nodes(text: str) -> list[tuple[str, int]]:
    """``"h:p,h:p"`` -> [(h, p), ...]; raises UserError on a malformed address."""
    nodes = []
    for part in text.split(","):
        part = part.strip()
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"bad server address {part!r}: expected host:port")
        nodes.append((host, int(port)))
    if not nodes:
        raise UserError("no server address given")
    return nodes


class RedisStore(Store):
    name = "redis"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        url: str | None = None,
        prefix: str = "sc",
        cluster: bool = False,
        startup_nodes: Sequence[tuple[str, int]] | None = None,
        socket_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        ttl: int | None = None,
    ) -> None:
        if url is not None:
            parsed = urlparse(url)
            if parsed.scheme not in ("redis", "redis-cluster"):
                raise UserError(f"not a redis URL: {url!r}")
            nodes = parse_nodes(parsed.netloc)
            cluster = cluster or parsed.scheme == "redis-cluster" or len(nodes) > 1
            if parsed.path.strip("/"):
                prefix = parsed.path.strip("/")
            if cluster:
                startup_nodes = nodes
            else:
                host, port = nodes[0]
        if cluster and not startup_nodes:
            startup_nodes = [(host, port)]
        self.host, self.port = host, int(port)
        self.prefix = prefix
        self.cluster = bool(cluster)
        self.startup_nodes = [tuple(n) for n in startup_nodes] if startup_nodes else None
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.ttl = ttl
        self._prefix_bytes = prefix.encode("utf-8") + b":"
        self._client = self._connect()

    # ------------------------------------------------------------ plumbing
    @property
    def address(self) -> str:
        if self.cluster:
            return ",".join(f"{h}:{p}" for h, p in self.startup_nodes or [])
        return f"{self.host}:{self.port}"

    def _connect(self):
        kw = dict(
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=_quick_retry(),
        )
        try:
            if self.cluster:
                client = RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in self.startup_nodes],
                    require_full_coverage=True,
                    **kw,
                )
            else:
                client = redis.Redis(host=self.host, port=self.port, **kw)
            client.ping()
        except _REDIS_ERRORS as exc:
            kind = "Redis Cluster" if self.cluster else "Redis"
            raise StoreUnavailable(f"{kind} at {self.address} does not answer: {_one_line(exc)}") from exc
        return client

    def _key(self, key: Key) -> bytes:
        return self._prefix_bytes + key_text(key).encode("utf-8")

    def _unavailable(self, exc: BaseException, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"Redis at {self.address} failed during {what}: {_one_line(exc)}")

    # ----------------------------------------------------------- protocol
    def get_many(self, keys) -> list[Value | None]:
        rkeys = [self._key(k) for k in as_key_list(keys)]
        if not rkeys:
            return []
        out: list[Value | None] = []
        try:
            for start in range(0, len(rkeys), _READ_CHUNK):
                chunk = rkeys[start : start + _READ_CHUNK]
                if self.cluster:
                    out.extend(self._client.mget_nonatomic(chunk))
                else:
                    out.extend(self._client.mget(chunk))
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc, "get_many") from exc
        return out

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        keys = as_key_list(keys)
        check_batch(keys, values)
        if not keys:
            return np.zeros(0, np.bool_)
        try:
            pipe = self._client.pipeline(transaction=False)
            for k, v in zip(keys, values):
                if not isinstance(v, (bytes, memoryview)):
                    v = memoryview(v)
                pipe.set(self._key(k), v, ex=self.ttl)
            results = pipe.execute(raise_on_error=False)
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc, "put_many") from exc
        stored = np.zeros(len(keys), np.bool_)
        for i, r in enumerate(results):
            if isinstance(
                r,
                (
                    redis.exceptions.ConnectionError,
                    redis.exceptions.TimeoutError,
                    redis.exceptions.ClusterError,
                ),
            ):
                raise self._unavailable(r, "put_many")
            # A ResponseError here is a refusal (e.g. OOM under maxmemory): not stored.
            stored[i] = r is True or r == b"OK"
        return stored

    def delete_many(self, keys) -> None:
        rkeys = [self._key(k) for k in as_key_list(keys)]
        if not rkeys:
            return
        try:
            for start in range(0, len(rkeys), _READ_CHUNK):
                self._client.delete(*rkeys[start : start + _READ_CHUNK])
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc, "delete_many") from exc

    def __contains__(self, key: Key) -> bool:
        try:
            return bool(self._client.exists(self._key(key)))
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc, "exists") from exc

    def clear(self) -> int:
        """Delete every key under this store's prefix; returns how many."""
        n = 0
        try:
            nodes = self._client.get_primaries() if self.cluster else [None]
            for node in nodes:
                client = self._client.get_redis_connection(node) if node is not None else self._client
                batch = []
                for k in client.scan_iter(match=self._prefix_bytes + b"*", count=1000):
                    batch.append(k)
                    if len(batch) >= 1000:
                        n += self._delete_raw(client, batch)
                        batch = []
                if batch:
                    n += self._delete_raw(client, batch)
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc, "clear") from exc
        return n

    @staticmethod
    def _delete_raw(client, keys: list[bytes]) -> int:
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.delete(k)
        return sum(int(r) for r in pipe.execute())

    def close(self) -> None:
        try:
            self._client.close()
        except _REDIS_ERRORS:
            pass

    def __getstate__(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "host",
                "port",
                "prefix",
                "cluster",
                "startup_nodes",
                "socket_timeout",
                "connect_timeout",
                "ttl",
            )
        }

    def __setstate__(self, state: dict) -> None:
        type(self).__init__(  # a subclass rebuilds as itself
            self,
            state["host"],
            state["port"],
            prefix=state["prefix"],
            cluster=state["cluster"],
            startup_nodes=state["startup_nodes"],
            socket_timeout=state["socket_timeout"],
            connect_timeout=state["connect_timeout"],
            ttl=state["ttl"],
        )

    def __repr__(self) -> str:
        kind = "cluster" if self.cluster else "server"
        return f"RedisStore({kind} {self.address}, prefix={self.prefix!r})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class ShardedStore(Store):
    """Independent servers (SpiderCache's ``--cache_nodes N`` Redis layout), keys spread by
    consistent hashing.

    Each key lives on the node its hash falls to on a ring of ``vnodes``
    points per node, so adding or losing a node moves only that node's share.
    Nodes are opened on first use; a node that fails is left alone for a
    back-off period while the others keep serving: its keys read as absent
    (lost hits, reloaded from the source) and its puts as refused. Only when
    every node is down does a call raise ``StoreUnavailable``.
    """

    name = "sharded"

    def __init__(self, openers: Sequence, names: Sequence[str], vnodes: int = 160) -> None:
        import xxhash

        from ..backoff import Backoff

        if len(openers) != len(names) or not openers:
            raise ValueError("one name per node, at least one node")
        self.openers, self.names = list(openers), list(names)
        self._nodes: list[Store | None] = [None] * len(openers)
        self._backoff = [Backoff(1.0, 30.0) for _ in openers]
        self.node_errors = 0
        points = [
            (xxhash.xxh3_64_intdigest(f"{nm}#{v}".encode()), k)
            for k, nm in enumerate(self.names)
            for v in range(vnodes)
        ]
        points.sort()
        self._ring = np.asarray([p for p, _ in points], np.uint64)
        self._owner = np.asarray([k for _, k in points], np.int64)
        self._hash = xxhash.xxh3_64_intdigest

    def node_of(self, keys: list) -> np.ndarray:
        h = np.fromiter((self._hash(key_text(k).encode()) for k in keys), np.uint64, len(keys))
        pos = np.searchsorted(self._ring, h) % self._ring.size
        return self._owner[pos]

    def _node(self, k: int) -> Store | None:
        if self._backoff[k].down:
            return None
        if self._nodes[k] is None:
            try:
                self._nodes[k] = self.openers[k]()
            except StoreUnavailable:
                self._failed(k)
                return None
        return self._nodes[k]

    def check(self) -> None:
        """Open every node now; raise ``StoreUnavailable`` for the first that does not answer."""
        for k, opener in enumerate(self.openers):
            if self._nodes[k] is None:
                self._nodes[k] = opener()

    def _failed(self, k: int) -> None:
        self.node_errors += 1
        self._backoff[k].failed()
        st, self._nodes[k] = self._nodes[k], None
        if st is not None:
            try:
                st.close()
            except Exception:  # a dead connection may fail to close; nothing to keep
                pass

    def _each(self, keys: list, method: str, *args):
        """(positions, result or None) per node; raise only when every node of the store is down."""
        owner = self.node_of(keys)
        results, alive = [], False
        for k in np.unique(owner).tolist():
            pos = np.flatnonzero(owner == k)
            node = self._node(k)
            res = None
            if node is not None:
                try:
                    res = getattr(node, method)(
                        [keys[i] for i in pos.tolist()], *[[a[i] for i in pos.tolist()] for a in args]
                    )
                    alive = True
                    self._backoff[k].succeeded()
                except StoreUnavailable:
                    self._failed(k)
            results.append((pos, res))
        if keys and not alive and all(b.down for b in self._backoff):
            raise StoreUnavailable(f"no node of {', '.join(self.names)} answers")
        return results

    def get_many(self, keys) -> list[Value | None]:
        keys = as_key_list(keys)
        out: list[Value | None] = [None] * len(keys)
        for pos, res in self._each(keys, "get_many"):
            if res is not None:
                for i, v in zip(pos.tolist(), res):
                    out[i] = v
        return out

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        keys = as_key_list(keys)
        check_batch(keys, values)
        stored = np.zeros(len(keys), np.bool_)
        for pos, res in self._each(keys, "put_many", list(values)):
            if res is not None:
                stored[pos] = res
        return stored

    def delete_many(self, keys) -> None:
        self._each(as_key_list(keys), "delete_many")

    def close(self) -> None:
        for k, st in enumerate(self._nodes):
            if st is not None:
                st.close()
            self._nodes[k] = None

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_nodes"] = [None] * len(self.openers)
        d.pop("_hash")
        return d

    def __setstate__(self, state: dict) -> None:
        import xxhash

        self.__dict__.update(state)
        self._hash = xxhash.xxh3_64_intdigest

    def __repr__(self) -> str:
        return f"ShardedStore({', '.join(self.names)})"
