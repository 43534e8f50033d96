"""Checks on every field of every request, before a session sees it.

A field out of range is a ``RequestError`` (INVALID_ARGUMENT with one line
naming the field); nothing a client sends reaches a session unchecked.
"""

from __future__ import annotations

import numpy as np

from .limits import MAX_BATCH, MAX_CLIENT_ID_CHARS, MAX_PIPELINE_CHARS, MAX_REPORT_COUNT
from .sessions import RequestError
from .shm import MAX_ID, MAX_VALUE_BYTES


def validate_ids(raw: bytes, what: str = "ids") -> np.ndarray:
    if len(raw) % 8:
        raise RequestError(f"{what} must be packed int64 (length a multiple of 8)")
    ids = np.frombuffer(raw, "<i8")
    if ids.size > MAX_BATCH:
        raise RequestError(f"at most {MAX_BATCH} ids per call, got {ids.size}")
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        raise RequestError(f"ids must lie in 0..{MAX_ID}")
    return ids.astype(np.int64)


def validate_put(
    raw_ids: bytes, raw_lengths: bytes, data: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = validate_ids(raw_ids)
    if len(raw_lengths) != len(raw_ids):
        raise RequestError("one length per id is required")
    lengths = np.frombuffer(raw_lengths, "<i8").astype(np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > MAX_VALUE_BYTES):
        raise RequestError(f"value lengths must lie in 0..{MAX_VALUE_BYTES}")
    if int(lengths.sum()) != len(data):
        raise RequestError("the lengths do not add up to the data sent")
    return ids, lengths, np.frombuffer(data, np.uint8)


def text(value: str, what: str, limit: int) -> str:
    if len(value) > limit:
        raise RequestError(f"{what} longer than {limit} characters")
    if any(ord(c) < 32 for c in value):
        raise RequestError(f"{what} contains control characters")
    return value


def pipeline(value: str) -> str:
    return text(value, "pipeline fingerprint", MAX_PIPELINE_CHARS)


def client_id(value: str) -> str:
    return text(value, "client id", MAX_CLIENT_ID_CHARS)


def count(value: int, what: str, low: int = 0, high: int = MAX_REPORT_COUNT) -> int:
    if not low <= int(value) <= high:
        raise RequestError(f"{what} must lie in {low}..{high}, got {value}")
    return int(value)


def memory(value: int) -> int:
    """A session's memory in a request: 0 (the server's default) or a positive size."""
    return count(value, "memory_bytes", 0, 1 << 50)
