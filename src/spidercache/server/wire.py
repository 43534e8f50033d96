"""Hand-made protobuf encoding of the two hot messages (GetReply, PutRequest).

The bytes written here are exactly the wire format of the messages in
cache.proto (any protobuf library parses them), but building them by hand
lets a batch go from numpy arrays to the socket with a single copy: no
protobuf object per call, no copy into a message and another out of it.
Likewise a GetReply is read as views into the received buffer.
"""

from __future__ import annotations

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


def encode_get_reply(lengths: np.ndarray, rows: np.ndarray) -> bytes:
    """GetReply{lengths, data=rows, row_width} with one copy of the rows."""
    lengths = np.ascontiguousarray(lengths, dtype="<i8")
    rows = np.ascontiguousarray(rows)
    parts: list = []
    if lengths.size:
        parts += [_tag(1, _LEN), varint(lengths.nbytes), lengths]
    if rows.size:
        parts += [_tag(2, _LEN), varint(rows.nbytes), rows, _tag(3, _VARINT), varint(rows.shape[1])]
    return b"".join(parts)


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
                lengths = np.frombuffer(mv[pos: pos + n], "<i8")
            elif field == 2:
                data = np.frombuffer(mv[pos: pos + n], np.uint8)
            pos += n
        elif wire == _VARINT:
            value, pos = _read_varint(mv, pos)
            if field == 3:
                width = value
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return lengths, data, width


def encode_put_request(session_id: int, pipeline: str, ids: np.ndarray, lengths: np.ndarray,
                       values: Sequence) -> bytes:
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
