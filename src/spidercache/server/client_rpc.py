"""How ``DatasetCache`` talks gRPC: reads (one Get, or sub-calls in flight
together) and writes (Put messages under the server's cap, with checksums).

``RpcReads`` is mixed into ``DatasetCache``; it uses the client's ``_method``,
``_error``, ``_verified``, ``_ids``, ``_channels`` and ``_server_max``.
"""

from __future__ import annotations

import collections
from typing import Iterable, Iterator, Sequence

import grpc
import numpy as np

from ..engine.stores.base import Value, check_batch
from . import cache_pb2 as pb
from .batch import Batch, grpc_batch, with_checksums
from .wire import encode_put_request

# A Get whose reply would exceed this is split into sub-calls on separate
# connections, issued together. Replies above 32 MB land in fresh mmap'd
# memory in the receiving process (glibc's largest mmap threshold), and pay
# a page fault per 4 KB on every copy gRPC makes of them; smaller replies
# reuse warm heap memory. Measured: 256 x 150 KB went from ~0.5x to ~0.8x
# Redis MGET with three sub-calls. 8 MB rather than 16 MB (five sub-calls
# for that batch): the server gathers one part while the client copies
# another; same-run A/B, one call in flight, 0.68-0.79x against 0.61-0.71x.
SPLIT_REPLY_BYTES = 8 << 20
# Gets whose reply is smaller than this take turns on only the first
# SMALL_REPLY_CONNECTIONS connections. Every connection adds its own gRPC
# reader thread, and a small reply costs more in waking threads (context
# switches were the largest item in a perf profile of 3 KB Gets) than in
# copying; big replies gain from being read on many connections at once.
# Measured with 20 Gets in flight, same run, 256 x 3 KB: 2 connections
# 0.77-1.08x Redis against 0.59-0.78x for 12 (five runs); 256 x 150 KB:
# 12 connections 1.31-1.38x against 1.07-1.15x for 2.
SMALL_REPLY_BYTES = 4 << 20
SMALL_REPLY_CONNECTIONS = 2
# room a Put message needs beside one value: session, pipeline (at most 256 characters), the id
# and length words and protobuf framing
PUT_HEADER_BYTES = 4096


class RpcReads:
    def _get_rpc(self, ids: np.ndarray) -> Batch:
        if self._n_parts(ids) > 1:
            return self._collect(self._submit_get(ids))
        # a blocking call waits on its own completion queue in this thread;
        # a future would add a hand-off through the channel's thread per call
        request = pb.GetRequest(
            session_id=self.session_id,
            pipeline=self._wire_pipeline,
            ids=ids.astype("<i8", copy=False).tobytes(),
        )
        try:
            reply = self._method(self._get_kind(ids.size))(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and ids.size > 1:
                return self._get_halves(ids)  # above the message cap: ask for half as many
            raise self._error(exc) from None
        batch = grpc_batch(reply)
        if batch.rows.size:
            self._row_bytes = batch.rows.shape[1]
        return self._verified(ids, batch)

    def _get_halves(self, ids: np.ndarray) -> Batch:
        half = ids.size // 2
        a, b = self._get_rpc(ids[:half]), self._get_rpc(ids[half:])
        return Batch.join([a, b])

    def _get_kind(self, n_ids: int) -> str:
        """Which connections a Get of ``n_ids`` (or one of its sub-calls) goes on."""
        return "SmallGet" if n_ids * self._row_bytes < SMALL_REPLY_BYTES else "Get"

    def _n_parts(self, ids: np.ndarray) -> int:
        if self._row_bytes and ids.size > 1:
            split = min(SPLIT_REPLY_BYTES, self._server_max // 2)
            return min(ids.size, len(self._channels), -(-ids.size * self._row_bytes // split))
        return 1

    def _submit_get(self, ids: np.ndarray) -> list:
        """Start the Get calls for one batch: one call, or sub-calls of at most
        ``SPLIT_REPLY_BYTES`` of reply (sized from the last reply's row width).
        Returns (future, ids) per call."""
        if self._closed:
            raise ValueError("this DatasetCache is closed")
        n_parts = self._n_parts(ids)
        ids = ids.astype("<i8", copy=False)
        calls = []
        for part in np.array_split(ids, n_parts) if n_parts > 1 else [ids]:
            req = pb.GetRequest(session_id=self.session_id, pipeline=self._wire_pipeline, ids=part.tobytes())
            calls.append(
                (
                    self._method(self._get_kind(part.size)).future(
                        req, timeout=self.timeout, metadata=self._metadata
                    ),
                    part,
                )
            )
        return calls

    def _collect(self, calls: list) -> Batch:
        parts = []
        try:
            for fut, part in calls:
                try:
                    parts.append(self._verified(part, grpc_batch(fut.result())))
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or part.size < 2:
                        raise
                    parts.append(self._get_halves(part))
        except grpc.RpcError as exc:
            for f, _ in calls:
                f.cancel()
            raise self._error(exc) from None
        widths = [p.rows.shape[1] for p in parts if p._parts is None and p.rows.size]
        if widths:
            self._row_bytes = max(widths)
        return Batch.join(parts)

    def iter_batches(self, batches: Iterable, as_list: bool = True) -> Iterator:
        """Read many batches, keeping up to ``prefetch_size`` gRPC calls in flight.

        Yields each batch's result in order (a list, or a ``Batch``)."""
        self._ensure()
        if self._reader is not None:  # no socket to wait on: just gather
            for keys in batches:
                b = self.get_batch(keys)
                yield b.to_list() if as_list else b
            return
        pending: collections.deque = collections.deque()
        it = iter(batches)

        def submit() -> bool:
            keys = next(it, None)
            if keys is None:
                return False
            pending.append(self._submit_get(self._ids(keys)))
            return True

        while len(pending) < self.prefetch_size and submit():
            pass
        try:
            while pending:
                b = self._collect(pending.popleft())
                submit()
                yield b.to_list() if as_list else b
        finally:
            for calls in pending:  # an error, or the caller stopped early
                for f, _ in calls:
                    f.cancel()


class RpcWrites:
    """Writes always go through gRPC (mixed into ``DatasetCache``)."""

    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        ids = self._ids(keys)
        check_batch(list(range(ids.size)), values)
        self._ensure()
        if self.checksum:
            payload, lengths = with_checksums(ids, values)  # one buffer: messages are slices of it
            offsets = np.zeros(ids.size + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
        else:
            parts = list(values)
            lengths = np.fromiter((len(memoryview(v).cast("B")) for v in values), np.int64, count=ids.size)
        status = np.zeros(ids.size, np.bool_)
        limit = max(1, self._server_max // 2)
        too_big = []  # a value no message can carry: refused here (status False), like a full server
        start = 0
        while start < ids.size:  # keep each message under the size cap
            if int(lengths[start]) > self._server_max - PUT_HEADER_BYTES:
                too_big.append(int(ids[start]))
                start += 1
                continue
            stop = start + 1
            total = int(lengths[start])
            while stop < ids.size and total + int(lengths[stop]) <= limit and stop - start < 65536:
                total += int(lengths[stop])
                stop += 1
            reply = self._call(
                "Put",
                encode_put_request(
                    self.session_id,
                    self._wire_pipeline,
                    ids[start:stop],
                    lengths[start:stop],
                    [payload[offsets[start] : offsets[stop]]] if self.checksum else parts[start:stop],
                ),
            )
            status[start:stop] = np.frombuffer(reply.status, np.uint8).astype(np.bool_)
            start = stop
        if too_big:  # an older value of those ids must not outlive this write
            self.delete_many(np.array(too_big, np.int64))
        return status

    def delete_many(self, keys) -> None:
        ids = self._ids(keys)
        self._ensure()
        for start in range(0, ids.size, 65536):
            self._call(
                "Delete",
                pb.DeleteRequest(
                    session_id=self.session_id,
                    pipeline=self._wire_pipeline,
                    ids=ids[start : start + 65536].astype("<i8").tobytes(),
                ),
            )

    def seal(self, n_items: int) -> None:
        """Streaming mode: the first epoch stored items 0..n_items-1 completely."""
        self._ensure()
        self._call(
            "Seal", pb.SealRequest(session_id=self.session_id, pipeline=self._wire_pipeline, n_items=n_items)
        )
        self.sealed_items = int(n_items)
