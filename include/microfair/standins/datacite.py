"""A local DataCite REST API (``/dois``, ``/clients``) on 127.0.0.1, for demos and tests.

Written from the DataCite REST API reference (https://support.datacite.org/docs/api): JSON:API bodies
(``application/vnd.api+json``), basic auth ``REPOSITORY_ID:PASSWORD`` on every request (401
``{"errors":[{"status","title"}]}`` otherwise).

* ``GET /clients/{repository id}`` → the repository's client record ``{"data": {"id", "type": "clients",
  "attributes": {"name", "symbol", ...}}}`` (the id is the lower-case symbol; either case is found);
  another repository's id → 404.
* ``POST /dois`` with ``prefix`` (auto suffix) or ``doi`` creates a DOI, in state ``draft`` unless an
  ``event`` is given; missing ``titles``/``creators``/... for a findable DOI → 422
  ``{"errors":[{"source","title"}]}``; a taken DOI → 422; a prefix not assigned to the repository → 403.
* ``PUT /dois/{doi}`` updates; ``GET /dois/{doi}`` reads (404 when unknown).
* ``event`` (POST or PUT): ``register`` → ``registered``, ``publish`` → ``findable``, ``hide`` → ``registered``;
  none: a new DOI is a ``draft`` and an existing one keeps its state.

Faults: ``fail_next`` from :class:`~microfair.standins._http.HttpStandin`; its ``log`` lists every request.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from microfair.standins._http import HttpStandin, Req


def _error(code: int, title: str) -> tuple[int, dict[str, Any]]:
    return code, {"errors": [{"status": str(code), "title": title}]}


NOT_FOUND = _error(404, "The resource could not be found.")
STATE_AFTER = {"publish": "findable", "register": "registered", "hide": "registered"}


class DataciteStandin(HttpStandin):
    """``with DataciteStandin("EBI.TEST", "password") as dc: dc.url``; ``dc.dois`` holds the DOIs' attributes."""

    content_type = "application/vnd.api+json"

    def __init__(self, repository_id: str, password: str, prefix: str = "10.80000", *,
                 name: str = "Facility", contact_email: str = "facility@example.org") -> None:
        super().__init__()
        self.repository_id, self.password, self.prefix = repository_id, password, prefix
        self.name, self.contact_email = name, contact_email
        self.dois: dict[str, dict[str, Any]] = {}

    def fault_body(self, code: int) -> dict[str, Any]:
        return _error(code, "Internal server error")[1]

    def client_record(self) -> dict[str, Any]:
        return {"data": {"id": self.repository_id.lower(), "type": "clients", "attributes": {
            "name": self.name, "symbol": self.repository_id.upper(), "contactEmail": self.contact_email,
            "clientType": "repository", "isActive": True, "prefixes": [self.prefix]}}}

    def handle(self, req: Req) -> tuple[int, Any]:
        expected = base64.b64encode(f"{self.repository_id}:{self.password}".encode()).decode()
        if req.headers.get("Authorization") != f"Basic {expected}":
            return _error(401, "Bad credentials.")
        parts = req.path.strip("/").split("/", 1)
        if parts[0] == "clients" and len(parts) == 2 and req.method == "GET":
            return (200, self.client_record()) if parts[1].lower() == self.repository_id.lower() else NOT_FOUND
        if parts[0] != "dois":
            return NOT_FOUND
        doi = parts[1] if len(parts) == 2 else None
        if req.method == "GET" and doi:
            return self._doi(200, doi) if doi in self.dois else NOT_FOUND
        try:
            attrs = req.json()["data"]["attributes"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "You need to provide a payload")
        event = attrs.pop("event", None)
        if req.method == "POST" and doi is None:
            doi = attrs.pop("doi", None) or f"{attrs.pop('prefix', self.prefix)}/{uuid.uuid4().hex[:8]}"
            if doi in self.dois:
                return 422, {"errors": [{"source": "doi", "title": "This DOI has already been taken"}]}
            if not doi.startswith(self.prefix + "/"):
                return _error(403, "prefix not assigned to repository")
            return self._store(201, doi, {"state": "draft"}, attrs, event)
        if req.method == "PUT" and doi:
            if doi not in self.dois:
                return NOT_FOUND
            return self._store(200, doi, self.dois[doi], attrs, event)
        return _error(405, "Method not allowed")

    def _store(self, code: int, doi: str, old: dict[str, Any], attrs: dict[str, Any],
               event: str | None) -> tuple[int, Any]:
        """Merge ``attrs`` into the DOI and apply ``event`` (the states of the REST API's DOI life cycle)."""
        merged = {**old, **attrs, "doi": doi}
        if event in ("publish", "register"):
            missing = [k for k in ("titles", "creators", "publisher", "publicationYear", "url") if not merged.get(k)]
            if missing:
                return 422, {"errors": [{"source": k, "title": "can't be blank"} for k in missing]}
        if event in STATE_AFTER:
            merged["state"] = STATE_AFTER[event]
        self.dois[doi] = merged
        return self._doi(code, doi)

    def _doi(self, code: int, doi: str) -> tuple[int, dict[str, Any]]:
        return code, {"data": {"id": doi, "type": "dois", "attributes": self.dois[doi]}}
