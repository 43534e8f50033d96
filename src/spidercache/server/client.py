"""``DatasetCache``: a pipeline's handle on one session of the cache server.

It is a ``Store`` (``get_many`` / ``put_many`` / ``delete_many`` / ``close``),
so the cached dataset and ``spidercache train --cache-backend server`` use it
like any other store. Reads take the shared-memory path when the server is on
this host (one numpy gather per batch, no socket), and gRPC otherwise, with up
to ``prefetch_size`` batches in flight over ``num_connections`` connections.
Writes always go through gRPC: the server copies a value into a slot and
publishes it only once it is complete, so a client killed mid-put leaves
nothing half-written behind.

Errors: a server that is down, killed or unreachable raises ``StoreUnavailable``
(the one documented error; a ``Cache`` catches it and reads from the source).
Another pipeline on the session, an unknown or destroyed session, a wrong
token: ``UserError`` with the server's one-line message.
"""

from __future__ import annotations

import collections
import itertools
import os
import secrets
import time
from typing import Iterable, Iterator, Sequence

import grpc
import numpy as np

from ..engine.stores.base import Store, Value, check_batch
from ..errors import StoreUnavailable, UserError
from . import cache_pb2 as pb
from . import cache_pb2_grpc as pb_grpc
from .admin import metadata, open_channel, resolve_token, translate
from .shm import SPILLED, ShmReader, StaleMapping
from .service import DEFAULT_MAX_MESSAGE, SERVICE_NAME
from .wire import decode_get_reply, encode_put_request

REPORT_EVERY_SECONDS = 2.0
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
    def join(cls, parts: list["Batch"]) -> "Batch":
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
                rows[r: r + p.rows.shape[0], : p.rows.shape[1]] = p.rows
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
        return [flat[r * width: r * width + n].tobytes() if n >= 0 else None
                for r, n in zip(self.row_index.tolist(), self.lengths.tolist())]

    @property
    def nbytes(self) -> int:
        return int(self.lengths[self.lengths > 0].sum())


def _grpc_batch(reply: bytes) -> Batch:
    try:
        lengths, rows, width = decode_get_reply(reply)
    except ValueError:
        raise StoreUnavailable("malformed reply from the cache server") from None
    found = lengths >= 0
    if rows.size != width * int(found.sum()):
        raise StoreUnavailable("malformed reply from the cache server")
    rows = rows.reshape(-1, width) if width else np.empty((0, 0), np.uint8)
    return Batch(lengths, rows, np.cumsum(found) - 1)


def _as_ids(keys) -> np.ndarray:
    if isinstance(keys, np.ndarray):
        ids = keys.astype(np.int64, copy=False).ravel()
    else:
        keys = list(keys)
        if not all(isinstance(k, (int, np.integer)) for k in keys):  # "7" must not become id 7
            raise UserError("the cache server takes integer keys (dense ids)")
        try:
            ids = np.array(keys, np.int64).reshape(-1)
        except OverflowError:
            raise UserError("the cache server takes ids below 2**63") from None
    if ids.size and ids.min() < 0:
        raise UserError("the cache server takes non-negative integer keys")
    return ids


class DatasetCache(Store):
    """One pipeline's cache in a session of the cache server.

    ``size`` is in MB (0: the session's budget), as in MindSpore's DatasetCache.
    ``pipeline`` is the fingerprint of the pipeline up to the cache point: the
    session refuses a second, different one.
    """

    name = "server"

    def __init__(self, session_id: int, size: int = 0, spilling: bool = False,
                 hostname: str = "127.0.0.1", port: int = 50052, num_connections: int = 12,
                 prefetch_size: int = 20, *, pipeline: str = "", token: str | None = None,
                 use_shm: bool = True, timeout: float = 30.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE) -> None:
        if num_connections < 1 or prefetch_size < 1:
            raise UserError("num_connections and prefetch_size must be at least 1")
        if size < 0:
            raise UserError("size must be >= 0 MB")
        self.session_id = int(session_id)
        self.size_mb = int(size)
        self.spilling = bool(spilling)
        self.host, self.port = hostname, int(port)
        self.prefetch_size = int(prefetch_size)
        self.pipeline = str(pipeline)
        self.token = resolve_token(token)
        self.use_shm = use_shm
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.client_id = secrets.token_hex(8)
        self._metadata = metadata(self.token)
        self._channels = [open_channel(hostname, self.port, separate=True, max_message_bytes=max_message_bytes)
                          for _ in range(int(num_connections))]
        self._stubs = [pb_grpc.CacheServerStub(c) for c in self._channels]
        # the hot calls skip protobuf objects: Get replies and Put requests are raw bytes (wire.py)
        self._raw_get = [c.unary_unary(f"/{SERVICE_NAME}/Get", request_serializer=pb.GetRequest.SerializeToString,
                                       response_deserializer=None) for c in self._channels]
        self._raw_put = [c.unary_unary(f"/{SERVICE_NAME}/Put", request_serializer=None,
                                       response_deserializer=pb.PutReply.FromString) for c in self._channels]
        self._next = itertools.cycle(range(len(self._stubs)))
        self._next_small = itertools.cycle(range(min(SMALL_REPLY_CONNECTIONS, len(self._stubs))))
        self._reader: ShmReader | None = None
        self._row_bytes = 0  # reply bytes per value found, from the last Get
        self._attached = False
        self.sealed_items = -1
        self._hits = self._misses = 0
        self._last_report = time.monotonic()
        self._closed = False
        self._attach()

    # -------------------------------------------------------------- plumbing
    def _method(self, name: str):
        k = next(self._next)
        if name == "Get":
            return self._raw_get[k]
        if name == "SmallGet":  # a Get with a small reply: see SMALL_REPLY_BYTES
            return self._raw_get[next(self._next_small)]
        if name == "Put":
            return self._raw_put[k]
        return getattr(self._stubs[k], name)

    def _call(self, name: str, request, timeout: float | None = None):
        if self._closed:
            raise ValueError("this DatasetCache is closed")
        try:
            return self._method(name)(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            err = translate(exc, self.host, self.port)
            if isinstance(err, StoreUnavailable):
                self._drop_attachment()
            raise err from None

    def _attach(self) -> None:
        reply = self._call("Attach", pb.AttachRequest(
            session_id=self.session_id, pipeline=self.pipeline, client_id=self.client_id,
            want_shm=self.use_shm, memory_bytes=self.size_mb << 20, spill=self.spilling), timeout=10.0)
        self.sealed_items = int(reply.sealed_items)
        self._reader = None
        if reply.shm_header:
            try:
                self._reader = ShmReader(reply.shm_header)
            except (OSError, StaleMapping):
                self._reader = None  # another host, or no /dev/shm: gRPC only
        self._attached = True

    def _drop_attachment(self) -> None:
        self._attached = False
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _ensure(self) -> None:
        if not self._attached:
            self._attach()

    @property
    def shared_memory(self) -> bool:
        """True when reads take the shared-memory path."""
        self._ensure()
        return self._reader is not None

    # ----------------------------------------------------------------- reads
    def get_batch(self, keys) -> Batch:
        """Read a batch as arrays (see ``Batch``): the fast path, no per-item objects."""
        ids = _as_ids(keys)
        self._ensure()
        reader = self._reader
        if reader is None:
            return self._get_rpc(ids)
        try:
            lengths, rows = reader.read(ids)
        except StaleMapping as exc:
            self._drop_attachment()
            raise StoreUnavailable(f"the cache server at {self.host}:{self.port} is unavailable ({exc})") from None
        # shared-memory reads never reach the server, so we count them here
        hits = int(np.count_nonzero(lengths >= 0))
        self._count(hits, int(np.count_nonzero(lengths == -1)))
        remote = np.flatnonzero(lengths == SPILLED)
        if remote.size:  # spilled to disk, or changed while we copied: ask the server (it counts these)
            sub = self._get_rpc(ids[remote])
            lengths = lengths.copy()
            lengths[remote] = sub.lengths
            width = max(rows.shape[1], sub.rows.shape[1])
            if width > rows.shape[1] or not rows.flags.writeable:
                wide = np.zeros((ids.size, width), np.uint8)
                wide[:, : rows.shape[1]] = rows
                rows = wide
            got = sub.found
            if got.any():
                rows[remote[got], : sub.rows.shape[1]] = sub.rows[sub.row_index[got]]
        return Batch(lengths, rows, np.arange(ids.size))

    def _get_rpc(self, ids: np.ndarray) -> Batch:
        if self._n_parts(ids) == 1:
            # a blocking call waits on its own completion queue in this thread;
            # a future would add a hand-off through the channel's thread per call
            request = pb.GetRequest(session_id=self.session_id, pipeline=self.pipeline,
                                    ids=ids.astype("<i8", copy=False).tobytes())
            reply = self._call(self._get_kind(ids.size), request)
            batch = _grpc_batch(reply)
            if batch._rows.size:
                self._row_bytes = batch._rows.shape[1]
            return batch
        return self._collect(self._submit_get(ids))

    def _get_kind(self, n_ids: int) -> str:
        """Which connections a Get of ``n_ids`` (or one of its sub-calls) goes on."""
        return "SmallGet" if n_ids * self._row_bytes < SMALL_REPLY_BYTES else "Get"

    def _n_parts(self, ids: np.ndarray) -> int:
        if self._row_bytes and ids.size > 1:
            return min(ids.size, len(self._channels), -(-ids.size * self._row_bytes // SPLIT_REPLY_BYTES))
        return 1

    def _submit_get(self, ids: np.ndarray) -> list:
        """Start the Get calls for one batch: one call, or sub-calls of at most
        ``SPLIT_REPLY_BYTES`` of reply (sized from the last reply's row width)."""
        if self._closed:
            raise ValueError("this DatasetCache is closed")
        n_parts = self._n_parts(ids)
        ids = ids.astype("<i8", copy=False)
        futures = []
        for part in (np.array_split(ids, n_parts) if n_parts > 1 else [ids]):
            req = pb.GetRequest(session_id=self.session_id, pipeline=self.pipeline, ids=part.tobytes())
            futures.append(self._method(self._get_kind(part.size)).future(req, timeout=self.timeout,
                                                                          metadata=self._metadata))
        return futures

    def _collect(self, futures: list) -> Batch:
        parts = []
        try:
            for fut in futures:
                parts.append(_grpc_batch(fut.result()))
        except grpc.RpcError as exc:
            for f in futures:
                f.cancel()
            err = translate(exc, self.host, self.port)
            if isinstance(err, StoreUnavailable):
                self._drop_attachment()
            raise err from None
        widths = [p._rows.shape[1] for p in parts if p._rows.size]
        if widths:
            self._row_bytes = max(widths)
        return Batch.join(parts)

    def get_many(self, keys) -> list[Value | None]:
        return self.get_batch(keys).to_list()

    def views(self, keys):
        """Zero-copy views into the server's slots (shared-memory path only).

        Returns ``ShmViews``: ``.arrays[i]`` is a uint8 view or None; call
        ``.valid()`` after using them (a slot reused meanwhile reads False).
        """
        self._ensure()
        if self._reader is None:
            raise UserError("zero-copy views need the shared-memory path (a server on this host)")
        try:
            return self._reader.views(_as_ids(keys))
        except StaleMapping as exc:
            self._drop_attachment()
            raise StoreUnavailable(f"the cache server at {self.host}:{self.port} is unavailable ({exc})") from None

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
            pending.append(self._submit_get(_as_ids(keys)))
            return True

        while len(pending) < self.prefetch_size and submit():
            pass
        try:
            while pending:
                b = self._collect(pending.popleft())
                submit()
                yield b.to_list() if as_list else b
        finally:
            for futures in pending:  # an error, or the caller stopped early
                for f in futures:
                    f.cancel()

    # ---------------------------------------------------------------- writes
    def put_many(self, keys, values: Sequence[Value]) -> np.ndarray:
        ids = _as_ids(keys)
        check_batch(list(range(ids.size)), values)
        self._ensure()
        lengths = np.fromiter((len(memoryview(v).cast("B")) for v in values), np.int64, count=ids.size)
        status = np.zeros(ids.size, np.bool_)
        limit = max(1, self.max_message_bytes // 2)
        start = 0
        while start < ids.size:  # keep each message under the size cap
            stop = start + 1
            total = int(lengths[start])
            while stop < ids.size and total + int(lengths[stop]) <= limit and stop - start < 65536:
                total += int(lengths[stop])
                stop += 1
            reply = self._call("Put", encode_put_request(self.session_id, self.pipeline, ids[start:stop],
                                                          lengths[start:stop], values[start:stop]))
            status[start:stop] = np.frombuffer(reply.status, np.uint8).astype(np.bool_)
            start = stop
        return status

    def delete_many(self, keys) -> None:
        ids = _as_ids(keys)
        self._ensure()
        for start in range(0, ids.size, 65536):
            self._call("Delete", pb.DeleteRequest(session_id=self.session_id, pipeline=self.pipeline,
                                                  ids=ids[start:start + 65536].astype("<i8").tobytes()))

    def seal(self, n_items: int) -> None:
        """Streaming mode: the first epoch stored items 0..n_items-1 completely."""
        self._ensure()
        self._call("Seal", pb.SealRequest(session_id=self.session_id, pipeline=self.pipeline, n_items=n_items))
        self.sealed_items = int(n_items)

    def refresh(self) -> None:
        """Re-read the session's state (e.g. ``sealed_items``) from the server."""
        self._attached = False
        self._attach()

    # ----------------------------------------------------------------- stats
    def _count(self, hits: int, misses: int) -> None:
        # shared-memory reads never reach the server: tell it what we saw now and then
        self._hits += hits
        self._misses += misses
        if time.monotonic() - self._last_report > REPORT_EVERY_SECONDS:
            self._report(detach=False)

    def _report(self, detach: bool) -> None:
        hits, misses = self._hits, self._misses
        self._hits = self._misses = 0
        self._last_report = time.monotonic()
        try:
            self._stubs[0].Report(pb.ReportRequest(session_id=self.session_id, client_id=self.client_id,
                                                   hits=hits, misses=misses, detach=detach),
                                  timeout=2.0, metadata=self._metadata)
        except grpc.RpcError:
            pass  # statistics are best effort; data calls report the outage

    def stats(self) -> dict:
        from .admin import AdminClient

        self._report(detach=False)
        with AdminClient(self.host, self.port, self.token) as admin:
            return admin.session_stats(self.session_id)

    def close(self) -> None:
        if self._closed:
            return
        if self._attached:
            self._report(detach=True)
        self._drop_attachment()
        for c in self._channels:
            c.close()
        self._closed = True

    def __del__(self) -> None:
        try:
            if not self._closed:
                for c in self._channels:
                    c.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"DatasetCache(session_id={self.session_id}, hostname={self.host!r}, port={self.port}, "
                f"shm={self._reader is not None})")
