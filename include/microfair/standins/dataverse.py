"""A local Dataverse native API (Recherche Data Gouv runs Dataverse) on 127.0.0.1, for demos and tests.

Built from the native-API guide (IQSS/dataverse ``doc/sphinx-guides/source/api/native-api.rst`` and
``developers/s3-direct-upload-api.rst``); see ``../shared/reference/INTERFACES.md``:

* auth: header ``X-Dataverse-key`` (or ``?key=``); a token the server does not know → 401
  ``{"status":"ERROR","message":"Bad API key"}``; a known user without permission on the collection → 403.
* ``GET /api/info/version``, ``GET /api/info/settings/:MaxFileUploadSizeInBytes``, ``GET /api/licenses``,
  ``GET /api/users/:me``, ``GET /api/dataverses/{alias}`` (404 when unknown).
* ``POST /api/dataverses/{alias}/datasets`` (native JSON) → **201** ``{"status":"OK","data":{"id","persistentId"}}``;
  missing required citation fields → 400 ``Validation Failed``; a licence not offered → 400.
* ``GET /api/datasets/:persistentId/?persistentId=`` → the dataset with ``latestVersion``
  (``versionState`` DRAFT or RELEASED); ``…/versions/{:latest|:draft}/files``.
* ``PUT …/editMetadata?replace=true`` (``{"fields":[…]}``), ``PUT …/license`` (``{"name":…}``).
* ``POST …/add`` (multipart ``file`` + ``jsonData``) → 200 with ``files[].dataFile.checksum {type,value}``;
  over ``:MaxFileUploadSizeInBytes`` → 400. With ``direct_upload=True``: ``GET …/uploadurls?size=`` →
  ``{url, partSize, storageIdentifier}``, ``PUT`` the bytes there, then ``POST …/addFiles`` (a JSON array,
  at most ``max_files_per_request`` entries) with the storage identifiers and checksums.
* ``DELETE /api/files/{id}`` removes a file from the draft. Adding to a released dataset opens a new draft.
* ``POST …/actions/:publish?type=major|minor`` → 200; the first release must be major. With
  ``publish_workflow_polls = n``: 202, and the version stays DRAFT for the next ``n`` reads (a workflow runs).

Faults: ``fail_next`` (5xx, resets; :mod:`microfair.standins._http`) and ``corrupt_next(n)``: the next ``n``
stored files get a different checksum than their bytes (a storage fault the client must catch).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from microfair.standins._http import HttpStandin, Req

REQUIRED = {"title": "Title", "author": "Author Name", "datasetContact": "Point of Contact E-mail",
            "dsDescription": "Description Text", "subject": "Subject"}
DEFAULT_LICENCES = [("CC0 1.0", "http://creativecommons.org/publicdomain/zero/1.0"),
                    ("CC BY 4.0", "http://creativecommons.org/licenses/by/4.0")]


def ok(data: Any) -> dict[str, Any]:
    return {"status": "OK", "data": data}


def error(message: str) -> dict[str, Any]:
    return {"status": "ERROR", "message": message}


@dataclass
class DvFile:
    id: int
    label: str
    directory: str
    size: int
    checksum: str
    content_type: str = "application/octet-stream"
    storage_identifier: str = ""

    def json(self, algo: str) -> dict[str, Any]:
        df = {"id": self.id, "persistentId": "", "filename": self.label, "contentType": self.content_type,
              "filesize": self.size, "storageIdentifier": self.storage_identifier,
              "checksum": {"type": algo, "value": self.checksum}}
        if algo == "MD5":
            df["md5"] = self.checksum
        out: dict[str, Any] = {"label": self.label, "restricted": False, "version": 1, "dataFile": df}
        if self.directory:
            out["directoryLabel"] = self.directory
        return out


@dataclass
class DvVersion:
    state: str  # DRAFT | RELEASED
    major: int | None
    minor: int | None
    fields: list[dict[str, Any]]
    license: dict[str, Any] | None
    files: list[DvFile] = field(default_factory=list)
    blocks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class DvDataset:
    id: int
    pid: str
    collection: str
    owner: str
    versions: list[DvVersion]

    @property
    def latest(self) -> DvVersion:
        return self.versions[-1]

    def draft(self) -> DvVersion:
        """The draft, opened from the latest release when there is none (as Dataverse does on an edit)."""
        if self.latest.state != "DRAFT":
            v = self.latest
            self.versions.append(DvVersion("DRAFT", None, None, json.loads(json.dumps(v.fields)), v.license,
                                           list(v.files), json.loads(json.dumps(v.blocks))))
        return self.latest


class DataverseStandin(HttpStandin):
    """``with DataverseStandin({"token": "user"}, collections={"facility": {"user"}}) as dv: dv.url``."""

    def __init__(self, tokens: dict[str, str], *, collections: dict[str, set[str]] | None = None,
                 licences: list[tuple[str, str]] | None = None, max_file_bytes: int | None = None,
                 max_files_per_request: int = 1000, checksum_algorithm: str = "MD5",
                 direct_upload: bool = False, metadata_blocks: tuple[str, ...] = ("citation", "biomedical"),
                 authority: str = "10.5072/FK2") -> None:
        super().__init__()
        self.tokens = dict(tokens)
        self.collections = {k: set(v) for k, v in (collections or {"root": set(tokens.values())}).items()}
        self.licences = licences or list(DEFAULT_LICENCES)
        self.max_file_bytes, self.max_files_per_request = max_file_bytes, max_files_per_request
        self.checksum_algorithm, self.direct_upload = checksum_algorithm, direct_upload
        self.metadata_blocks, self.authority = metadata_blocks, authority
        self.datasets: dict[str, DvDataset] = {}
        self.blobs: dict[str, bytes] = {}  # file id / storage identifier -> bytes
        self._ids = itertools.count(1)
        self._corrupt = 0
        #: publish answers 202 and the version stays DRAFT for this many looks (0: released at once)
        self.publish_workflow_polls = 0
        self._pending: dict[str, tuple[int, str]] = {}

    # -- helpers for tests ------------------------------------------------------------------------------
    def corrupt_next(self, n: int = 1) -> None:
        with self.lock:
            self._corrupt += n

    def dataset(self, pid: str) -> DvDataset:
        return self.datasets[pid]

    def file_bytes(self, pid: str, name: str) -> bytes:
        for f in self.datasets[pid].latest.files:
            if (f"{f.directory}/{f.label}" if f.directory else f.label) == name:
                return self.blobs[str(f.id)]
        raise KeyError(name)

    def published(self) -> list[str]:
        return [pid for pid, d in self.datasets.items() if any(v.state == "RELEASED" for v in d.versions)]

    # -- the API ----------------------------------------------------------------------------------------
    def _digest(self, data: bytes) -> str:
        algo = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256, "SHA-1": hashlib.sha1,
                "SHA-512": hashlib.sha512}[self.checksum_algorithm]
        with self.lock:
            if self._corrupt:
                self._corrupt -= 1
                data = data + b"\0"
        return algo(data).hexdigest()

    def _user(self, req: Req) -> str | None:
        token = req.headers.get("X-Dataverse-key") or req.query.get("key")
        return self.tokens.get(token) if token else None

    def _version_json(self, d: DvDataset, v: DvVersion) -> dict[str, Any]:
        blocks = {"citation": {"displayName": "Citation Metadata", "fields": v.fields}}
        for name, fields in v.blocks.items():
            blocks[name] = {"fields": fields}
        out = {"id": d.versions.index(v) + 1, "datasetId": d.id, "datasetPersistentId": d.pid,
               "versionState": v.state, "license": v.license, "metadataBlocks": blocks,
               "files": [f.json(self.checksum_algorithm) for f in v.files]}
        if v.major is not None:
            out.update(versionNumber=v.major, versionMinorNumber=v.minor)
        return out

    def _dataset_json(self, d: DvDataset) -> dict[str, Any]:
        proto, rest = d.pid.split(":", 1)
        return {"id": d.id, "identifier": rest.split("/", 1)[1], "persistentUrl": f"https://doi.org/{rest}",
                "protocol": proto, "authority": rest.split("/", 1)[0], "publisher": "stand-in",
                "latestVersion": self._version_json(d, d.latest)}

    def handle(self, req: Req) -> tuple[int, Any]:
        path = req.path.removeprefix("/api/v1").removeprefix("/api")
        if not req.path.startswith("/api"):
            if req.path.startswith("/s3/") and req.method == "PUT":
                key = req.path[len("/s3/"):]
                if key not in self.blobs or req.query.get("sig") != _sig(key):
                    return 403, None
                self.blobs[key] = req.body
                return 200, None
            return 404, error(f"no page {req.path}")
        if path == "/info/version":
            return 200, ok({"version": "6.4", "build": "stand-in"})
        if path == "/info/settings/:MaxFileUploadSizeInBytes":
            if self.max_file_bytes is None:
                return 404, error("Setting :MaxFileUploadSizeInBytes not found")
            return 200, ok({"message": str(self.max_file_bytes)})
        if path == "/licenses":
            return 200, ok([{"id": i + 1, "name": n, "uri": u, "active": True, "isDefault": i == 0}
                            for i, (n, u) in enumerate(self.licences)])
        token = req.headers.get("X-Dataverse-key") or req.query.get("key")
        user = self._user(req)
        if token and user is None:
            return 401, error("Bad API key")
        if path == "/users/:me":
            if user is None:
                return 401, error("User with token null not found.")
            return 200, ok({"identifier": f"@{user}", "displayName": user, "superuser": False})
        parts = path.strip("/").split("/")
        if parts[0] == "dataverses" and len(parts) >= 2:
            alias = parts[1]
            if alias not in self.collections:
                return 404, error(f"Can't find dataverse with identifier='{alias}'")
            if len(parts) == 2 and req.method == "GET":
                return 200, ok({"alias": alias, "name": alias, "id": list(self.collections).index(alias) + 1})
            if len(parts) == 3 and parts[2] == "datasets" and req.method == "POST":
                if user is None:
                    return 401, error("Please provide a key query parameter (?key=XXX) or via the HTTP header "
                                      "(X-Dataverse-key: XXX)")
                if user not in self.collections[alias]:
                    return 403, error(f"User @{user} is not permitted to perform requested action.")
                return self._create(alias, user, req)
        if parts[0] == "files" and len(parts) == 2 and req.method == "DELETE":
            return self._delete_file(user, int(parts[1]))
        if parts[0] == "datasets" and len(parts) >= 2 and parts[1] == ":persistentId":
            d = self.datasets.get(req.query.get("persistentId", ""))
            if d is None:
                return 404, error(f"Dataset with Persistent ID {req.query.get('persistentId')} not found.")
            if user is None:
                return 401, error("Please provide a key query parameter (?key=XXX) or via the HTTP header "
                                  "(X-Dataverse-key: XXX)")
            if user != d.owner:
                return 403, error(f"User @{user} is not permitted to perform requested action.")
            return self._dataset_call(d, parts[2:], req)
        return 404, error(f"API endpoint does not exist on this server: {req.method} {req.path}")

    def _check_version(self, dv: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str | None]:
        blocks = dv.get("metadataBlocks") or {}
        fields = (blocks.get("citation") or {}).get("fields") or []
        present = {f.get("typeName"): f.get("value") for f in fields}
        missing = []
        for key, label in REQUIRED.items():
            value = present.get(key)
            if key == "datasetContact":
                value = [c for c in value or [] if (c.get("datasetContactEmail") or {}).get("value")]
            if key == "author":
                value = [a for a in value or [] if (a.get("authorName") or {}).get("value")]
            if not value:
                missing.append(f"{label} is required.")
        for name in blocks:
            if name not in self.metadata_blocks:
                missing.append(f"Metadata block {name} is not enabled on this installation.")
        if missing:
            return [], None, "Validation Failed: " + " ".join(missing)
        lic = dv.get("license")
        if lic is not None:
            names = {n for n, _u in self.licences}
            if lic.get("name") not in names:
                return [], None, f"Error parsing Json: Invalid license: {lic.get('name')}"
            lic = {"name": lic["name"], "uri": dict(self.licences)[lic["name"]]}
        else:
            lic = {"name": self.licences[0][0], "uri": self.licences[0][1]}
        return fields, lic, None

    def _create(self, alias: str, user: str, req: Req) -> tuple[int, Any]:
        try:
            dv = req.json()["datasetVersion"]
        except (ValueError, KeyError, TypeError):
            return 400, error("Error parsing Json: datasetVersion expected")
        fields, lic, problem = self._check_version(dv)
        if problem:
            return 400, error(problem)
        blocks = {k: v.get("fields", []) for k, v in (dv.get("metadataBlocks") or {}).items() if k != "citation"}
        with self.lock:
            n = next(self._ids)
            pid = f"doi:{self.authority}/" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                                     for _ in range(6))
            self.datasets[pid] = DvDataset(n, pid, alias, user, [DvVersion("DRAFT", None, None, fields, lic,
                                                                           blocks=blocks)])
        return 201, ok({"id": n, "persistentId": pid})

    def _add(self, d: DvDataset, meta: dict[str, Any], data: bytes | None) -> tuple[int, Any]:
        name = meta.get("fileName") or meta.get("label")
        if data is None:  # direct upload: the bytes are already at the storage identifier
            sid = meta.get("storageIdentifier") or ""
            key = sid.split("://", 1)[-1]
            if key not in self.blobs:
                return 400, error(f"Storage identifier {sid} not found")
            data = self.blobs.pop(key)
            checksum = self._digest(data)
        else:
            checksum = self._digest(data)
        if self.max_file_bytes is not None and len(data) > self.max_file_bytes:
            return 400, error(f"File {name} exceeds the maximum file size of {self.max_file_bytes} bytes.")
        v = d.draft()
        directory = (meta.get("directoryLabel") or "").strip("/")
        if any(f.label == name and f.directory == directory for f in v.files):
            return 400, error(f"Filename already exists: {directory + '/' if directory else ''}{name}")
        with self.lock:
            f = DvFile(next(self._ids), name, directory, len(data), checksum, meta.get("mimeType") or
                       "application/octet-stream", meta.get("storageIdentifier") or f"file://{secrets.token_hex(6)}")
            self.blobs[str(f.id)] = data
            v.files.append(f)
        return 200, f.json(self.checksum_algorithm)

    def _delete_file(self, user: str | None, file_id: int) -> tuple[int, Any]:
        if user is None:
            return 401, error("Please provide a key")
        for d in self.datasets.values():
            if any(f.id == file_id for f in d.latest.files):
                if user != d.owner:
                    return 403, error(f"User @{user} is not permitted to perform requested action.")
                v = d.draft()  # deleting from a released version opens a draft without the file
                v.files = [f for f in v.files if f.id != file_id]
                return 200, ok({"message": f"File {file_id} deleted"})
        return 404, error(f"File {file_id} not found in a draft")

    def _release(self, d: DvDataset, kind: str) -> None:
        released = [v for v in d.versions if v.state == "RELEASED"]
        last = released[-1] if released else None
        v = d.latest
        if kind == "major" or last is None:
            v.major, v.minor = (last.major + 1 if last else 1), 0
        else:
            v.major, v.minor = last.major, (last.minor or 0) + 1
        v.state = "RELEASED"

    def _dataset_call(self, d: DvDataset, rest: list[str], req: Req) -> tuple[int, Any]:
        m = req.method
        if not rest and m == "GET":
            if d.pid in self._pending:
                n, kind = self._pending[d.pid]
                if n <= 1:
                    del self._pending[d.pid]
                    self._release(d, kind)
                else:
                    self._pending[d.pid] = (n - 1, kind)
            return 200, ok(self._dataset_json(d))
        if rest[:1] == ["versions"] and len(rest) == 3 and rest[2] == "files" and m == "GET":
            which = rest[1]
            v = d.latest if which == ":latest" else (d.latest if d.latest.state == "DRAFT" else None)
            if v is None:
                return 404, error("Dataset version :draft of dataset not found")
            return 200, ok([f.json(self.checksum_algorithm) for f in v.files])
        if rest == ["editMetadata"] and m == "PUT":
            try:
                new = req.json()["fields"]
            except (ValueError, KeyError, TypeError):
                return 400, error("Error parsing Json: fields expected")
            v = d.draft()
            if req.query.get("replace") in ("true", "True"):
                names = {f["typeName"] for f in new}
                v.fields = [f for f in v.fields if f["typeName"] not in names] + new
            else:
                v.fields = v.fields + new
            return 200, ok(self._version_json(d, v))
        if rest == ["license"] and m == "PUT":
            name = (req.json() or {}).get("name")
            if name not in dict(self.licences):
                return 400, error(f"Invalid license: {name}")
            d.draft().license = {"name": name, "uri": dict(self.licences)[name]}
            return 200, ok({"message": "License updated"})
        if rest == ["locks"] and m == "GET":
            return 200, ok([])
        if rest == ["uploadurls"] and m == "GET":
            if not self.direct_upload:
                return 404, error("Direct upload not supported for files in this dataset")
            size = int(req.query.get("size") or 0)
            if self.max_file_bytes is not None and size > self.max_file_bytes:
                return 400, error(f"File size {size} exceeds the maximum file size of {self.max_file_bytes} bytes.")
            key = f"stand-in-bucket/{secrets.token_hex(8)}"
            self.blobs[key] = b""
            return 200, ok({"url": f"{self.url}/s3/{key}?sig={_sig(key)}", "partSize": 1 << 30,
                            "storageIdentifier": f"s3://{key}"})
        if rest == ["add"] and m == "POST":
            form = req.form()
            try:
                meta = json.loads(form.get("jsonData", (None, b"{}"))[1] or b"{}")
            except ValueError:
                return 400, error("Error parsing Json: jsonData")
            if "file" in form:
                fname, data = form["file"]
                meta.setdefault("fileName", fname)
                code, out = self._add(d, meta, data)
            elif meta.get("storageIdentifier"):
                code, out = self._add(d, meta, None)
            else:
                return 400, error("A file or a storageIdentifier is required")
            return (201, ok({"files": [out]})) if code == 200 else (code, out)  # 201 Created, as the guide says
        if rest == ["addFiles"] and m == "POST":
            form = req.form()
            try:
                entries = json.loads(form.get("jsonData", (None, b"[]"))[1] or b"[]")
            except ValueError:
                return 400, error("Error parsing Json: jsonData")
            if len(entries) > self.max_files_per_request:
                return 400, error(f"Too many files in one request ({len(entries)}; at most "
                                  f"{self.max_files_per_request})")
            files, failures = [], []
            for e in entries:
                code, out = self._add(d, e, None)
                (files if code == 200 else failures).append(out if code == 200 else
                                                           {"fileName": e.get("fileName"), **out})
            return 200, ok({"Files": files, "Result": {"Total number of files": len(entries),
                                                       "Number of files successfully added": len(files)},
                            "failures": failures})
        if rest == ["actions", ":publish"] and m == "POST":
            kind = req.query.get("type", "minor")
            if d.latest.state != "DRAFT":
                return 400, error("Cannot publish: the dataset has no draft version.")
            released = [v for v in d.versions if v.state == "RELEASED"]
            if not released and kind != "major":
                return 400, error("Cannot publish as minor version. Re-try as major release.")
            if not d.latest.files and not released:
                pass  # Dataverse publishes datasets without files
            if self.publish_workflow_polls:  # a publication workflow runs: 202, released after some looks
                self._pending[d.pid] = (self.publish_workflow_polls, kind)
                return 202, ok({"message": "Publish workflow started; the dataset is locked until it ends"})
            self._release(d, kind)
            return 200, ok(self._dataset_json(d))
        return 404, error(f"API endpoint does not exist on this server: {m} {req.path}")


def _sig(key: str) -> str:
    return hashlib.sha256(b"stand-in-presign:" + key.encode()).hexdigest()[:16]
