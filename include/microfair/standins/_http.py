"""What the repository stand-ins share: a threaded HTTP server on 127.0.0.1, JSON answers, fault injection.

``fail_next(prefix, n, kind, method=None, after=0)`` answers the next ``n`` requests on paths starting
with ``prefix`` with HTTP 500/502/503 (``kind="503"``) or resets the connection half-way through the
request body (``kind="reset"``), after letting ``after`` matching requests through.

Answers are JSON (``content_type``) unless ``handle`` returns ``bytes``, which are sent as they are (with the
``Content-Type`` from its headers); a subclass shapes the body of an injected failure in ``fault_body``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlparse


class HttpStandin:
    """Base of a stand-in: ``with Standin(...) as s: s.url``; subclasses implement ``handle(req)``, which
    returns ``(status, json_body)`` or ``(status, json_body, headers)`` (``json_body`` None: no body)."""

    content_type = "application/json"

    def __init__(self) -> None:
        self.faults: list[list[Any]] = []
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()

    def fail_next(self, prefix: str, n: int = 1, kind: str = "500", *, method: str | None = None,
                  after: int = 0) -> None:
        with self.lock:
            self.faults.append([prefix, n, kind, method, after])

    def _take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if path.startswith(f[0]) and f[1] > 0 and f[3] in (None, method):
                    if f[4] > 0:
                        f[4] -= 1
                        continue
                    f[1] -= 1
                    return f[2]
        return None

    def __enter__(self) -> Self:
        standin = self

        class Handler(_Handler):
            owner = standin

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.shutdown()
        self.http.server_close()

    def handle(self, req: "Req") -> tuple[int, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fault_body(self, code: int) -> Any:
        """The body of an injected HTTP failure (the service's own error shape in a subclass)."""
        return {"status": "ERROR", "message": "Internal server error"}

    def requests_to(self, prefix: str, method: str | None = None) -> int:
        return sum(1 for m, p, _c in self.log if p.startswith(prefix) and method in (None, m))


class Req:
    """One request as the stand-ins see it."""

    def __init__(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> None:
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, tuple[str | None, bytes]]:
        """multipart/form-data or urlencoded fields: name -> (filename, bytes)."""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            return {k: (None, v[0].encode()) for k, v in parse_qs(self.body.decode()).items()}
        return {name: (filename, data) for name, filename, data in self.parts() or []}

    def parts(self) -> list[tuple[str, str | None, bytes]] | None:
        """The named parts of a multipart/form-data body, in order: (name, filename, bytes); None: not multipart."""
        import email.parser
        import email.policy

        ctype = self.headers.get("Content-Type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self.body)
        if not msg.is_multipart():
            return None
        out = []
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                out.append((name, part.get_filename(), part.get_payload(decode=True) or b""))
        return out


class _Handler(BaseHTTPRequestHandler):
    owner: HttpStandin
    protocol_version = "HTTP/1.1"
    # headers and body leave in one segment (no 40 ms delayed-ACK stall per request on loopback)
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        for k, v in {"Content-Type": self.owner.content_type, **(headers or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        n = int(self.headers.get("Content-Length") or 0)
        fault = self.owner._take_fault(self.command, path)
        if fault == "reset":
            if n:
                self.rfile.read(min(n, 1024))  # the connection drops in the middle of the body
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            self.owner.log.append((self.command, path, 0))
            return
        body = self.rfile.read(n) if n else b""
        if fault:
            code = int(fault) if fault.isdigit() else 500
            self.owner.log.append((self.command, path, code))
            return self._send(code, self.owner.fault_body(code))
        headers: dict[str, str] = {}
        try:
            code, out, *more = self.owner.handle(Req(self.command, path, query, self.headers, body))
            headers = more[0] if more else {}
        except Exception as exc:  # noqa: BLE001 - a stand-in bug must show as a 500, not a hang
            code, out = 500, {"status": "ERROR", "message": f"stand-in error: {type(exc).__name__}: {exc}"}
        self.owner.log.append((self.command, path, code))
        self._send(code, out, headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _route
