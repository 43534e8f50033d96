"""Turn cached values into bytes and back, with a header and a checksum.

Stores hold opaque bytes; this module is the only place that knows what they
mean. Every encoded value is::

    fixed header (28 bytes, little-endian)
        magic    4s   b"SPC1"
        version  B    1
        kind     B    0 bytes | 1 numpy | 2 torch | 3 msgpack
        flags    B    bit 0: payload is lz4-compressed (lz4.block, size stored)
        ndim     B    number of dimensions (arrays and tensors)
        dtlen    B    length of the dtype string
        pad      3x
        plen     Q    length of the stored payload
        checksum Q    xxh3_64 of every byte of the value except these 8
    dtype string (dtlen bytes, ascii), shape (ndim x int64), zero padding
    payload (starts at a multiple of 16 so numpy views are aligned)

The checksum covers the header as well as the payload, so a flipped bit in a
shape or dtype is caught just like one in the data. ``decode`` raises
``CorruptValue`` for any mismatch or malformed header; it never returns data it
could not verify.

numpy arrays decode as zero-copy, read-only views of the buffer (the buffer
stays alive as long as the array does). torch tensors decode into one fresh,
writable CPU tensor (torch warns on read-only buffers, and a tensor is usually
fed to a model that may write in place). Generic objects (job results, small
records) go through msgpack; arrays and tensors nested inside them are encoded
with this codec as msgpack extension values. msgpack turns tuples into lists.
Pickle is deliberately not offered: values come back from shared stores
(Redis, memcached) that other processes can write.
"""

from __future__ import annotations

import struct
from typing import Any

import lz4.block
import msgpack
import numpy as np
import xxhash

from ..errors import CorruptValue

MAGIC = b"SPC1"
VERSION = 1

KIND_BYTES = 0
KIND_NUMPY = 1
KIND_TORCH = 2
KIND_MSGPACK = 3
_KINDS = (KIND_BYTES, KIND_NUMPY, KIND_TORCH, KIND_MSGPACK)

FLAG_LZ4 = 1

_FIXED = struct.Struct("<4sBBBBB3xQQ")
FIXED_SIZE = _FIXED.size  # 28
_CHECKSUM_AT = FIXED_SIZE - 8
_ALIGN = 16
_MAX_NDIM = 32

# msgpack extension type codes for arrays / tensors nested in generic objects
_EXT_ENCODED = 1


def encode(value: Any, *, compress: bool = False) -> bytes:
    """Encode ``value`` (bytes-like, numpy array, torch tensor or msgpack-able object).

    ``compress=True`` stores the payload lz4-compressed when that makes it smaller.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _pack(KIND_BYTES, b"", (), memoryview(value).cast("B"), compress)
    if isinstance(value, np.ndarray):
        return _encode_numpy(value, compress)
    if _is_tensor(value):
        return _encode_torch(value, compress)
    try:
        payload = msgpack.packb(value, use_bin_type=True, default=_msgpack_default)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"cannot encode a value of type {type(value).__name__}: {exc}") from exc
    return _pack(KIND_MSGPACK, b"", (), payload, compress)


def decode(buf: bytes | bytearray | memoryview) -> Any:
    """Decode a value made by ``encode``; raise ``CorruptValue`` if it does not verify."""
    kind, flags, dtype_str, shape, payload = _unpack(buf)
    if flags & FLAG_LZ4:
        try:
            payload = memoryview(lz4.block.decompress(payload))
        except lz4.block.LZ4BlockError as exc:
            raise CorruptValue(f"lz4 payload does not decompress: {exc}") from exc
    if kind == KIND_BYTES:
        return bytes(payload)
    if kind == KIND_NUMPY:
        return _decode_numpy(dtype_str, shape, payload)
    if kind == KIND_TORCH:
        return _decode_torch(dtype_str, shape, payload)
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=_msgpack_ext)
    except CorruptValue:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptValue(f"msgpack payload does not unpack: {exc}") from exc


def header_size(buf: bytes | bytearray | memoryview) -> int:
    """Bytes before the payload of an encoded value (for accounting)."""
    mv = memoryview(buf).cast("B")
    if len(mv) < FIXED_SIZE:
        raise CorruptValue("value shorter than its fixed header")
    _, _, _, _, ndim, dtlen, _, _ = _FIXED.unpack_from(mv, 0)
    return _payload_offset(dtlen, ndim)


# --------------------------------------------------------------- internals
def _payload_offset(dtlen: int, ndim: int) -> int:
    end = FIXED_SIZE + dtlen + 8 * ndim
    return (end + _ALIGN - 1) // _ALIGN * _ALIGN


def _pack(kind: int, dtype_str: bytes, shape: tuple, payload, compress: bool) -> bytes:
    flags = 0
    if compress and len(payload) > 64:
        packed = lz4.block.compress(payload, store_size=True)
        if len(packed) < len(payload):
            payload, flags = packed, FLAG_LZ4
    if len(dtype_str) > 255:
        raise TypeError("dtype description too long to encode")
    if len(shape) > _MAX_NDIM:
        raise TypeError(f"arrays of more than {_MAX_NDIM} dimensions are not supported")
    offset = _payload_offset(len(dtype_str), len(shape))
    plen = len(payload)
    out = bytearray(offset + plen)
    _FIXED.pack_into(out, 0, MAGIC, VERSION, kind, flags, len(shape), len(dtype_str), plen, 0)
    pos = FIXED_SIZE
    out[pos : pos + len(dtype_str)] = dtype_str
    pos += len(dtype_str)
    if shape:
        struct.pack_into(f"<{len(shape)}q", out, pos, *shape)
    out[offset:] = payload
    h = xxhash.xxh3_64()
    mv = memoryview(out)
    h.update(mv[:_CHECKSUM_AT])
    h.update(mv[FIXED_SIZE:])
    struct.pack_into("<Q", out, _CHECKSUM_AT, h.intdigest())
    return bytes(out)


def _unpack(buf) -> tuple[int, int, str, tuple, memoryview]:
    try:
        mv = memoryview(buf).cast("B")
    except TypeError as exc:
        raise CorruptValue(f"value is not a byte buffer: {exc}") from exc
    if len(mv) < FIXED_SIZE:
        raise CorruptValue(f"value of {len(mv)} bytes is shorter than the {FIXED_SIZE}-byte header")
    magic, version, kind, flags, ndim, dtlen, plen, checksum = _FIXED.unpack_from(mv, 0)
    if magic != MAGIC:
        raise CorruptValue(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise CorruptValue(f"unknown codec version {version}")
    if kind not in _KINDS:
        raise CorruptValue(f"unknown value kind {kind}")
    if flags & ~FLAG_LZ4:
        raise CorruptValue(f"unknown flags {flags:#x}")
    if ndim > _MAX_NDIM:
        raise CorruptValue(f"implausible ndim {ndim}")
    offset = _payload_offset(dtlen, ndim)
    if offset + plen != len(mv):
        raise CorruptValue(f"length mismatch: header says {offset + plen} bytes, value has {len(mv)}")
    h = xxhash.xxh3_64()
    h.update(mv[:_CHECKSUM_AT])
    h.update(mv[FIXED_SIZE:])
    if h.intdigest() != checksum:
        raise CorruptValue("checksum mismatch")
    try:
        dtype_str = bytes(mv[FIXED_SIZE : FIXED_SIZE + dtlen]).decode("ascii")
    except UnicodeDecodeError as exc:  # only reachable with a colliding checksum
        raise CorruptValue("dtype is not ascii") from exc
    shape = struct.unpack_from(f"<{ndim}q", mv, FIXED_SIZE + dtlen) if ndim else ()
    if any(d < 0 for d in shape):
        raise CorruptValue(f"negative dimension in shape {shape}")
    return kind, flags, dtype_str, tuple(shape), mv[offset:]


def _encode_numpy(arr: np.ndarray, compress: bool) -> bytes:
    if arr.dtype.hasobject or arr.dtype.fields is not None:
        raise TypeError(f"cannot encode numpy dtype {arr.dtype} (object or structured)")
    shape = arr.shape  # ascontiguousarray turns 0-d arrays into 1-d ones
    flat = np.ascontiguousarray(arr).reshape(-1)
    payload = flat.view(np.uint8).data if flat.size else b""
    return _pack(KIND_NUMPY, arr.dtype.str.encode("ascii"), shape, payload, compress)


def _decode_numpy(dtype_str: str, shape: tuple, payload: memoryview) -> np.ndarray:
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise CorruptValue(f"unknown numpy dtype {dtype_str!r}") from exc
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * dtype.itemsize != len(payload):
        raise CorruptValue(f"payload of {len(payload)} bytes does not hold {shape} x {dtype}")
    if count == 0:
        return np.empty(shape, dtype)
    return np.frombuffer(payload, dtype=dtype, count=count).reshape(shape)


def _is_tensor(value: Any) -> bool:
    # torch is imported only when a tensor is actually seen.
    mod = type(value).__module__
    if not mod.startswith("torch"):
        return False
    import torch

    return isinstance(value, torch.Tensor)


def _encode_torch(t, compress: bool) -> bytes:
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.is_sparse or t.is_quantized:
        raise TypeError("sparse and quantized tensors are not supported")
    name = str(t.dtype).removeprefix("torch.")
    payload = memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else b""
    return _pack(KIND_TORCH, name.encode("ascii"), tuple(t.shape), payload, compress)


def _decode_torch(dtype_str: str, shape: tuple, payload: memoryview):
    import torch

    dtype = getattr(torch, dtype_str, None)
    if not isinstance(dtype, torch.dtype):
        raise CorruptValue(f"unknown torch dtype {dtype_str!r}")
    itemsize = torch.empty(0, dtype=dtype).element_size()
    count = 1
    for d in shape:
        count *= d
    if count * itemsize != len(payload):
        raise CorruptValue(f"payload of {len(payload)} bytes does not hold {shape} x {dtype}")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    # one copy into a writable buffer that the tensor then owns
    return torch.frombuffer(bytearray(payload), dtype=dtype).reshape(shape)


def _msgpack_default(obj: Any):
    if isinstance(obj, np.ndarray) or _is_tensor(obj):
        return msgpack.ExtType(_EXT_ENCODED, encode(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def _msgpack_ext(code: int, data: bytes):
    if code == _EXT_ENCODED:
        return decode(data)
    raise CorruptValue(f"unknown msgpack extension type {code}")


__all__ = ["encode", "decode", "header_size", "CorruptValue", "MAGIC", "FIXED_SIZE"]


def decode_many(bufs) -> tuple[list, list[int]]:
    """``decode`` of a batch: (values, positions that failed to verify; their value is None).

    Values are checked exactly as ``decode`` checks them. A value whose header
    (kind, flags, dtype, shape, length) equals the one before it skips the
    header parse and only has its checksum verified; runs of equal-header,
    uncompressed tensors are decoded into one tensor and handed out as views
    of it (the cached loader's batches: same shape, same dtype).
    """
    out: list = [None] * len(bufs)
    bad: list[int] = []
    run: list[int] = []  # positions of the current run of equal-header tensors
    head = None  # (fixed header bytes without the checksum, dtype + shape bytes, offset, dtype, shape)
    payloads: list = []
    for k, buf in enumerate(bufs):
        try:
            mv = memoryview(buf).cast("B")
            if (
                head is not None
                and len(mv) == head[5]
                and mv[:_CHECKSUM_AT] == head[0]
                and mv[FIXED_SIZE : head[2]] == head[1]
            ):
                if _checksum(mv) != _FIXED.unpack_from(mv, 0)[7]:
                    raise CorruptValue("checksum mismatch")
                run.append(k)
                payloads.append(mv[head[2] :])
                continue
            _flush(run, payloads, head, out)
            run, payloads, head = [], [], None
            kind, flags, dtype_str, shape, payload = _unpack(mv)
            if kind == KIND_TORCH and not flags & FLAG_LZ4 and len(payload):
                off = len(mv) - len(payload)
                head = (bytes(mv[:_CHECKSUM_AT]), bytes(mv[FIXED_SIZE:off]), off, dtype_str, shape, len(mv))
                run, payloads = [k], [payload]
            else:
                out[k] = decode(mv)
        except CorruptValue:
            bad.append(k)
    _flush(run, payloads, head, out)
    return out, bad


def _checksum(mv: memoryview) -> int:
    h = xxhash.xxh3_64()
    h.update(mv[:_CHECKSUM_AT])
    h.update(mv[FIXED_SIZE:])
    return h.intdigest()


def _flush(run: list[int], payloads: list, head, out: list) -> None:
    if not run:
        return
    if len(run) == 1:
        out[run[0]] = _decode_torch(head[3], head[4], payloads[0])
        return
    import torch

    first = _decode_torch(head[3], head[4], payloads[0])  # checks dtype and size once
    raw = np.stack([np.frombuffer(p, np.uint8) for p in payloads])
    batch = torch.from_numpy(raw).view(first.dtype).reshape(len(run), *first.shape)
    for k, t in zip(run, batch.unbind(0)):
        out[k] = t
