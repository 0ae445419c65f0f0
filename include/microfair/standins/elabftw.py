"""A local eLabFTW REST API v2 on 127.0.0.1, written from eLabFTW's published API documentation.

What it implements (https://doc.elabftw.net/api.html and the v2 OpenAPI description):

* every request carries the API key in the ``Authorization`` header (no "Bearer"); a missing or
  unknown key is ``401 {"code": 401, "message": "Unauthorized", "description": ...}``; a read-only key
  that writes is ``403``;
* ``GET /api/v2/info``: the instance's version;
* ``GET /api/v2/{experiments|items}/{id}``: the entry (``404`` when there is none; ``400`` for an
  unknown entity type);
* ``GET /api/v2/{type}/{id}/comments``: the entry's comments, oldest first;
* ``POST /api/v2/{type}/{id}/comments`` with ``{"comment": "..."}``: ``201``, empty body, and the new
  comment's address in ``Location`` (``/api/v2/{type}/{id}/comments/{subid}``); ``400`` without text.

``fail_next`` makes the next N requests answer ``503`` (a server being upgraded).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from microfair.standins.http import JsonHandler, LocalHttpService

ENTITY_TYPES = ("experiments", "items")
_PATH = re.compile(r"^/api/v2/(?P<type>[a-z_]+)/(?P<id>\d+)(?P<comments>/comments)?/?$")


def _error(code: int, message: str, description: str) -> dict[str, Any]:
    return {"code": code, "message": message, "description": description}


class ElabftwStandin(LocalHttpService):
    """:param keys: API key -> ``"read"`` or ``"write"``; :param entries: (type, id) -> title of the existing entries."""

    def __init__(self, keys: dict[str, str], entries: dict[tuple[str, int], str] | None = None,
                 version: str = "5.1.0") -> None:
        super().__init__()
        self.keys, self.version = dict(keys), version
        self.entries = {k: {"id": k[1], "title": v} for k, v in (entries or {}).items()}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.fail_next = 0
        self._next_comment = 1

    def add_entry(self, entity_type: str, entry_id: int, title: str) -> None:
        self.entries[(entity_type, entry_id)] = {"id": entry_id, "title": title}


class _Handler(JsonHandler):
    service: ElabftwStandin

    def route(self) -> None:
        svc = self.service
        if svc.fail_next > 0:
            svc.fail_next -= 1
            return self.send(503, _error(503, "Service Unavailable", "maintenance"))
        access = svc.keys.get(self.headers.get("Authorization") or "")
        if access is None:
            return self.send(401, _error(401, "Unauthorized", "No corresponding API key found!"))
        path = self.path.split("?", 1)[0]
        if path.rstrip("/") == "/api/v2/info" and self.command == "GET":
            return self.send(200, {"elabftw_version": svc.version, "all_users_count": 1})
        m = _PATH.match(path)
        if not m:
            return self.send(404, _error(404, "Not Found", "The requested resource was not found."))
        etype, eid = m["type"], int(m["id"])
        if etype not in ENTITY_TYPES:
            return self.send(400, _error(400, "Bad Request", f"Incorrect endpoint {etype}"))
        entry = svc.entries.get((etype, eid))
        if entry is None:
            return self.send(404, _error(404, "Not Found", "Nothing to show with this id"))
        if not m["comments"]:
            if self.command == "GET":
                return self.send(200, {**entry, "comments": svc.comments.get((etype, eid), [])})
            return self.send(405, _error(405, "Method Not Allowed", self.command))
        if self.command == "GET":
            return self.send(200, svc.comments.get((etype, eid), []))
        if self.command != "POST":
            return self.send(405, _error(405, "Method Not Allowed", self.command))
        if access != "write":
            return self.send(403, _error(403, "Forbidden", "This API key is for read operations only."))
        body = self.json_body()
        text = body.get("comment") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return self.send(400, _error(400, "Bad Request", "Missing comment"))
        subid = svc._next_comment
        svc._next_comment += 1
        svc.comments.setdefault((etype, eid), []).append(
            {"id": subid, "comment": text, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        return self.send(201, None, {"Location": f"/api/v2/{etype}/{eid}/comments/{subid}"})


ElabftwStandin.handler = _Handler
