"""Hand-made protobuf encoding of the two hot messages (GetReply, PutRequest).

The bytes written here are exactly the wire format of the messages in
cache.proto (any protobuf library parses them), but building them by hand
lets a batch go from numpy arrays to the socket with a single copy: no
protobuf object per call, no copy into a message and another out of it.
Likewise a GetReply is read as views into the received buffer.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np

_LEN = 2  # wire type: length-delimited
_VARINT = 0


def varint(n: int) -> bytes:
    out = bytearray()
    n = int(n)
    if n < 0:
        n += 1 << 64
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or malformed varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


# A reply of a batch of big values is tens of MB. gRPC wants ``bytes`` and copies
# them into its own buffer; building those bytes with a join would add one more
# full copy (plus the page faults of a fresh buffer). Instead the rows are
# gathered straight from the slots into a new, not yet shared bytes object, as C
# code does with PyBytes_FromStringAndSize(NULL, n). CPython only: checked once
# at import, with the join as the fallback.
_MIN_IN_PLACE = 1 << 16
_bytes_new = ctypes.pythonapi.PyBytes_FromStringAndSize
_bytes_new.restype = ctypes.py_object
_bytes_new.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t]
_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1  # offsetof(PyBytesObject, ob_sval)


def _fresh_bytes_unchecked(n: int) -> tuple[bytes, np.ndarray]:
    out = _bytes_new(None, n)
    view = np.frombuffer((ctypes.c_ubyte * n).from_address(id(out) + _BYTES_DATA_OFFSET), np.uint8)
    return out, view


def _in_place_works() -> bool:
    try:
        n = _MIN_IN_PLACE + 3
        out, view = _fresh_bytes_unchecked(n)
        pattern = np.arange(n, dtype=np.uint64).astype(np.uint8)
        view[:] = pattern
        return len(out) == n and out == pattern.tobytes()
    except Exception:  # another interpreter or layout: use the join
        return False


_IN_PLACE = _in_place_works()


def fresh_bytes(n: int) -> tuple[bytes | bytearray, np.ndarray]:
    """A new object of ``n`` bytes and a writable uint8 view of its contents.

    Write the contents before handing the object to anyone (it is immutable to
    everyone else). Small sizes, or an interpreter where the layout check
    failed, get a bytearray (the caller turns it into bytes: one extra copy)."""
    if _IN_PLACE and n >= _MIN_IN_PLACE:
        return _fresh_bytes_unchecked(n)
    buf = bytearray(n)
    return buf, np.frombuffer(buf, np.uint8)


def new_get_reply(lengths: np.ndarray, n_rows: int, width: int) -> tuple[bytes | bytearray, np.ndarray]:
    """GetReply{lengths, data, row_width} with room for ``n_rows`` x ``width``
    rows: returns the message and the (n_rows, width) array to gather the rows
    into. Call ``finish_reply`` on the message once the rows are written."""
    lengths = np.ascontiguousarray(lengths, dtype="<i8")
    head = (_tag(1, _LEN) + varint(lengths.nbytes)) if lengths.size else b""
    data_bytes = n_rows * width
    mid = (_tag(2, _LEN) + varint(data_bytes)) if data_bytes else b""
    tail = (_tag(3, _VARINT) + varint(width)) if data_bytes else b""
    total = len(head) + lengths.nbytes + len(mid) + data_bytes + len(tail)
    out, buf = fresh_bytes(total)
    pos = len(head)
    buf[:pos] = np.frombuffer(head, np.uint8)
    buf[pos : pos + lengths.nbytes] = lengths.view(np.uint8)
    pos += lengths.nbytes
    buf[pos : pos + len(mid)] = np.frombuffer(mid, np.uint8)
    pos += len(mid)
    rows = (
        buf[pos : pos + data_bytes].reshape(n_rows, width)
        if data_bytes
        else np.empty((n_rows, width), np.uint8)
    )
    pos += data_bytes
    buf[pos:] = np.frombuffer(tail, np.uint8)
    return out, rows


def finish_reply(message: bytes | bytearray) -> bytes:
    return message if isinstance(message, bytes) else bytes(message)


def decode_get_reply(buf: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """(lengths int64, data uint8, row_width) as views into ``buf``; unknown fields skipped."""
    mv = memoryview(buf)
    pos = 0
    lengths = np.empty(0, np.int64)
    data = np.empty(0, np.uint8)
    width = 0
    while pos < len(mv):
        key, pos = _read_varint(mv, pos)
        field, wire = key >> 3, key & 7
        if wire == _LEN:
            n, pos = _read_varint(mv, pos)
            if pos + n > len(mv):
                raise ValueError("truncated field")
            if field == 1:
                lengths = np.frombuffer(mv[pos : pos + n], "<i8")
            elif field == 2:
                data = np.frombuffer(mv[pos : pos + n], np.uint8)
            pos += n
        elif wire == _VARINT:
            value, pos = _read_varint(mv, pos)
            if field == 3:
                width = value
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return lengths, data, width


def encode_put_request(
    session_id: int, pipeline: str, ids: np.ndarray, lengths: np.ndarray, values: Sequence
) -> bytes:
    """PutRequest with the values joined straight into the message (one copy)."""
    ids = np.ascontiguousarray(ids, dtype="<i8")
    lengths = np.ascontiguousarray(lengths, dtype="<i8")
    p = pipeline.encode()
    total = int(lengths.sum())
    parts: list = [_tag(1, _VARINT), varint(session_id)]
    if p:
        parts += [_tag(2, _LEN), varint(len(p)), p]
    if ids.size:
        parts += [_tag(3, _LEN), varint(ids.nbytes), ids, _tag(4, _LEN), varint(lengths.nbytes), lengths]
    if total:
        parts += [_tag(5, _LEN), varint(total), *values]
    return b"".join(parts)
