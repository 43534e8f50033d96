"""The gRPC service: validates every request, then hands it to the sessions.

Errors become gRPC status codes with a one-line message (the client turns
them back into ``UserError`` / ``StoreUnavailable``); a bad request never
takes the server down. The token, when the server has one, is compared in
constant time on every call.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
import numpy as np

from .. import __version__
from ..errors import UserError
from . import cache_pb2 as pb
from . import cache_pb2_grpc as pb_grpc
from . import requests as check
from .limits import (
    DEFAULT_MAX_MESSAGE,
    DEFAULT_PORT,
    HEARTBEAT_SECONDS,
    SERVICE_NAME,
    TOKEN_HEADER,
    grpc_options,
)
from .manager import SessionManager
from .memory import release_free_memory, reserve_for_process, rss_breakdown
from .sessions import PipelineMismatch, ReplyTooLarge, RequestError, ServerConfig, ServerFull, SessionNotFound
from .wire import finish_reply, new_get_reply

log = logging.getLogger("spidercache.server")


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 8
    token: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise UserError(f"binding {host} exposes the cache beyond this machine: give --token SECRET")


def _handler(method):
    """Wrap a servicer method: token check, request validation errors -> status codes."""

    def wrapped(self, request, context):
        if self.token is not None:
            sent = dict(context.invocation_metadata()).get(TOKEN_HEADER, "")
            if not hmac.compare_digest(sent.encode(), self.token.encode()):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong or missing token for this cache server")
        try:
            return method(self, request, context)
        except RequestError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except SessionNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except PipelineMismatch as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except (ReplyTooLarge, ServerFull) as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except UserError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    wrapped.__name__ = method.__name__
    return wrapped


def _stats_msg(d: dict) -> pb.SessionStats:
    return pb.SessionStats(**d)


class CacheService(pb_grpc.CacheServerServicer):
    def __init__(self, manager: SessionManager, options: ServeOptions, stop: threading.Event) -> None:
        self.manager = manager
        self.options = options
        self.token = options.token
        self.stop_event = stop
        self.instance = secrets.token_hex(8)

    @_handler
    def Ping(self, request, context):
        return pb.PingReply(pid=os.getpid(), version=__version__, instance=self.instance)

    @_handler
    def Status(self, request, context):
        sessions = [s.stats() for s in list(self.manager.sessions.values())]
        cfg = self.manager.config
        rss = rss_breakdown()
        return pb.StatusReply(
            rss_bytes=rss["VmRSS"],
            rss_anon_bytes=rss["RssAnon"],
            rss_shmem_bytes=rss["RssShmem"],
            rss_file_bytes=rss["RssFile"],
            max_sessions=cfg.max_sessions,
            max_message_bytes=cfg.max_message_bytes,
            pid=os.getpid(),
            host=self.options.host,
            port=self.options.port,
            memory_budget=cfg.memory_bytes,
            memory_used=self.manager.used_bytes(),
            spilled_bytes=sum(s["spilled_bytes"] for s in sessions),
            hits=sum(s["hits"] for s in sessions),
            misses=sum(s["misses"] for s in sessions),
            clients=sum(s["clients"] for s in sessions),
            spill_dir=cfg.spill_dir or "",
            persist=cfg.persist,
            policy=cfg.policy or "",
            workers=self.options.workers,
            sessions=[_stats_msg(s) for s in sessions],
        )

    @_handler
    def Shutdown(self, request, context):
        self.stop_event.set()
        return pb.Empty()

    @_handler
    def NewSession(self, request, context):
        session = self.manager.new(check.memory(request.memory_bytes), bool(request.spill))
        return _stats_msg(session.stats())

    @_handler
    def ListSessions(self, request, context):
        return pb.ListSessionsReply(
            sessions=[_stats_msg(s.stats()) for s in list(self.manager.sessions.values())]
        )

    @_handler
    def GetSessionStats(self, request, context):
        return _stats_msg(self.manager.get(request.session_id).stats())

    @_handler
    def DestroySession(self, request, context):
        self.manager.destroy(request.session_id)
        return pb.Empty()

    @_handler
    def Attach(self, request, context):
        session = self.manager.get(request.session_id)
        session.attach(
            check.pipeline(request.pipeline),
            check.client_id(request.client_id),
            check.memory(request.memory_bytes),
            bool(request.spill),
        )
        shm = session.arena.header_name if (request.want_shm and session.policy is None) else ""
        return pb.AttachReply(
            shm_header=shm,
            server_pid=os.getpid(),
            sealed_items=session.sealed_items,
            instance=self.instance,
            spill=session.spill,
            memory_budget=session.budget,
            max_message_bytes=self.manager.config.max_message_bytes,
        )

    @_handler
    def Report(self, request, context):
        session = self.manager.get(request.session_id)
        session.report(
            check.client_id(request.client_id),
            check.count(request.hits, "hits"),
            check.count(request.misses, "misses"),
            bool(request.detach),
        )
        return pb.Empty()

    @_handler
    def Get(self, request, context):
        session = self.manager.get(request.session_id)
        session.check_pipeline(request.pipeline)
        ids = check.validate_ids(request.ids)
        box: list = []

        def alloc(lengths: np.ndarray, n_rows: int, width: int) -> np.ndarray:
            message, rows = new_get_reply(lengths, n_rows, width)
            box.append(message)
            return rows

        session.get(ids, alloc)  # gathers each value from its slot straight into the reply
        return finish_reply(box[0])  # GetReply's wire format; gRPC sends these bytes as they are

    @_handler
    def Put(self, request, context):
        session = self.manager.get(request.session_id)
        session.check_pipeline(request.pipeline)
        ids, lengths, data = check.validate_put(request.ids, request.lengths, request.data)
        stored, spilled, rejected, status = session.put(ids, lengths, data)
        return pb.PutReply(
            stored=stored, spilled=spilled, rejected=rejected, status=status.astype(np.uint8).tobytes()
        )

    @_handler
    def Delete(self, request, context):
        session = self.manager.get(request.session_id)
        session.check_pipeline(request.pipeline)
        return pb.DeleteReply(deleted=session.delete(check.validate_ids(request.ids)))

    @_handler
    def Seal(self, request, context):
        session = self.manager.get(request.session_id)
        session.check_pipeline(request.pipeline)
        session.seal(check.count(request.n_items, "n_items", 0, 1 << 32))
        return pb.Empty()


# method -> (request type, reply type); Get's reply is pre-encoded bytes (see wire.py)
METHODS = {
    "Ping": (pb.Empty, pb.PingReply),
    "Status": (pb.Empty, pb.StatusReply),
    "Shutdown": (pb.Empty, pb.Empty),
    "NewSession": (pb.NewSessionRequest, pb.SessionStats),
    "ListSessions": (pb.Empty, pb.ListSessionsReply),
    "GetSessionStats": (pb.SessionRef, pb.SessionStats),
    "DestroySession": (pb.SessionRef, pb.Empty),
    "Attach": (pb.AttachRequest, pb.AttachReply),
    "Report": (pb.ReportRequest, pb.Empty),
    "Get": (pb.GetRequest, None),
    "Put": (pb.PutRequest, pb.PutReply),
    "Delete": (pb.DeleteRequest, pb.DeleteReply),
    "Seal": (pb.SealRequest, pb.Empty),
}


def _identity(b: bytes) -> bytes:
    return b


def add_service(service: CacheService, server: grpc.Server) -> None:
    """Like the generated ``add_CacheServerServicer_to_server``, but Get replies
    go out as the bytes the handler built."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(service, name),
            request_deserializer=req.FromString,
            response_serializer=_identity if rep is None else rep.SerializeToString,
        )
        for name, (req, rep) in METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def _heartbeat(manager: SessionManager, stop: threading.Event) -> None:
    """Stamp every session's header; readers treat a late stamp as a dead server (shm.py)."""
    while not stop.wait(HEARTBEAT_SECONDS):
        manager.heartbeat()


def serve(config: ServerConfig, options: ServeOptions, on_ready=None) -> None:
    """Run the server in this process until Shutdown, SIGTERM or SIGINT."""
    check_bind(options.host, options.token)
    stop = threading.Event()
    if not config.reserved_bytes:  # -m is the whole server's memory (memory.py)
        config.reserved_bytes = reserve_for_process(config.memory_bytes)
    config.max_message_bytes = options.max_message_bytes
    manager = SessionManager(config)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max(1, options.workers)),
        options=grpc_options(options.max_message_bytes),
        maximum_concurrent_rpcs=max(64, 16 * options.workers),
    )
    service = CacheService(manager, options, stop)
    add_service(service, server)
    address = f"[{options.host}]:{options.port}" if ":" in options.host else f"{options.host}:{options.port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        manager.close()
        raise UserError(
            f"cannot listen on {options.host}:{options.port}: the port is in use (or the address is not "
            "this machine's)"
        )
    server.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if on_ready is not None:
        on_ready()
    log.info("cache server listening on %s (pid %d)", address, os.getpid())
    beat = threading.Thread(target=_heartbeat, args=(manager, stop), name="heartbeat", daemon=True)
    beat.start()
    try:
        while not stop.wait(0.5):
            release_free_memory()  # freed request/reply buffers go back to the OS between bursts
    finally:
        server.stop(grace=1.0).wait(5)
        manager.close()
        log.info("cache server stopped")
