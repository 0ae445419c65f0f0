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

``fail_next("/api/v2", n, "503")`` (from :class:`~microfair.standins._http.HttpStandin`) makes the next
``n`` requests answer ``503`` (a server being upgraded), or reset the connection (``"reset"``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from microfair.standins._http import HttpStandin, Req

ENTITY_TYPES = ("experiments", "items")
_PATH = re.compile(r"^/api/v2/(?P<type>[a-z_]+)/(?P<id>\d+)(?P<comments>/comments)?/?$")


def _error(code: int, message: str, description: str) -> dict[str, Any]:
    return {"code": code, "message": message, "description": description}


class ElabftwStandin(HttpStandin):
    """:param keys: API key -> ``"read"`` or ``"write"``; :param entries: (type, id) -> title of the existing entries."""

    def __init__(self, keys: dict[str, str], entries: dict[tuple[str, int], str] | None = None,
                 version: str = "5.1.0") -> None:
        super().__init__()
        self.keys, self.version = dict(keys), version
        self.entries = {k: {"id": k[1], "title": v} for k, v in (entries or {}).items()}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._next_comment = 1

    def add_entry(self, entity_type: str, entry_id: int, title: str) -> None:
        self.entries[(entity_type, entry_id)] = {"id": entry_id, "title": title}

    def handle(self, req: Req) -> tuple[Any, ...]:
        access = self.keys.get(req.headers.get("Authorization") or "")
        if access is None:
            return 401, _error(401, "Unauthorized", "No corresponding API key found!")
        if req.path.rstrip("/") == "/api/v2/info" and req.method == "GET":
            return 200, {"elabftw_version": self.version, "all_users_count": 1}
        m = _PATH.match(req.path)
        if not m:
            return 404, _error(404, "Not Found", "The requested resource was not found.")
        etype, eid = m["type"], int(m["id"])
        if etype not in ENTITY_TYPES:
            return 400, _error(400, "Bad Request", f"Incorrect endpoint {etype}")
        entry = self.entries.get((etype, eid))
        if entry is None:
            return 404, _error(404, "Nothing to show with this id", "Not Found")
        if not m["comments"]:
            if req.method == "GET":
                return 200, {**entry, "comments": self.comments.get((etype, eid), [])}
            return 405, _error(405, "Method Not Allowed", req.method)
        if req.method == "GET":
            return 200, self.comments.get((etype, eid), [])
        if req.method != "POST":
            return 405, _error(405, "Method Not Allowed", req.method)
        if access != "write":
            return 403, _error(403, "Forbidden", "This API key is for read operations only.")
        try:
            body = req.json()
        except ValueError:
            body = None
        text = body.get("comment") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return 400, _error(400, "Bad Request", "Missing comment")
        subid = self._next_comment
        self._next_comment += 1
        self.comments.setdefault((etype, eid), []).append(
            {"id": subid, "comment": text, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        return 201, None, {"Location": f"/api/v2/{etype}/{eid}/comments/{subid}"}
