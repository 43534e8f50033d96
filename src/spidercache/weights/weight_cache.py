"""Layer weights of many nodes on a pool of memcached servers (DisCo's weight cache).

Key layout (``P`` is the key prefix, ``J`` the job, ``N`` the node)::

    P/J/N/manifest            the node's latest complete version (msgpack + xxh64)
    P/J/N/<layer>/<vid>/<i>   chunk i of one layer of version vid
    P/J/_nodes                nodes that ever stored weights in job J (one copy per server)

Write protocol: every chunk of a new version is written first under keys that
carry the version id ``vid`` (so they never overwrite the chunks of the version
readers may be reading), then the manifest is replaced in one ``set``. memcached
stores an item atomically, so a reader sees either the old manifest or the new
one, and both name only chunks that were completely written before them. After
the new manifest is in place the old version's chunks are deleted.

Read protocol: read the manifest, fetch every chunk it names in one
``get_many``, check each layer's length and xxh3 checksum. A missing chunk
(evicted by memcached, or on a server that died) means that version is gone: the
manifest is read again, and if it still names the same version the read returns
``None`` with a warning; it never assembles a tensor from part of a version.

The pool is the engine's memcached store (``engine/stores/memcached_store.py``,
consistent hashing, one set-up and one failure rule for every memcached user):
a server that does not answer raises ``StoreUnavailable``. Opening a
WeightCache with ``strict=False`` leaves servers that are already down out of
the pool (with a warning); a server that dies later makes reads fall back with
a ``WeightCacheWarning`` (``get``, ``best`` and ``neighbours`` return None) and
writes raise ``StoreUnavailable``, so the job goes on from other weights or
from scratch and says so; never a tensor from part of a version.
"""

from __future__ import annotations

import re
import time
import uuid
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import xxhash

from ..errors import CorruptValue, StoreUnavailable, UserError
from .layers import (
    NAME_RE,
    LayerEntry,
    WeightCacheWarning,
    WeightInfo,
    WeightVersion,
    architecture_of,
    assemble,
    check_name,
    layer_bytes,
    pack_manifest,
    parse_servers,
    rank_versions,
    state_of,
    unpack_manifest,
)
from .local_tier import LocalChunks

# Room left in each item for memcached's item header, the key and the CAS value.
_ITEM_OVERHEAD = 1024
_GET_BATCH_BYTES = 64 << 20  # fetch at most about this many bytes per get_many


class WeightCache:
    """Versioned layer weights per ``(job, node)`` on a memcached pool.

    >>> cache = WeightCache("127.0.0.1:11211,127.0.0.1:11212")
    >>> cache.put("mnist", "node01", model, fitness=0.83)
    >>> version = cache.get("mnist", "node01")          # or best(...), neighbours(...)
    >>> load_into(model, version.state)
    """

    def __init__(
        self,
        servers: str | Sequence[str] | Sequence[tuple[str, int]],
        prefix: str = "sc",
        chunk_bytes: int | None = None,
        connect_timeout: float = 1.0,
        timeout: float = 5.0,
        strict: bool = True,
        batch_bytes: int = _GET_BATCH_BYTES,
        local_bytes: int = 0,
    ) -> None:
        from pymemcache.client.base import Client

        from ..engine.stores.memcached_store import MemcachedStore

        self.servers = parse_servers(servers)
        self.prefix = check_name("key prefix", prefix)
        self.batch_bytes = int(batch_bytes)
        item_max = self._probe_servers(Client, connect_timeout, timeout, strict)
        self.store = MemcachedStore(
            self.servers,
            prefix=self.prefix,
            item_limit=item_max,
            connect_timeout=connect_timeout,
            timeout=timeout,
        )
        # the largest chunk the store keeps in one item (bigger ones it would cut again)
        self.chunk_bytes = int(chunk_bytes or (self.store.chunk_size - 1))
        if not 4096 <= self.chunk_bytes <= item_max - 256:
            raise UserError(f"chunk size {self.chunk_bytes} does not fit memcached's item size {item_max}")
        self._registered: set[tuple[str, str]] = set()
        scope = (tuple(self.servers), self.prefix)  # chunk reads counted; local_bytes: kept (local_tier.py)
        self.chunks = LocalChunks(self.store, local_bytes, self.chunk_bytes, scope)

    # ------------------------------------------------------------------ setup
    def _probe_servers(self, client_cls, connect_timeout: float, timeout: float, strict: bool) -> int:
        """Ask every server for its settings; returns the smallest item size.

        ``strict``: every server must answer (a wrong address is a user error).
        Otherwise servers that do not answer are left out of the ring with a
        warning (a node died mid-run) and only "none answers" is an error.
        """
        item_max = None
        alive = []
        for host, port in self.servers:
            client = client_cls((host, port), connect_timeout=connect_timeout, timeout=timeout)
            try:
                settings = client.stats("settings")
            except Exception as exc:  # refused, timeout, not a memcached server
                message = f"memcached at {host}:{port} does not answer ({type(exc).__name__}: {exc})"
                if strict:
                    raise UserError(message) from None
                warnings.warn(message + "; going on without it", WeightCacheWarning, stacklevel=3)
                continue
            finally:
                client.close()
            alive.append((host, port))
            size = int(settings.get(b"item_size_max", 1 << 20))
            item_max = size if item_max is None else min(item_max, size)
        if not alive:
            raise StoreUnavailable(
                "no memcached server of the pool answers: " + ", ".join(f"{h}:{p}" for h, p in self.servers)
            )
        self.servers = alive
        return int(item_max)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> WeightCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------- keys
    def _base(self, job: str, node: str) -> str:
        return f"{job}/{node}"  # the store puts its prefix in front

    def _manifest_key(self, job: str, node: str) -> str:
        return f"{self._base(job, node)}/manifest"

    def _nodes_key(self, job: str) -> str:
        return f"{job}/_nodes"

    def _chunk_keys(self, job: str, node: str, vid: str, entry: LayerEntry) -> list[str]:
        # Layer names are free text; keep them readable in keys when they are
        # safe, otherwise (spaces, control bytes, too long) use their hash.
        base = self._base(job, node)
        label = entry.name
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,120}", label):
            label = "h" + xxhash.xxh64_hexdigest(label.encode())
        return [f"{base}/{label}/{vid}/{i}" for i in range(entry.nchunks)]

    # ---------------------------------------------------------------- writing
    def put(self, job: str, node: str, model_or_state_dict: Any, fitness: float | None = None) -> WeightInfo:
        """Store every layer as a new version of ``(job, node)``; returns its manifest.

        Raises ``StoreUnavailable`` if any chunk or the manifest could not be
        stored; the previous version then stays the current one.
        """
        check_name("job", job)
        check_name("node", node)
        state = state_of(model_or_state_dict)
        if not state:
            raise UserError("nothing to store: the state dict is empty")
        previous = self.info(job, node)
        seq = previous.seq + 1 if previous else 1
        vid = f"{seq}-{uuid.uuid4().hex[:8]}"
        cb = self.chunk_bytes
        entries: list[LayerEntry] = []
        batch: dict[str, bytes] = {}
        batch_bytes = 0
        for name, value in state.items():
            kind, dtype, shape, raw = layer_bytes(value)
            n = raw.nbytes
            entry = LayerEntry(str(name), kind, dtype, shape, n, -(-n // cb), xxhash.xxh3_64_intdigest(raw))
            entries.append(entry)
            for i, key in enumerate(self._chunk_keys(job, node, vid, entry)):
                batch[key] = raw[i * cb : (i + 1) * cb]  # a view: the store copies it once
                batch_bytes += len(batch[key])
            if batch_bytes >= self.batch_bytes:
                self._set_all(batch)
                batch, batch_bytes = {}, 0
        if batch:
            self._set_all(batch)
        info = WeightInfo(
            job,
            node,
            seq,
            vid,
            None if fitness is None else float(fitness),
            time.time(),
            architecture_of(state),
            cb,
            entries,
        )
        # The manifest goes last: until this set succeeds readers see the old version.
        if not self.store.put(self._manifest_key(job, node), pack_manifest(info)):
            raise StoreUnavailable(f"could not store the manifest of {job}/{node} (memcached server down?)")
        if previous is not None:
            self._delete_version(previous)
        self._register(job, node)
        return info

    def _set_all(self, batch: dict[str, bytes]) -> None:
        failed = int((~self.store.put_many(list(batch), list(batch.values()))).sum())
        if failed:
            raise StoreUnavailable(
                f"{failed} of {len(batch)} weight chunks were not stored (memcached server down or full?)"
            )

    def _delete_version(self, info: WeightInfo) -> None:
        keys = [k for entry in info.layers for k in self._chunk_keys(info.job, info.node, info.vid, entry)]
        try:
            self.store.delete_many(keys)
        except StoreUnavailable:  # a dead server holds nothing to delete; memcached's LRU takes the rest
            pass

    def _register(self, job: str, node: str) -> None:
        """Add ``node`` to the job's node list on every live server (append is atomic there)."""
        if (job, node) in self._registered:
            return
        try:
            self.store.append_everywhere(self._nodes_key(job), node.encode() + b"\n")
        except StoreUnavailable:  # none answers: the next put registers it
            return
        self._registered.add((job, node))

    def delete(self, job: str, node: str) -> bool:
        """Forget ``(job, node)``'s current version; True if there was one."""
        info = self.info(job, node)
        if info is None:
            return False
        self.store.delete(self._manifest_key(job, node))
        self._delete_version(info)
        return True

    # ---------------------------------------------------------------- reading
    def nodes(self, job: str) -> list[str]:
        """Nodes that stored weights in ``job`` (union over the servers still up)."""
        check_name("job", job)
        seen: dict[str, None] = {}
        for raw in self.store.read_everywhere(self._nodes_key(job)):
            for line in raw.decode(errors="replace").split():
                if NAME_RE.match(line):
                    seen[line] = None
        return sorted(seen)

    def info(self, job: str, node: str) -> WeightInfo | None:
        """The manifest of ``(job, node)``'s latest version, or None."""
        check_name("job", job)
        check_name("node", node)
        return self._parse(self.store.get(self._manifest_key(job, node)), job, node)

    def infos(self, job: str, nodes: Iterable[str] | None = None) -> list[WeightInfo]:
        """Manifests of the given nodes (default: every registered node), in one round trip."""
        names = list(nodes) if nodes is not None else self.nodes(job)
        for name in names:
            check_name("node", name)
        raw = self.store.get_many([self._manifest_key(job, n) for n in names])
        out = []
        for n, value in zip(names, raw):
            parsed = self._parse(value, job, n)
            if parsed is not None:
                out.append(parsed)
        return out

    def _parse(self, raw, job: str, node: str) -> WeightInfo | None:
        if raw is None:
            return None
        try:
            return unpack_manifest(bytes(raw))
        except CorruptValue as exc:
            warnings.warn(
                f"weights of {job}/{node}: damaged manifest ignored ({exc})", WeightCacheWarning, stacklevel=3
            )
            return None

    def _reading(self, what: str, read: Callable[[], WeightVersion | None]) -> WeightVersion | None:
        """A load that falls back: a server that stops answering makes it None, with a warning."""
        try:
            return read()
        except StoreUnavailable as exc:
            warnings.warn(f"{what}: {exc}; not used", WeightCacheWarning, stacklevel=3)
            return None

    def get(self, job: str, node: str, retries: int = 2) -> WeightVersion | None:
        """The latest complete version of ``(job, node)``, or None (with a warning when one was lost)."""
        return self._reading(f"weights of {job}/{node}", lambda: self._get(job, node, retries))

    def _get(self, job: str, node: str, retries: int) -> WeightVersion | None:
        info = self.info(job, node)
        for _ in range(retries + 1):
            if info is None:
                return None
            state, problem = self._fetch(info)
            if state is not None:
                return WeightVersion(info, state)
            # A newer version may have replaced this one while we read it.
            latest = self.info(job, node)
            if latest is not None and latest.vid != info.vid:
                info = latest
                continue
            warnings.warn(
                f"weights of {job}/{node} version {info.seq} are incomplete ({problem}); not used",
                WeightCacheWarning,
                stacklevel=2,
            )
            return None
        return None

    def _fetch(self, info: WeightInfo) -> tuple[dict[str, Any] | None, str]:
        """All layers of one version, verified; (None, reason) if any byte is missing or wrong."""
        plan = [(entry, self._chunk_keys(info.job, info.node, info.vid, entry)) for entry in info.layers]
        per_batch = max(1, self.batch_bytes // info.chunk_bytes)
        found: dict[str, Any] = {}
        all_keys = [k for _, keys in plan for k in keys]
        for start in range(0, len(all_keys), per_batch):
            part = all_keys[start : start + per_batch]
            got = self.chunks.get_many(part)
            missing = sum(v is None for v in got)
            if missing:
                return None, f"{missing} chunk(s) missing: evicted or on a server that is down"
            found.update(zip(part, got))
        return assemble([(entry, [found[k] for k in keys]) for entry, keys in plan])

    def best(
        self, job: str, fitness: Callable[[WeightInfo], float] | None = None, exclude: Iterable[str] = ()
    ) -> WeightVersion | None:
        """The fittest node's latest complete version (stored fitness, higher is better, by default).

        If the fittest one cannot be read completely the next fittest is tried,
        with a warning; None when no node has a complete version.
        """
        skip = set(exclude)

        def read() -> WeightVersion | None:
            candidates = [i for i in self.infos(job) if i.node not in skip]
            return self._first_complete(rank_versions(candidates, fitness))

        return self._reading(f"best weights of {job}", read)

    def neighbours(
        self,
        job: str,
        node: str,
        graph: Mapping[str, Iterable[str]],
        fitness: Callable[[WeightInfo], float] | None = None,
    ) -> WeightVersion | None:
        """Walk ``graph`` (node -> neighbour nodes) breadth-first from ``node``.

        Returns the fittest complete version among the nearest nodes that have
        one (direct neighbours first, then theirs, ...); ``node`` itself is
        never returned. None if no reachable node has complete weights.
        """
        check_name("node", node)
        return self._reading(f"neighbours of {job}/{node}", lambda: self._walk(job, node, graph, fitness))

    def _walk(self, job, node, graph, fitness) -> WeightVersion | None:
        seen = {node}
        frontier = [node]
        while frontier:
            ring: list[str] = []
            for current in frontier:
                for nb in graph.get(current, ()):
                    if nb not in seen:
                        seen.add(nb)
                        ring.append(nb)
            if not ring:
                return None
            found = self._first_complete(rank_versions(self.infos(job, ring), fitness))
            if found is not None:
                return found
            frontier = ring
        return None

    def _first_complete(self, ranked: list[WeightInfo]) -> WeightVersion | None:
        for info in ranked:
            version = self.get(info.job, info.node)
            if version is not None:
                return version
        return None


__all__ = ["WeightCache"]
