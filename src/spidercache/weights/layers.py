"""What a weight cache stores, independent of where: layers as bytes, manifests, names.

A version of a node's weights is a manifest (``WeightInfo``: job, node,
sequence number, version id, fitness, architecture digest, one ``LayerEntry``
per layer with dtype, shape, length, chunk count and xxh3 checksum) plus the
layers' raw bytes. ``pack_manifest`` / ``unpack_manifest`` frame a manifest
with its own xxh64 so a damaged one is refused, never half-read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgpack
import numpy as np
import xxhash

from ..errors import CorruptValue, UserError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_MANIFEST_FORMAT = 1


class WeightCacheWarning(RuntimeWarning):
    """A load fell back (server gone, version evicted, damaged item)."""


def check_name(kind: str, name: str) -> str:
    """Job and node names become memcached keys: letters, digits, ``_ . -`` only."""
    if not isinstance(name, str) or not NAME_RE.match(name):
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


def layer_bytes(value: Any) -> tuple[str, str, tuple[int, ...], memoryview]:
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


def rebuild_layer(entry: LayerEntry, buf: bytearray) -> Any:
    if entry.kind == "torch":
        torch = _torch()
        dtype = getattr(torch, entry.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise CorruptValue(f"unknown torch dtype {entry.dtype!r} in manifest")
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).reshape(entry.shape)
    return np.frombuffer(buf, dtype=np.dtype(entry.dtype)).reshape(entry.shape)


def pack_manifest(info: WeightInfo) -> bytes:
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


def unpack_manifest(raw: bytes) -> WeightInfo:
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


def rank_versions(infos: list[WeightInfo], fitness: Callable[[WeightInfo], float] | None) -> list[WeightInfo]:
    def score(info: WeightInfo) -> tuple[float, float]:
        value = fitness(info) if fitness is not None else info.fitness
        return (float("-inf") if value is None else float(value), info.created)

    return sorted(infos, key=score, reverse=True)


def assemble(layers: list[tuple[LayerEntry, list[bytes]]]) -> tuple[dict[str, Any] | None, str]:
    """Layers from their chunks, each checked for length and checksum; (None, reason) at the first bad one."""
    state: dict[str, Any] = {}
    for entry, chunks in layers:
        buf = bytearray().join(chunks) if chunks else bytearray()
        if len(buf) != entry.nbytes:
            return None, f"layer {entry.name}: {len(buf)} bytes, manifest says {entry.nbytes}"
        if xxhash.xxh3_64_intdigest(buf) != entry.checksum:
            return None, f"layer {entry.name}: checksum mismatch"
        state[entry.name] = rebuild_layer(entry, buf)
    return state, ""
