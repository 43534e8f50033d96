"""Admin calls (what ``cache_admin`` does in MindSpore) as plain functions.

Each returns plain dicts, so the CLI prints them as tables or JSON. gRPC
errors are turned into the project's errors here, once, for the admin
commands and the client alike: a server that does not answer is
``StoreUnavailable``; everything the user can fix (unknown session, wrong
token, other pipeline) is ``UserError`` with the server's one-line message.
"""

from __future__ import annotations

import os

import grpc
from google.protobuf.json_format import MessageToDict

from ..errors import StoreUnavailable, UserError
from . import cache_pb2 as pb
from . import cache_pb2_grpc as pb_grpc
from .limits import DEFAULT_MAX_MESSAGE, TOKEN_HEADER, check_session_id, grpc_options

_GONE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


def resolve_token(token: str | None) -> str | None:
    return token or os.environ.get("SPIDERCACHE_TOKEN") or None


def metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return ((TOKEN_HEADER, token),) if token else None


def target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def open_channel(
    host: str, port: int, *, separate: bool = False, max_message_bytes: int = DEFAULT_MAX_MESSAGE
) -> grpc.Channel:
    options = [o for o in grpc_options(max_message_bytes) if o[0] != "grpc.so_reuseport"]
    if separate:  # its own TCP connection (channels otherwise share one)
        options.append(("grpc.use_local_subchannel_pool", 1))
    return grpc.insecure_channel(target(host, port), options=options)


def translate(exc: grpc.RpcError, host: str, port: int) -> Exception:
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code in _GONE:
        return StoreUnavailable(
            f"the cache server at {host}:{port} is unavailable ({details.splitlines()[0]})"
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if "larger than max" in details:  # gRPC's own message-size check
            return UserError(f"request too large for the cache server at {host}:{port}: {details}")
        return UserError(details.splitlines()[0])  # the server's cap, named in its message
    return UserError(details.splitlines()[0] if details else f"cache server error {code}")


class AdminClient:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 50052, token: str | None = None, timeout: float = 10.0
    ) -> None:
        self.host, self.port, self.timeout = host, int(port), timeout
        self.token = resolve_token(token)
        self.channel = open_channel(host, port)
        self.stub = pb_grpc.CacheServerStub(self.channel)

    def call(self, name: str, request, timeout: float | None = None):
        try:
            return getattr(self.stub, name)(
                request, timeout=timeout or self.timeout, metadata=metadata(self.token)
            )
        except grpc.RpcError as exc:
            raise translate(exc, self.host, self.port) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ calls
    def ping(self) -> dict:
        return _as_dict(self.call("Ping", pb.Empty()))

    def status(self) -> dict:
        return _as_dict(self.call("Status", pb.Empty()))

    def shutdown(self) -> None:
        self.call("Shutdown", pb.Empty())

    def new_session(self, memory_bytes: int = 0, spill: bool = False) -> dict:
        return _as_dict(self.call("NewSession", pb.NewSessionRequest(memory_bytes=memory_bytes, spill=spill)))

    def list_sessions(self) -> list[dict]:
        reply = self.call("ListSessions", pb.Empty())
        return [_as_dict(s) for s in reply.sessions]

    def session_stats(self, session_id: int) -> dict:
        return _as_dict(self.call("GetSessionStats", pb.SessionRef(session_id=check_session_id(session_id))))

    def destroy_session(self, session_id: int) -> None:
        self.call("DestroySession", pb.SessionRef(session_id=check_session_id(session_id)))


def _as_dict(msg) -> dict:
    d = MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    # MessageToDict writes 64-bit ints as strings (JSON); callers want numbers
    return _ints(d)


_TEXT_FIELDS = {"pipeline", "version", "instance", "host", "spill_dir", "policy"}


def _ints(obj):
    if isinstance(obj, dict):
        return {k: (v if k in _TEXT_FIELDS else _ints(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ints(v) for v in obj]
    if isinstance(obj, str) and obj.lstrip("-").isdigit():
        return int(obj)
    return obj


def ping(host: str, port: int, token: str | None = None, timeout: float = 1.0) -> dict | None:
    """The server's pid/version, or None when nothing answers (or answers wrongly)."""
    try:
        with AdminClient(host, port, token, timeout=timeout) as admin:
            return admin.ping()
    except StoreUnavailable:
        return None


def shutdown(host: str, port: int, token: str | None = None) -> None:
    with AdminClient(host, port, token) as admin:
        admin.shutdown()
