"""A read-only HTTP view of the job-result cache, bound to 127.0.0.1 (as DisCo's master serves results).

``GET /results``        JSON list of stored results (key, function, created, seconds, bytes)
``GET /results/<key>``  JSON record of one result (arrays and tensors as lists)
Anything else is 404; every method other than GET/HEAD is 405: nothing can be written.
"""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import UserError
from .memo import ResultCache, to_jsonable

_KEY_RE = re.compile(r"^/results/([0-9a-f]{64})/?$")


def _handler_for(cache: ResultCache, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class ResultsHandler(BaseHTTPRequestHandler):
        server_version = "spidercache-results/1"

        def log_message(self, fmt: str, *args: Any) -> None:  # keep the terminal quiet
            pass

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload, sort_keys=True).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with lock:  # one store handle, shared by the server's threads
                if path in ("/", "/results", "/results/"):
                    self._send(HTTPStatus.OK, cache.entries())
                    return
                match = _KEY_RE.match(path)
                if match:
                    record = cache.lookup(match.group(1))
                    if record is None:
                        self._send(HTTPStatus.NOT_FOUND, {"error": "no such result"})
                    else:
                        self._send(HTTPStatus.OK, to_jsonable(record))
                    return
            self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})

        do_HEAD = do_GET

        def _refuse(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    return ResultsHandler


def make_server(cache: ResultCache, port: int = 8765) -> ThreadingHTTPServer:
    """The server, bound to 127.0.0.1:``port`` (0 picks a free port); call ``serve_forever``."""
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), _handler_for(cache, threading.Lock()))
    except OSError as exc:
        raise UserError(f"cannot serve results on 127.0.0.1:{port}: {exc.strerror or exc}") from None
