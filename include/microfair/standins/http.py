"""The HTTP plumbing every stand-in shares: a threaded server on 127.0.0.1 and JSON replies.

A stand-in subclasses :class:`LocalHttpService` (its own state and a :class:`JsonHandler` subclass
with ``route()``); ``with Service(...) as svc:`` serves on a free port of 127.0.0.1 at ``svc.url``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON; ``service`` is the stand-in whose state it serves."""

    service: ClassVar[Any]
    protocol_version = "HTTP/1.1"
    content_type = "application/json"

    def log_message(self, *args: Any) -> None:  # quiet: tests read ``service.calls``
        pass

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self) -> Any:
        """The request body as JSON; None when it is empty or not JSON."""
        try:
            return json.loads(self.body() or b"null")
        except ValueError:
            return None

    def send(self, code: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", self.content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.service.calls.append((self.command, self.path, code))

    def route(self) -> None:
        raise NotImplementedError

    def _dispatch(self) -> None:
        self.route()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class LocalHttpService:
    """A stand-in served on 127.0.0.1 while in its ``with`` block; ``calls`` records (method, path, status)."""

    handler: ClassVar[type[JsonHandler]]

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.url = ""

    def __enter__(self) -> "LocalHttpService":
        handler = type(f"{type(self).__name__}Handler", (self.handler,), {"service": self})
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True, name=type(self).__name__).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.shutdown()
        self.http.server_close()
