"""``DatasetCache``: a pipeline's handle on one session of the cache server.

It is a ``Store`` (``get_many`` / ``put_many`` / ``delete_many`` / ``close``),
so the cached dataset and ``spidercache train --cache-backend server`` use it
like any other store. Reads take the shared-memory path when the server is on
this host (one numpy gather per batch, no socket), and gRPC otherwise, with up
to ``prefetch_size`` batches in flight over ``num_connections`` connections.
Writes always go through gRPC: the server copies a value into a slot and
publishes it only once it is complete, so a client killed mid-put leaves
nothing half-written behind.

Every value carries a checksum (``batch.py``): a value changed after it was
written is a miss, counted in ``errors``, never returned.

Errors: a server that is down, killed, frozen or unreachable raises
``StoreUnavailable`` (the one documented error; a ``Cache`` catches it and reads
from the source). On the shared-memory path a dead server is noticed within
``STALE_AFTER_SECONDS + PING_TIMEOUT_SECONDS`` (2 s, see ``limits.py``) even where
its process lingers as a zombie. After a restart the client attaches again only
to a session that still exists (a ``--persist`` server); otherwise every call
raises ``StoreUnavailable``. Another pipeline on the session, an unknown or
destroyed session at the first attach, a wrong token: ``UserError`` with the
server's one-line message.
"""

from __future__ import annotations

import itertools
import secrets
import time

import grpc
import numpy as np

from ..checks import at_least
from ..engine.stores.base import Store, Value
from ..errors import StoreUnavailable, UserError
from . import cache_pb2 as pb
from . import cache_pb2_grpc as pb_grpc
from .admin import metadata, open_channel, resolve_token, translate
from .batch import Batch, check_batch_sums, check_view
from .client_rpc import SMALL_REPLY_CONNECTIONS, RpcReads, RpcWrites
from .limits import DEFAULT_MAX_MESSAGE, PING_TIMEOUT_SECONDS, SERVICE_NAME
from .reader import SPILLED, ShmReader, StaleMapping

REPORT_EVERY_SECONDS = 2.0


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


class DatasetCache(RpcReads, RpcWrites, Store):
    """One pipeline's cache in a session of the cache server.

    ``session_id`` None: a session of its own is created (``size`` MB, ``spilling``)
    and destroyed again by ``close()``: no other pipeline knows its id (MindSpore:
    "the only channel"). With an id, the session's budget and spill setting hold:
    ``size`` (MB, 0: the session's budget) can only cap it lower, and ``spilling``
    cannot turn spill on for a session created without it (``UserError``).
    ``pipeline`` is the fingerprint of the pipeline up to the cache point: the
    session refuses a second, different one. ``checksum`` (default on) adds and
    checks the 8-byte trailer of ``batch.py`` on every value.
    """

    name = "server"
    _ids = staticmethod(_as_ids)

    def __init__(
        self,
        session_id: int | None = None,
        size: int = 0,
        spilling: bool = False,
        hostname: str = "127.0.0.1",
        port: int = 50052,
        num_connections: int = 12,
        prefetch_size: int = 20,
        *,
        pipeline: str = "",
        token: str | None = None,
        use_shm: bool = True,
        timeout: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
        checksum: bool = True,
    ) -> None:
        at_least(1, num_connections=num_connections, prefetch_size=prefetch_size)
        at_least(0, size=size)  # MB
        self.size_mb = int(size)
        self.spilling = bool(spilling)
        self.host, self.port = hostname, int(port)
        self.prefetch_size = int(prefetch_size)
        self.pipeline = str(pipeline)
        self.checksum = bool(checksum)
        # values with and without trailers must never mix: they are two pipelines to the server
        self._wire_pipeline = self.pipeline + ("#xxh3" if self.checksum else "")
        self.token = resolve_token(token)
        self.use_shm = use_shm
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.client_id = secrets.token_hex(8)
        self._metadata = metadata(self.token)
        self._channels = [
            open_channel(hostname, self.port, separate=True, max_message_bytes=max_message_bytes)
            for _ in range(int(num_connections))
        ]
        self._stubs = [pb_grpc.CacheServerStub(c) for c in self._channels]
        # the hot calls skip protobuf objects: Get replies and Put requests are raw bytes (wire.py)
        self._raw_get = [
            c.unary_unary(
                f"/{SERVICE_NAME}/Get",
                request_serializer=pb.GetRequest.SerializeToString,
                response_deserializer=None,
            )
            for c in self._channels
        ]
        self._raw_put = [
            c.unary_unary(
                f"/{SERVICE_NAME}/Put", request_serializer=None, response_deserializer=pb.PutReply.FromString
            )
            for c in self._channels
        ]
        self._next = itertools.cycle(range(len(self._stubs)))
        self._next_small = itertools.cycle(range(min(SMALL_REPLY_CONNECTIONS, len(self._stubs))))
        self._reader: ShmReader | None = None
        self._row_bytes = 0  # reply bytes per value found, from the last Get
        self._attached = False
        self._instance: str | None = None  # the server process we attached to last
        self._server_max = max_message_bytes
        self.sealed_items = -1
        self.errors = 0  # values that failed their checksum (served as misses)
        self._hits = self._misses = 0
        self._last_report = time.monotonic()
        self._closed = False
        self.session_id = 0
        self.owns_session = session_id is None
        if session_id is None:
            reply = self._call(
                "NewSession",
                pb.NewSessionRequest(memory_bytes=self.size_mb << 20, spill=self.spilling),
                timeout=10.0,
            )
            session_id = reply.session_id
        self.session_id = int(session_id)
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
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> Exception:
        """The project's error for a failed call. A session that vanished because
        its server restarted without --persist is an outage for the job, not a
        mistake of the user's (one destroyed on the same server is: UserError)."""
        err = translate(exc, self.host, self.port)
        if self._instance is not None and exc.code() == grpc.StatusCode.NOT_FOUND and not self._same_server():
            err = StoreUnavailable(
                f"session {self.session_id} no longer exists: the cache server at "
                f"{self.host}:{self.port} was restarted without --persist"
            )
        if isinstance(err, StoreUnavailable):
            self._drop_attachment()
        return err

    def _attach(self) -> None:
        reply = self._call(
            "Attach",
            pb.AttachRequest(
                session_id=self.session_id,
                pipeline=self._wire_pipeline,
                client_id=self.client_id,
                want_shm=self.use_shm,
                memory_bytes=self.size_mb << 20,
                spill=self.spilling,
            ),
            timeout=10.0,
        )
        self._instance = reply.instance
        self.sealed_items = int(reply.sealed_items)
        self.spill = bool(reply.spill)
        self.memory_budget = int(reply.memory_budget)
        self._server_max = min(self.max_message_bytes, int(reply.max_message_bytes) or self.max_message_bytes)
        self._reader = None
        if reply.shm_header:
            try:
                self._reader = ShmReader(reply.shm_header, confirm=self._same_server)
            except (OSError, StaleMapping):
                self._reader = None  # another host, or no /dev/shm: gRPC only
        self._attached = True

    def _same_server(self) -> bool:
        """Whether the server we attached to still answers (the shared-memory
        reader asks when the heartbeat is late)."""
        try:
            reply = self._stubs[0].Ping(pb.Empty(), timeout=PING_TIMEOUT_SECONDS, metadata=self._metadata)
        except grpc.RpcError:
            return False
        return reply.instance == self._instance

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

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        self._drop_attachment()
        return StoreUnavailable(f"the cache server at {self.host}:{self.port} is unavailable ({exc})")

    def _verified(self, ids: np.ndarray, batch: Batch) -> Batch:
        if self.checksum:
            self.errors += check_batch_sums(ids, batch)
        return batch

    # ----------------------------------------------------------------- reads
    def get_batch(self, keys) -> Batch:
        """Read a batch as arrays (see ``Batch``): the fast path, no per-item objects."""
        ids = _as_ids(keys)
        self._ensure()
        reader = self._reader
        if reader is None:
            return self._get_rpc(ids)
        try:
            if self.checksum:  # checked while copied, one pass (engine/stores/slots.py)
                lengths, rows, bad = reader.read_checked(ids)
                self.errors += bad
            else:
                lengths, rows = reader.read(ids)
        except StaleMapping as exc:
            raise self._unavailable(exc) from None
        # shared-memory reads never reach the server, so we count them here
        self._count(int(np.count_nonzero(lengths >= 0)), int(np.count_nonzero(lengths == -1)))
        remote = np.flatnonzero(lengths == SPILLED)
        if remote.size:  # spilled to disk, or changed while we copied: ask the server (it counts these)
            sub = self._get_rpc(ids[remote])
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

    def get_many(self, keys) -> list[Value | None]:
        return self.get_batch(keys).to_list()

    def views(self, keys):
        """Zero-copy views into the server's slots (shared-memory path only).

        Returns ``ShmViews``: ``.arrays[i]`` is a uint8 view or None (not in
        memory, or failed its checksum); call ``.valid()`` after using them (a
        slot reused meanwhile reads False).
        """
        ids = _as_ids(keys)
        self._ensure()
        if self._reader is None:
            raise UserError("zero-copy views need the shared-memory path (a server on this host)")
        try:
            views = self._reader.views(ids)
        except StaleMapping as exc:
            raise self._unavailable(exc) from None
        if self.checksum:
            for i, arr in enumerate(views.arrays):
                if arr is not None:
                    views.arrays[i] = check_view(arr, int(ids[i]))
                    self.errors += views.arrays[i] is None
        return views

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
            self._stubs[0].Report(
                pb.ReportRequest(
                    session_id=self.session_id,
                    client_id=self.client_id,
                    hits=hits,
                    misses=misses,
                    detach=detach,
                ),
                timeout=2.0,
                metadata=self._metadata,
            )
        except grpc.RpcError:
            pass  # statistics are best effort; data calls report the outage

    def stats(self) -> dict:
        """The session's figures on the server, plus ``checksum_errors`` seen by this client."""
        from .admin import AdminClient

        self._report(detach=False)
        with AdminClient(self.host, self.port, self.token) as admin:
            out = admin.session_stats(self.session_id)
        out["checksum_errors"] = self.errors
        return out

    def close(self) -> None:
        if self._closed:
            return
        if self._attached:
            self._report(detach=True)
        self._drop_attachment()
        if self.owns_session:
            try:
                self._stubs[0].DestroySession(
                    pb.SessionRef(session_id=self.session_id), timeout=5.0, metadata=self._metadata
                )
            except grpc.RpcError:
                pass  # the server is gone, and the session with it
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
        return (
            f"DatasetCache(session_id={self.session_id}, hostname={self.host!r}, port={self.port}, "
            f"shm={self._reader is not None})"
        )
