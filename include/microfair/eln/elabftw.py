"""A small client for eLabFTW's REST API v2 (https://doc.elabftw.net/api.html).

Only what microfair needs: read an entry, list its comments, add a comment. The API key goes in
the ``Authorization`` header, as eLabFTW expects; it never appears in an error message or a log.
``requests`` is used directly: the official ``elabapi-python`` client is generated for one server
version and pulls in a large dependency tree for three calls.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

log = logging.getLogger(__name__)


class ElnError(RuntimeError):
    """The ELN refused or could not be reached; ``retryable`` says whether a later try may succeed."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status, self.retryable = status, retryable


class ElabftwClient:
    """eLabFTW API v2 at ``base_url`` (with or without ``/api/v2``), authenticated by ``api_key``."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 20.0,
                 session: requests.Session | None = None) -> None:
        root = base_url.rstrip("/")
        self.base_url = root.removesuffix("/api/v2")
        self.api = self.base_url + "/api/v2"
        self._key, self.timeout = api_key, timeout
        self._http = session or requests.Session()

    def __repr__(self) -> str:
        return f"ElabftwClient({self.base_url!r})"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        url = f"{self.api}/{path.lstrip('/')}"
        try:
            resp = self._http.request(method, url, json=body, timeout=self.timeout,
                                      headers={"Authorization": self._key, "Accept": "application/json"})
        except requests.RequestException as exc:
            # The exception text may hold the URL, never the key (it is a header).
            raise ElnError(f"eLabFTW at {self.base_url} unreachable: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            why = _description(resp) or ("the API key was refused" if resp.status_code == 401 else "forbidden")
            raise ElnError(f"eLabFTW refused the API key ({resp.status_code}: {why})", status=resp.status_code,
                           retryable=True)
        if resp.status_code == 404:
            raise ElnError(f"eLabFTW has no {path} ({_description(resp) or 'not found'})", status=404,
                           retryable=False)
        if resp.status_code >= 400:
            raise ElnError(f"eLabFTW answered {resp.status_code} to {method} {path}: {_description(resp)}",
                           status=resp.status_code, retryable=resp.status_code >= 500)
        return resp

    def info(self) -> dict[str, Any]:
        return self._call("GET", "info").json()

    def entry(self, entity_type: str, entry_id: int) -> dict[str, Any]:
        return self._call("GET", f"{entity_type}/{entry_id}").json()

    def comments(self, entity_type: str, entry_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"{entity_type}/{entry_id}/comments").json() or [])

    def add_comment(self, entity_type: str, entry_id: int, text: str) -> int | None:
        """Post a comment; returns its id (from the ``Location`` header eLabFTW answers with)."""
        resp = self._call("POST", f"{entity_type}/{entry_id}/comments", {"comment": text})
        location = resp.headers.get("Location", "")
        tail = location.rstrip("/").rsplit("/", 1)[-1]
        return int(tail) if tail.isdigit() else None


def _description(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        return str(body.get("description") or body.get("message") or "")
    return ""
