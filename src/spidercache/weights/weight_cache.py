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

The pool is a pymemcache ``HashClient`` (consistent hashing). It runs with
``ignore_exc`` so that a server that dies mid-run is dropped from the ring and
its keys read as misses; the manifest and checksums turn those misses into "no
complete version" instead of wrong data.
"""

from __future__ import annotations

import re
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgpack
import numpy as np
import xxhash

from ..errors import CorruptValue, StoreUnavailable, UserError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_MAX_KEY = 250  # memcached's key length limit
_MANIFEST_FORMAT = 1
# Room left in each item for memcached's item header, the key and the CAS value.
_ITEM_OVERHEAD = 1024
_GET_BATCH_BYTES = 64 << 20  # fetch at most about this many bytes per get_many


class WeightCacheWarning(RuntimeWarning):
    """A load fell back (server gone, version evicted, damaged item)."""


def check_name(kind: str, name: str) -> str:
    """Job and node names become memcached keys: letters, digits, ``_ . -`` only."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(
            f"{kind} name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-' "
            f"(starting with a letter or digit)"
        )
    return name


def parse_servers(servers: str | Sequence[str] | Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` or a list of such strings or ``(host, port)`` pairs."""
    items: Iterable[Any] = servers.split(",") if isinstance(servers, str) else servers
    parsed: list[tuple[str, int]] = []
    for item in items:
        if isinstance(item, tuple):
            host, port = item
        else:
            text = str(item).strip()
            if not text:
                continue
            host, sep, port_text = text.rpartition(":")
            if not sep or not host or not port_text.isdigit():
                raise UserError(f"memcached server {text!r} is not HOST:PORT")
            port = int(port_text)
        if not 0 < int(port) < 65536:
            raise UserError(f"memcached server {host}:{port}: port out of range")
        parsed.append((str(host), int(port)))
    if not parsed:
        raise UserError("no memcached servers given")
    return parsed


@dataclass
class LayerEntry:
    name: str
    kind: str  # "torch" or "numpy"
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    nchunks: int
    checksum: int


@dataclass
class WeightInfo:
    """What a manifest says about one node's latest version (no tensor data)."""

    job: str
    node: str
    seq: int
    vid: str
    fitness: float | None
    created: float
    arch: str
    chunk_bytes: int
    layers: list[LayerEntry] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)


@dataclass
class WeightVersion:
    """One complete, verified version of a node's weights."""

    info: WeightInfo
    state: dict[str, Any]

    @property
    def node(self) -> str:
        return self.info.node

    @property
    def fitness(self) -> float | None:
        return self.info.fitness


def _torch():
    import torch

    return torch


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def state_of(model_or_state: Any) -> Mapping[str, Any]:
    """The state dict of a torch module, or the mapping itself."""
    if hasattr(model_or_state, "state_dict") and callable(model_or_state.state_dict):
        return model_or_state.state_dict()
    if isinstance(model_or_state, Mapping):
        return model_or_state
    raise UserError(
        f"expected a torch module or a mapping of layer name to tensor, got {type(model_or_state).__name__}"
    )


def architecture_of(state: Mapping[str, Any]) -> str:
    """A digest of layer names, shapes and dtypes: equal only for the same architecture."""
    h = xxhash.xxh64()
    for name, value in state.items():
        h.update(f"{name}|{tuple(value.shape)}|{value.dtype};".encode())
    return h.hexdigest()


def check_compatible(model_or_state: Any, state: Mapping[str, Any]) -> None:
    """Raise ``UserError`` (one line) unless ``state`` has exactly the model's layers and shapes."""
    expected = state_of(model_or_state)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with other shapes "
                f"(e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})"
            )
        raise UserError("cached weights are of another architecture: " + "; ".join(parts))


def load_into(model: Any, state: Mapping[str, Any]) -> Any:
    """Check the architecture, then copy ``state`` into ``model``; returns the model."""
    check_compatible(model, state)
    torch = _torch()
    model.load_state_dict(
        {k: (v if _is_tensor(v) else torch.from_numpy(np.asarray(v))) for k, v in state.items()}
    )
    return model


def _layer_bytes(value: Any) -> tuple[str, str, tuple[int, ...], memoryview]:
    """(kind, dtype, shape, raw bytes view) of a tensor or array, without copying when contiguous."""
    if _is_tensor(value):
        torch = _torch()
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        # Viewing as uint8 works for every dtype, bfloat16 included (numpy has none).
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.empty(0, np.uint8)
        return "torch", str(t.dtype).removeprefix("torch."), tuple(t.shape), memoryview(raw).cast("B")
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.hasobject:
            raise UserError("numpy arrays of Python objects cannot be cached as weights")
        return "numpy", arr.dtype.str, tuple(arr.shape), memoryview(arr.reshape(-1).view(np.uint8)).cast("B")
    raise UserError(f"a weight must be a torch tensor or numpy array, got {type(value).__name__}")


def _rebuild(entry: LayerEntry, buf: bytearray) -> Any:
    if entry.kind == "torch":
        torch = _torch()
        dtype = getattr(torch, entry.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise CorruptValue(f"unknown torch dtype {entry.dtype!r} in manifest")
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).reshape(entry.shape)
    return np.frombuffer(buf, dtype=np.dtype(entry.dtype)).reshape(entry.shape)


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
        dead_timeout: float = 30.0,
        strict: bool = True,
        batch_bytes: int = _GET_BATCH_BYTES,
    ) -> None:
        from pymemcache.client.base import Client
        from pymemcache.client.hash import HashClient

        self.servers = parse_servers(servers)
        self.prefix = check_name("key prefix", prefix)
        self.batch_bytes = int(batch_bytes)
        item_max = self._probe_servers(Client, connect_timeout, timeout, strict)
        self.chunk_bytes = int(chunk_bytes or (item_max - _ITEM_OVERHEAD))
        if not 4096 <= self.chunk_bytes <= item_max - 256:
            raise UserError(f"chunk size {self.chunk_bytes} does not fit memcached's item size {item_max}")
        # retry_attempts=0: a server that fails once leaves the ring at once (for
        # dead_timeout seconds), so its keys read as misses instead of stalling
        # every later call on the same timeout.
        self._client = HashClient(
            self.servers,
            connect_timeout=connect_timeout,
            timeout=timeout,
            ignore_exc=True,
            retry_attempts=0,
            dead_timeout=dead_timeout,
            default_noreply=False,
            allow_unicode_keys=False,
        )
        self._registered: set[tuple[str, str]] = set()

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
        self._client.close()

    def __enter__(self) -> WeightCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------- keys
    def _base(self, job: str, node: str) -> str:
        return f"{self.prefix}/{job}/{node}"

    def _manifest_key(self, job: str, node: str) -> str:
        return f"{self._base(job, node)}/manifest"

    def _nodes_key(self, job: str) -> str:
        return f"{self.prefix}/{job}/_nodes"

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
            kind, dtype, shape, raw = _layer_bytes(value)
            n = raw.nbytes
            entry = LayerEntry(str(name), kind, dtype, shape, n, -(-n // cb), xxhash.xxh3_64_intdigest(raw))
            entries.append(entry)
            for i, key in enumerate(self._chunk_keys(job, node, vid, entry)):
                batch[key] = bytes(raw[i * cb : (i + 1) * cb])
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
        if not self._client.set(self._manifest_key(job, node), _pack_manifest(info)):
            raise StoreUnavailable(f"could not store the manifest of {job}/{node} (memcached server down?)")
        if previous is not None:
            self._delete_version(previous)
        self._register(job, node)
        return info

    def _set_all(self, batch: dict[str, bytes]) -> None:
        failed = self._client.set_many(batch)
        if failed:
            raise StoreUnavailable(
                f"{len(failed)} of {len(batch)} weight chunks were not stored "
                "(memcached server down or full?)"
            )

    def _delete_version(self, info: WeightInfo) -> None:
        keys = [k for entry in info.layers for k in self._chunk_keys(info.job, info.node, info.vid, entry)]
        # One pipelined, no-reply batch per server, sent to every server: cheaper
        # than HashClient.delete_many, which hashes each key (in Python) and
        # sends one command per call; deleting an absent key costs memcached nothing.
        for client in list(self._client.clients.values()):
            try:
                client.delete_many(keys, noreply=True)
            except Exception:  # a dead server holds nothing to delete
                continue

    def _register(self, job: str, node: str) -> None:
        """Add ``node`` to the job's node list on every live server (append is atomic there)."""
        if (job, node) in self._registered:
            return
        key = self._nodes_key(job).encode()
        line = node.encode() + b"\n"
        for client in list(self._client.clients.values()):
            try:
                if not client.append(key, line, noreply=False):
                    client.add(key, b"", noreply=False)
                    client.append(key, line, noreply=False)
            except Exception:  # a dead server: the others keep the list
                continue
        self._registered.add((job, node))

    def delete(self, job: str, node: str) -> bool:
        """Forget ``(job, node)``'s current version; True if there was one."""
        info = self.info(job, node)
        if info is None:
            return False
        self._client.delete(self._manifest_key(job, node), noreply=False)
        self._delete_version(info)
        return True

    # ---------------------------------------------------------------- reading
    def nodes(self, job: str) -> list[str]:
        """Nodes that stored weights in ``job`` (union over the servers still up)."""
        check_name("job", job)
        key = self._nodes_key(job).encode()
        seen: dict[str, None] = {}
        for client in list(self._client.clients.values()):
            try:
                raw = client.get(key)
            except Exception:
                continue
            for line in (raw or b"").decode(errors="replace").split():
                if _NAME_RE.match(line):
                    seen[line] = None
        return sorted(seen)

    def info(self, job: str, node: str) -> WeightInfo | None:
        """The manifest of ``(job, node)``'s latest version, or None."""
        check_name("job", job)
        check_name("node", node)
        return self._parse(self._client.get(self._manifest_key(job, node)), job, node)

    def infos(self, job: str, nodes: Iterable[str] | None = None) -> list[WeightInfo]:
        """Manifests of the given nodes (default: every registered node), in one round trip."""
        names = list(nodes) if nodes is not None else self.nodes(job)
        for name in names:
            check_name("node", name)
        raw = self._client.get_many([self._manifest_key(job, n) for n in names])
        out = []
        for n in names:
            parsed = self._parse(raw.get(self._manifest_key(job, n)), job, n)
            if parsed is not None:
                out.append(parsed)
        return out

    def _parse(self, raw: bytes | None, job: str, node: str) -> WeightInfo | None:
        if raw is None:
            return None
        try:
            return _unpack_manifest(raw)
        except CorruptValue as exc:
            warnings.warn(
                f"weights of {job}/{node}: damaged manifest ignored ({exc})", WeightCacheWarning, stacklevel=3
            )
            return None

    def get(self, job: str, node: str, retries: int = 2) -> WeightVersion | None:
        """The latest complete version of ``(job, node)``, or None (with a warning when one was lost)."""
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
        found: dict[str, bytes] = {}
        all_keys = [k for _, keys in plan for k in keys]
        for start in range(0, len(all_keys), per_batch):
            part = all_keys[start : start + per_batch]
            got = self._client.get_many(part)
            if len(got) != len(part):
                return None, f"{len(part) - len(got)} chunk(s) missing: evicted or on a server that is down"
            found.update(got)
        state: dict[str, Any] = {}
        for entry, keys in plan:
            chunks = [found[k] for k in keys]
            buf = bytearray().join(chunks) if chunks else bytearray()
            if len(buf) != entry.nbytes:
                return None, f"layer {entry.name}: {len(buf)} bytes, manifest says {entry.nbytes}"
            if xxhash.xxh3_64_intdigest(buf) != entry.checksum:
                return None, f"layer {entry.name}: checksum mismatch"
            state[entry.name] = _rebuild(entry, buf)
        return state, ""

    def best(
        self, job: str, fitness: Callable[[WeightInfo], float] | None = None, exclude: Iterable[str] = ()
    ) -> WeightVersion | None:
        """The fittest node's latest complete version (stored fitness, higher is better, by default).

        If the fittest one cannot be read completely the next fittest is tried,
        with a warning; None when no node has a complete version.
        """
        skip = set(exclude)
        candidates = [i for i in self.infos(job) if i.node not in skip]
        return self._first_complete(_rank(candidates, fitness))

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
            found = self._first_complete(_rank(self.infos(job, ring), fitness))
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


def _rank(infos: list[WeightInfo], fitness: Callable[[WeightInfo], float] | None) -> list[WeightInfo]:
    def score(info: WeightInfo) -> tuple[float, float]:
        value = fitness(info) if fitness is not None else info.fitness
        return (float("-inf") if value is None else float(value), info.created)

    return sorted(infos, key=score, reverse=True)


def _pack_manifest(info: WeightInfo) -> bytes:
    body = msgpack.packb(
        {
            "format": _MANIFEST_FORMAT,
            "job": info.job,
            "node": info.node,
            "seq": info.seq,
            "vid": info.vid,
            "fitness": info.fitness,
            "created": info.created,
            "arch": info.arch,
            "chunk_bytes": info.chunk_bytes,
            "layers": [
                [e.name, e.kind, e.dtype, list(e.shape), e.nbytes, e.nchunks, e.checksum] for e in info.layers
            ],
        },
        use_bin_type=True,
    )
    return xxhash.xxh64_intdigest(body).to_bytes(8, "little") + body


def _unpack_manifest(raw: bytes) -> WeightInfo:
    if len(raw) < 9 or int.from_bytes(raw[:8], "little") != xxhash.xxh64_intdigest(raw[8:]):
        raise CorruptValue("manifest checksum mismatch")
    try:
        d = msgpack.unpackb(raw[8:], raw=False)
        if d.get("format") != _MANIFEST_FORMAT:
            raise CorruptValue(f"manifest format {d.get('format')!r} is not {_MANIFEST_FORMAT}")
        layers = [
            LayerEntry(n, k, dt, tuple(int(s) for s in sh), int(nb), int(nc), int(cs))
            for n, k, dt, sh, nb, nc, cs in d["layers"]
        ]
        return WeightInfo(
            d["job"],
            d["node"],
            int(d["seq"]),
            d["vid"],
            d["fitness"],
            float(d["created"]),
            d["arch"],
            int(d["chunk_bytes"]),
            layers,
        )
    except (KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
        raise CorruptValue(f"malformed manifest: {exc}") from None


def ring_graph(nodes: Sequence[str]) -> dict[str, list[str]]:
    """Each node's neighbours are the next and previous nodes on a ring (the default walk)."""
    n = len(nodes)
    if n < 2:
        return {node: [] for node in nodes}
    return {nodes[i]: list(dict.fromkeys([nodes[(i + 1) % n], nodes[(i - 1) % n]])) for i in range(n)}


__all__ = [
    "WeightCache",
    "WeightInfo",
    "WeightVersion",
    "LayerEntry",
    "WeightCacheWarning",
    "check_name",
    "parse_servers",
    "state_of",
    "architecture_of",
    "check_compatible",
    "load_into",
    "ring_graph",
]
