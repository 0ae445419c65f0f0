"""A local Zenodo deposition REST API on 127.0.0.1, for demos and tests.

Built from developers.zenodo.org (the legacy deposit API Zenodo still serves; see INTERFACES.md):

* auth: ``Authorization: Bearer <token>`` or ``?access_token=``; unknown token → 401; a token without the
  ``deposit:write`` / ``deposit:actions`` scope → 403. Errors are ``{"status": N, "message": …, "errors": […]}``.
* ``POST /api/deposit/depositions`` (``{}`` or ``{"metadata":…}``) → 201 with ``id``, ``state: unsubmitted``,
  ``metadata.prereserve_doi`` and ``links.{self,html,bucket,files,publish,newversion}``.
* ``GET/PUT /api/deposit/depositions/{id}`` (metadata; an unknown licence or community → 400 with the field).
* ``PUT /api/files/{bucket}/{filename}`` (raw body) → 201 ``{key, size, checksum: "md5:…"}``; over the
  per-record file count or size → 400; into a published record → 403 (files are frozen).
* ``GET /api/deposit/depositions/{id}/files``, ``DELETE …/files/{file_id}`` (a draft only).
* ``POST …/actions/publish`` → 202 (``state: done``, ``doi``, ``links.record_html``); without files or
  a required field → 400 listing each. ``POST …/actions/newversion`` → 201; ``links.latest_draft`` is a
  new draft of the same concept with the files copied.

Faults: ``fail_next`` (:mod:`microfair.standins._http`) and ``corrupt_next(n)`` (the stored checksum
differs from the bytes sent).
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from microfair.standins._http import HttpStandin, Req

LICENCES = ("cc-by-4.0", "cc0-1.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "etalab-2.0", "odbl-1.0")
REQUIRED = ("upload_type", "title", "creators", "description", "access_right", "publication_date")


def err(code: int, message: str, errors: list[dict[str, Any]] | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"status": code, "message": message}
    if errors:
        body["errors"] = errors
    return code, body


@dataclass
class ZFile:
    id: str
    filename: str
    size: int
    checksum: str
    data: bytes = b""

    def json(self, base: str, dep: int) -> dict[str, Any]:
        return {"id": self.id, "filename": self.filename, "filesize": self.size, "checksum": self.checksum,
                "links": {"self": f"{base}/api/deposit/depositions/{dep}/files/{self.id}"}}


@dataclass
class Deposition:
    id: int
    concept: int
    owner: str
    bucket: str
    metadata: dict[str, Any] = field(default_factory=dict)
    files: list[ZFile] = field(default_factory=list)
    state: str = "unsubmitted"
    submitted: bool = False
    latest_draft: int | None = None


class ZenodoStandin(HttpStandin):
    """``with ZenodoStandin({"token": "user"}) as z: z.url``; ``scopes`` per token (default both)."""

    def __init__(self, tokens: dict[str, str], *, scopes: dict[str, set[str]] | None = None,
                 max_files: int = 100, max_bytes: int = 50 * 10**9, communities: tuple[str, ...] = ("microfair",),
                 doi_prefix: str = "10.5072") -> None:
        super().__init__()
        self.tokens = dict(tokens)
        self.scopes = scopes or {}
        self.max_files, self.max_bytes = max_files, max_bytes
        self.communities, self.doi_prefix = communities, doi_prefix
        self.depositions: dict[int, Deposition] = {}
        self._ids = itertools.count(1001)
        self._corrupt = 0

    def corrupt_next(self, n: int = 1) -> None:
        with self.lock:
            self._corrupt += n

    def published(self) -> list[int]:
        return [d.id for d in self.depositions.values() if d.submitted]

    def doi(self, dep_id: int) -> str:
        return f"{self.doi_prefix}/zenodo.{dep_id}"

    # -- the API ----------------------------------------------------------------------------------------
    def _json(self, d: Deposition) -> dict[str, Any]:
        base = self.url
        links = {"self": f"{base}/api/deposit/depositions/{d.id}", "html": f"{base}/deposit/{d.id}",
                 "files": f"{base}/api/deposit/depositions/{d.id}/files", "bucket": f"{base}/api/files/{d.bucket}",
                 "publish": f"{base}/api/deposit/depositions/{d.id}/actions/publish",
                 "newversion": f"{base}/api/deposit/depositions/{d.id}/actions/newversion",
                 "latest_draft": f"{base}/api/deposit/depositions/{d.latest_draft or d.id}",
                 "latest_draft_html": f"{base}/deposit/{d.latest_draft or d.id}"}
        out: dict[str, Any] = {"id": d.id, "record_id": d.id, "conceptrecid": str(d.concept), "state": d.state,
                               "submitted": d.submitted, "title": d.metadata.get("title", ""),
                               "metadata": {**d.metadata, "prereserve_doi": {"doi": self.doi(d.id), "recid": d.id}},
                               "files": [f.json(base, d.id) for f in d.files], "links": links}
        if d.submitted:
            out.update(doi=self.doi(d.id), doi_url=f"https://doi.org/{self.doi(d.id)}",
                       conceptdoi=self.doi(d.concept))
            links.update(record_html=f"{base}/records/{d.id}", doi=f"https://doi.org/{self.doi(d.id)}",
                         latest_html=f"{base}/records/{d.id}")
        return out

    def _auth(self, req: Req, scope: str) -> tuple[str | None, tuple[int, Any] | None]:
        auth = req.headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else req.query.get("access_token")
        user = self.tokens.get(token or "")
        if user is None:
            return None, err(401, "The server could not verify that you are authorized to access the URL requested. "
                                  "You either supplied the wrong credentials (e.g. a bad password), or your browser "
                                  "doesn't understand how to supply the credentials required.")
        if scope not in self.scopes.get(token or "", {"deposit:write", "deposit:actions"}):
            return None, err(403, f"The access token does not have the scope {scope}.")
        return user, None

    def _owned(self, user: str, dep_id: str) -> tuple[Deposition | None, tuple[int, Any] | None]:
        d = self.depositions.get(int(dep_id)) if dep_id.isdigit() else None
        if d is None:
            return None, err(404, "PID does not exist.")
        if d.owner != user:
            return None, err(403, "You do not have permission to access this deposition.")
        return d, None

    def _check_metadata(self, md: dict[str, Any], *, publishing: bool) -> list[dict[str, Any]]:
        errors = []
        lic = md.get("license")
        if lic is not None and str(lic).lower() not in LICENCES:
            errors.append({"field": "metadata.license", "message": f"Invalid license '{lic}'."})
        for c in md.get("communities") or []:
            if c.get("identifier") not in self.communities:
                errors.append({"field": "metadata.communities", "message": f"Community {c.get('identifier')!r} "
                                                                          "does not exist."})
        for i, c in enumerate(md.get("creators") or []):
            if not c.get("name"):
                errors.append({"field": f"metadata.creators.{i}.name", "message": "Field may not be null."})
        if publishing:
            for k in REQUIRED:
                if not md.get(k):
                    errors.append({"field": f"metadata.{k}", "message": "Missing data for required field."})
            if md.get("access_right") in ("open", "embargoed") and not md.get("license"):
                errors.append({"field": "metadata.license", "message": "Missing data for required field."})
        return errors

    def handle(self, req: Req) -> tuple[int, Any]:
        parts = req.path.strip("/").split("/")
        if parts[:1] != ["api"]:
            if parts[:1] == ["records"] and len(parts) == 2:
                return 200, {"record": parts[1]}
            return err(404, "The requested URL was not found on the server.")
        parts = parts[1:]
        if parts[:1] == ["files"] and len(parts) == 3 and req.method == "PUT":
            user, bad = self._auth(req, "deposit:write")
            if bad:
                return bad
            return self._put_file(user or "", parts[1], parts[2], req.body)
        if parts[:2] != ["deposit", "depositions"]:
            return err(404, "The requested URL was not found on the server.")
        rest = parts[2:]
        scope = "deposit:actions" if rest[1:2] == ["actions"] else "deposit:write"
        user, bad = self._auth(req, scope)
        if bad:
            return bad
        assert user is not None
        if not rest:
            if req.method == "GET":
                return 200, [self._json(d) for d in self.depositions.values() if d.owner == user]
            if req.method == "POST":
                md = (req.json() or {}).get("metadata") or {} if req.body else {}
                errors = self._check_metadata(md, publishing=False)
                if errors:
                    return err(400, "Validation error.", errors)
                with self.lock:
                    n = next(self._ids)
                    self.depositions[n] = Deposition(n, n, user, uuid.uuid4().hex, dict(md))
                return 201, self._json(self.depositions[n])
        d, bad = self._owned(user, rest[0])
        if bad:
            return bad
        assert d is not None
        if len(rest) == 1:
            if req.method == "GET":
                return 200, self._json(d)
            if req.method == "PUT":
                if d.submitted:
                    return err(400, "Deposition is not in editable state; use actions/edit or actions/newversion.")
                md = (req.json() or {}).get("metadata") or {}
                errors = self._check_metadata(md, publishing=False)
                if errors:
                    return err(400, "Validation error.", errors)
                d.metadata = dict(md)
                return 200, self._json(d)
        if rest[1:] == ["files"] and req.method == "GET":
            return 200, [f.json(self.url, d.id) for f in d.files]
        if len(rest) == 3 and rest[1] == "files" and req.method == "DELETE":
            if d.submitted:
                return err(403, "Files of a published record are frozen; create a new version.")
            if not any(f.id == rest[2] for f in d.files):
                return err(404, "File does not exist.")
            d.files = [f for f in d.files if f.id != rest[2]]
            return 204, None
        if rest[1:] == ["actions", "publish"] and req.method == "POST":
            if d.submitted:
                return err(400, "Deposition is already published.")
            errors = self._check_metadata(d.metadata, publishing=True)
            if not d.files:
                errors.append({"message": "Minimum one file must be provided.", "code": 10})
            if errors:
                return err(400, "Validation error.", errors)
            d.submitted, d.state = True, "done"
            for other in self.depositions.values():
                if other.concept == d.concept:
                    other.latest_draft = None
            return 202, self._json(d)
        if rest[1:] == ["actions", "newversion"] and req.method == "POST":
            if not d.submitted:
                return err(400, "Only a published record can get a new version.")
            with self.lock:
                open_draft = next((o for o in self.depositions.values() if o.concept == d.concept and not o.submitted),
                                  None)
                if open_draft is None:
                    n = next(self._ids)
                    md = {k: v for k, v in d.metadata.items() if k != "publication_date"}
                    open_draft = Deposition(n, d.concept, user, uuid.uuid4().hex, md,
                                            [ZFile(uuid.uuid4().hex, f.filename, f.size, f.checksum, f.data)
                                             for f in d.files])
                    self.depositions[n] = open_draft
                d.latest_draft = open_draft.id
            return 201, self._json(d)
        return err(405, "The method is not allowed for the requested URL.")

    def _put_file(self, user: str, bucket: str, filename: str, data: bytes) -> tuple[int, Any]:
        d = next((x for x in self.depositions.values() if x.bucket == bucket), None)
        if d is None:
            return err(404, "Bucket does not exist.")
        if d.owner != user:
            return err(403, "You do not have permission to write to this bucket.")
        if d.submitted:
            return err(403, "Files of a published record are frozen; create a new version.")
        others = [f for f in d.files if f.filename != filename]
        if len(others) + 1 > self.max_files:
            return err(400, f"Too many files: a record holds at most {self.max_files} files.")
        if sum(f.size for f in others) + len(data) > self.max_bytes:
            return err(400, f"Bucket quota exceeded: a record holds at most {self.max_bytes} bytes.")
        md5 = hashlib.md5(data + (b"\0" if self._take_corrupt() else b"")).hexdigest()
        f = ZFile(uuid.uuid4().hex, filename, len(data), md5, data)
        d.files = others + [f]
        return 201, {"key": filename, "mimetype": "application/octet-stream", "checksum": f"md5:{md5}",
                     "size": len(data), "version_id": uuid.uuid4().hex,
                     "links": {"self": f"{self.url}/api/files/{bucket}/{filename}"}}

    def _take_corrupt(self) -> bool:
        with self.lock:
            if self._corrupt:
                self._corrupt -= 1
                return True
        return False

    def file_bytes(self, dep_id: int, filename: str) -> bytes:
        return next(f.data for f in self.depositions[dep_id].files if f.filename == filename)
