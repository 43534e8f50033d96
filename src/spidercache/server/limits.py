"""What the server and its clients agree on: names, limits, channel options.

A small module on its own so that the client (``client.py``, ``admin.py``)
does not import the server implementation, and the CLI front-ends
(``spidercache server``, ``ms_cache_server``, ``cache_admin``,
``python -m spidercache.server``) read sizes the same way.
"""

from __future__ import annotations

import os
import re

from ..engine.stores import physical_memory
from ..errors import UserError

SERVICE_NAME = "spidercache.server.CacheServer"
TOKEN_HEADER = "x-spidercache-token"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50052
DEFAULT_MAX_MESSAGE = 128 << 20
MAX_MESSAGE_MB = 2047  # gRPC keeps message sizes in a signed 32-bit int
MAX_PIPELINE_CHARS = 256
MAX_CLIENT_ID_CHARS = 64
MAX_BATCH = 1 << 16
# sessions one server holds at most (``--max-sessions``): each costs a few
# segments in /dev/shm and ~SESSION_OVERHEAD bytes of the budget
DEFAULT_MAX_SESSIONS = 256
# a client reports at most this many hits or misses per Report call
MAX_REPORT_COUNT = 1 << 40

# The server stamps every session's header with CLOCK_MONOTONIC (one clock for
# all processes of a host) every HEARTBEAT_SECONDS. A reader that finds the
# stamp older than STALE_AFTER_SECONDS asks the server over gRPC (Ping, at most
# PING_TIMEOUT_SECONDS) whether it is still the same process before it reads
# again; a dead, frozen or restarted server therefore gives StoreUnavailable
# within STALE_AFTER_SECONDS + PING_TIMEOUT_SECONDS of its end.
HEARTBEAT_SECONDS = 0.2
STALE_AFTER_SECONDS = 1.0
PING_TIMEOUT_SECONDS = 1.0

LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def parse_memory(text: str) -> int:
    """'512' or '512M' -> bytes (MB when no unit); 'K', 'G' also accepted."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[iI]?[bB]?\s*", text or "")
    if not m:
        raise UserError(f"cannot read memory size {text!r}; write e.g. 512M or 2G")
    value = float(m.group(1)) * {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    if value <= 0:
        raise UserError(f"memory size must be positive, got {text!r}")
    return int(value)


def check_memory(budget: int) -> int:
    """A server budget must fit in this machine's RAM."""
    ram = physical_memory()
    if budget > ram:
        raise UserError(
            f"a memory budget of {budget / (1 << 30):,.1f} GB is more than this machine's "
            f"{ram / (1 << 30):,.1f} GB of RAM"
        )
    return budget


def check_port(port: int | str) -> int:
    try:
        value = int(str(port).strip())
    except ValueError:
        raise UserError(f"port must be a number in 1..65535, got {port!r}") from None
    if not 1 <= value <= 65535:
        raise UserError(f"port must lie in 1..65535, got {port}")
    return value


def check_session_id(value: int | str) -> int:
    """A session id (as typed on a command line, or a number) as an int in 1..2**64-1."""
    try:
        sid = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise UserError(f"session ids are positive integers, got {value!r}") from None
    if not 0 < sid < 1 << 64:
        raise UserError(f"session ids are positive integers, got {value}")
    return sid


def check_spill_dir(path: str) -> str:
    """Create the spill directory now and check that it is writable: a start that
    cannot spill says why here, not later in the daemon's log."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot use spill directory {path}: {exc.strerror or exc}") from None
    if not os.path.isdir(path):
        raise UserError(f"cannot use spill directory {path}: not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"cannot use spill directory {path}: not writable by this user")
    return path


def check_log_level(level: str) -> int:
    value = LOG_LEVELS.get(str(level).lower())
    if value is None:
        raise UserError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return value


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # without this a second server could bind the same port silently
        ("grpc.so_reuseport", 0),
        # big replies (a batch of 150 KB values is ~40 MB): large HTTP/2 frames and a stream
        # window that does not need a round trip of WINDOW_UPDATEs per 64 KB
        ("grpc.http2.max_frame_size", (1 << 24) - 1),
        ("grpc.http2.lookahead_bytes", 64 << 20),
        ("grpc.http2.write_buffer_size", 8 << 20),
        # read big replies in few large slices (each slice becomes a Python object
        # and a copy on the receiving side of the Python API)
        ("grpc.experimental.tcp_read_chunk_size", 1 << 20),
        ("grpc.experimental.tcp_min_read_chunk_size", 256 << 10),
        ("grpc.experimental.tcp_max_read_chunk_size", 8 << 20),
    ]
