"""A batch read from the cache server, and the checksum every value carries.

``Batch`` holds a batch as arrays: rows are whole slots, gathered once from
shared memory or received as one gRPC buffer; no per-item object exists until a
caller asks for one.

Checksums: ``DatasetCache`` appends to every value it writes an 8-byte trailer
and checks it on every read, shared memory and gRPC alike (``engine/stores/checksum.py``: the
hash, why it was chosen, and the kernels that do a whole batch in one call).
The server stores and sends the trailer like any other byte. A value whose
bytes changed after it was written (another process of the same user writing
into the shared segment, a bad disk under the spill files) or that belongs to
another id fails its check: it is served as a miss and counted, never returned.
"""

from __future__ import annotations

import numpy as np

from ..engine.stores.checksum import CHECKSUM_BYTES, as_rows, fill_trailers, verify_one, verify_rows
from ..errors import StoreUnavailable
from .wire import decode_get_reply


def with_checksums(ids: np.ndarray, values) -> tuple[np.ndarray, np.ndarray]:
    """(payload, lengths): the values joined, each followed by its trailer, ready
    to be sliced into Put messages, and the stored lengths (value + trailer)."""
    views = [memoryview(v).cast("B") for v in values]
    gap = bytes(CHECKSUM_BYTES)
    payload = np.frombuffer(bytearray().join([x for v in views for x in (v, gap)]), np.uint8)
    lengths = np.fromiter(map(len, views), np.int64, count=len(views)) + CHECKSUM_BYTES
    offsets = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    fill_trailers(payload, offsets, np.ascontiguousarray(ids, np.int64))
    return payload, lengths


def check_batch_sums(ids: np.ndarray, batch: Batch) -> int:
    """Verify and strip the trailers of ``batch`` in place: a value that fails
    becomes a miss (length -1). Returns how many failed."""
    row_index = np.ascontiguousarray(batch.row_index, np.int64)
    return int(
        verify_rows(as_rows(batch.rows), row_index, batch.lengths, np.ascontiguousarray(ids, np.int64))
    )


def check_view(value: np.ndarray, key: int) -> np.ndarray | None:
    """One value with its trailer: the value without it, or None if it fails."""
    k = verify_one(np.ascontiguousarray(value, np.uint8).reshape(-1), key)
    return value[:k] if k >= 0 else None


class Batch:
    """A batch read as arrays: ``lengths[i]`` (-1: miss) and the bytes of value i
    in ``rows[row_index[i], :lengths[i]]``.

    Rows are whole slots: from shared memory they come from one gather, over
    gRPC as one buffer. No per-item object exists until a caller asks for one.
    """

    def __init__(self, lengths: np.ndarray, rows: np.ndarray, row_index: np.ndarray) -> None:
        self.lengths = lengths
        self._rows = rows
        self.row_index = row_index
        self._parts: list[Batch] | None = None

    @classmethod
    def join(cls, parts: list[Batch]) -> Batch:
        """One batch from the replies of consecutive sub-batches, without copying
        their rows (``rows`` joins them only when asked for)."""
        if len(parts) == 1:
            return parts[0]
        lengths = np.concatenate([p.lengths for p in parts])
        found = lengths >= 0
        out = cls(lengths, None, np.cumsum(found) - 1)
        out._parts = parts
        return out

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:  # parts: one copy into a single array, on demand
            width = max(p.rows.shape[1] for p in self._parts)
            rows = np.zeros((sum(p.rows.shape[0] for p in self._parts), width), np.uint8)
            r = 0
            for p in self._parts:
                rows[r : r + p.rows.shape[0], : p.rows.shape[1]] = p.rows
                r += p.rows.shape[0]
            self._rows = rows
        return self._rows

    @property
    def found(self) -> np.ndarray:
        return self.lengths >= 0

    def __len__(self) -> int:
        return self.lengths.size

    def value(self, i: int) -> np.ndarray | None:
        n = int(self.lengths[i])
        if n < 0:
            return None
        if self._parts is not None and self._rows is None:
            for p in self._parts:
                if i < len(p):
                    return p.value(i)
                i -= len(p)
        return self.rows[int(self.row_index[i]), :n]

    def to_list(self) -> list[bytes | None]:
        if self._parts is not None:
            return [v for p in self._parts for v in p.to_list()]
        width = self.rows.shape[1] if self.rows.ndim == 2 else 0
        flat = memoryview(np.ascontiguousarray(self.rows).reshape(-1))
        return [
            flat[r * width : r * width + n].tobytes() if n >= 0 else None
            for r, n in zip(self.row_index.tolist(), self.lengths.tolist())
        ]

    @property
    def nbytes(self) -> int:
        return int(self.lengths[self.lengths > 0].sum())


def grpc_batch(reply: bytes) -> Batch:
    try:
        lengths, rows, width = decode_get_reply(reply)
    except ValueError:
        raise StoreUnavailable("malformed reply from the cache server") from None
    found = lengths >= 0
    if rows.size != width * int(found.sum()):
        raise StoreUnavailable("malformed reply from the cache server")
    rows = rows.reshape(-1, width) if width else np.empty((0, 0), np.uint8)
    return Batch(lengths.copy(), rows, np.cumsum(found) - 1)
