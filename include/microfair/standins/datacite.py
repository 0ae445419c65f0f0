"""A local DataCite REST API (``/dois``) on 127.0.0.1, for demos and tests.

Basic auth ``REPOSITORY_ID:PASSWORD`` (401 otherwise); ``POST /dois`` with ``prefix`` (auto suffix) or
``doi`` creates a DOI, in state ``draft`` unless an ``event`` is given; missing ``titles``/``creators``
for a findable DOI → 422 ``{"errors":[{"source","title"}]}``; ``PUT /dois/{doi}`` updates; ``GET`` reads.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class DataciteStandin:
    def __init__(self, repository_id: str, password: str, prefix: str = "10.80000") -> None:
        self.repository_id, self.password, self.prefix = repository_id, password, prefix
        self.dois: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, int]] = []

    def __enter__(self) -> "DataciteStandin":
        standin = self

        class Handler(_Handler):
            dc = standin

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.shutdown()
        self.http.server_close()


class _Handler(BaseHTTPRequestHandler):
    dc: DataciteStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.api+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.dc.calls.append((self.command, self.path, code))

    def _route(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        expected = base64.b64encode(f"{self.dc.repository_id}:{self.dc.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            return self._send(401, {"errors": [{"status": "401", "title": "Bad credentials."}]})
        parts = self.path.strip("/").split("/", 1)
        if parts[0] != "dois":
            return self._send(404, {"errors": [{"status": "404", "title": "The resource could not be found."}]})
        if self.command == "GET" and len(parts) == 2:
            doi = parts[1]
            if doi not in self.dc.dois:
                return self._send(404, {"errors": [{"status": "404", "title": "The resource could not be found."}]})
            return self._send(200, {"data": {"id": doi, "type": "dois", "attributes": self.dc.dois[doi]}})
        try:
            attrs = json.loads(raw)["data"]["attributes"]
        except (ValueError, KeyError, TypeError):
            return self._send(400, {"errors": [{"status": "400", "title": "You need to provide a payload"}]})
        event = attrs.pop("event", None)
        if event in ("publish", "register"):
            missing = [k for k in ("titles", "creators", "publisher", "publicationYear", "url") if not attrs.get(k)]
            if missing:
                return self._send(422, {"errors": [{"source": k, "title": "can't be blank"} for k in missing]})
        if self.command == "POST" and len(parts) == 1:
            doi = attrs.pop("doi", None) or f"{attrs.pop('prefix', self.dc.prefix)}/{uuid.uuid4().hex[:8]}"
            if doi in self.dc.dois:
                return self._send(422, {"errors": [{"source": "doi", "title": "This DOI has already been taken"}]})
            if not doi.startswith(self.dc.prefix + "/"):
                return self._send(403, {"errors": [{"status": "403", "title": "prefix not assigned to repository"}]})
            self.dc.dois[doi] = {**attrs, "doi": doi, "state": "findable" if event == "publish" else "draft"}
            return self._send(201, {"data": {"id": doi, "type": "dois", "attributes": self.dc.dois[doi]}})
        if self.command == "PUT" and len(parts) == 2:
            doi = parts[1]
            if doi not in self.dc.dois:
                return self._send(404, {"errors": [{"status": "404", "title": "The resource could not be found."}]})
            self.dc.dois[doi].update({**attrs, "doi": doi})
            return self._send(200, {"data": {"id": doi, "type": "dois", "attributes": self.dc.dois[doi]}})
        return self._send(405, {"errors": [{"status": "405", "title": "Method not allowed"}]})

    do_GET = do_POST = do_PUT = do_DELETE = _route
