"""Dataverse (Recherche Data Gouv) through its native API: pyDataverse, and requests where it lacks a call.

pyDataverse 0.3.5 (``NativeApi``) makes the dataset calls (collection, create, read, edit metadata,
file list, publish); requests makes those it lacks or makes badly (licences, settings, multipart add
that closes its file, direct upload, ``addFiles``, file delete). Every call goes through one retry
loop (5xx, resets); the API token is sent as ``X-Dataverse-key`` and never appears in a message.

The study → citation block mapping is :mod:`microfair.deposit.dataverse_citation` (table in ``docs/deposit.md``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from microfair.deposit.problems import Problem
from microfair.deposit.study import StudyMetadata
from microfair.deposit.targets.base import (
    ChecksumMismatch,
    CollectionNotFound,
    DepositItem,
    Draft,
    LicenceRefused,
    LimitExceeded,
    Publication,
    RepositoryAuthError,
    RepositoryError,
    Retry,
    TransientError,
    UploadOutcome,
)
from microfair.deposit.dataverse_citation import (  # noqa: F401 - the mapping, re-exported
    biomedical_fields,
    citation_fields,
    dataset_version,
    licence_of,
)
from microfair.deposit.targets.citation import validate_citation

log = logging.getLogger(__name__)

NAME = "dataverse"


# -- the client ---------------------------------------------------------------------------------------------
class DataverseTarget:
    """One Dataverse installation and collection, behind the common deposit steps.

    :param base_url: the installation, e.g. ``https://entrepot.recherche.data.gouv.fr``.
    :param token: the API token (never logged). :param collection: the collection alias.
    :param direct_upload: ``None`` asks the installation (``uploadurls``); ``False`` never uses it.
    :param max_files_per_request: registrations per ``addFiles`` call (RDG: batch beyond 1,000 files).
    :param biomedical: also fill the biomedical block (when the collection has it enabled).
    """

    name = NAME

    def __init__(self, base_url: str, token: str, collection: str, *, direct_upload: bool | None = None,
                 max_files_per_request: int = 1000, biomedical: bool = False, retries: int = 5,
                 backoff_seconds: float = 2.0, timeout: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from pyDataverse.api import NativeApi

        self.base_url = base_url.rstrip("/")
        self.collection = collection
        self._token = token
        self.api = NativeApi(self.base_url, token or None)
        self.direct_upload, self.biomedical = direct_upload, biomedical
        self.max_files_per_request = max_files_per_request
        self.retry = Retry("Dataverse", retries, backoff_seconds, sleep=sleep)
        self.timeout = timeout
        self.publish_polls = 30
        self.http = requests.Session()
        self.http.trust_env = False

    def __repr__(self) -> str:
        return f"DataverseTarget({self.base_url!r}, collection={self.collection!r})"

    # -- plumbing -----------------------------------------------------------------------------------------
    def _check(self, r: Any, what: str) -> Any:
        code = r.status_code
        try:
            body = r.json()
        except ValueError:
            body = {"message": (r.text or "")[:500]}
        message = body.get("message") if isinstance(body, dict) else str(body)
        if code >= 500:
            raise TransientError(f"{what}: HTTP {code}")
        if code in (401, 403):
            raise RepositoryAuthError(f"Dataverse at {self.base_url} refused the API token (HTTP {code}) on {what}: "
                                      f"{message}; check the token of the Dataverse connection")
        if code >= 400:
            raise RepositoryError(f"Dataverse answered HTTP {code} to {what}: {message}")
        return body.get("data") if isinstance(body, dict) else body

    def _py(self, what: str, call: Callable[[], Any]) -> Any:
        """A pyDataverse call (its 401 exception and httpx errors mapped to ours), retried."""
        from pyDataverse.exceptions import ApiAuthorizationError, DatasetNotFoundError, DataverseNotFoundError

        for attempt in self.retry(what):
            with attempt:
                try:
                    r = call()
                except (DatasetNotFoundError, DataverseNotFoundError) as exc:
                    raise RepositoryError(f"Dataverse answered HTTP 404 to {what}: "
                                          f"{str(exc).split('MSG: ', 1)[-1]}") from None
                except ApiAuthorizationError:
                    raise RepositoryAuthError(f"Dataverse at {self.base_url} refused the API token (HTTP 401) on "
                                              f"{what}; check the token of the Dataverse connection") from None
                return self._check(r, what)
        raise AssertionError("unreachable")

    def _rq(self, method: str, path: str, what: str, *, auth: bool = True, files: Callable[[], Any] | None = None,
            **kw: Any) -> Any:
        url = path if "://" in path else f"{self.base_url}/api/v1/{path.lstrip('/')}"
        headers = dict(kw.pop("headers", None) or {})
        if auth and self._token:
            headers["X-Dataverse-key"] = self._token
        for attempt in self.retry(what):
            with attempt:
                opened = files() if files else None
                try:
                    r = self.http.request(method, url, headers=headers, files=opened, timeout=self.timeout, **kw)
                finally:
                    for _name, spec in (opened or {}).items():
                        if len(spec) > 1 and hasattr(spec[1], "close"):
                            spec[1].close()
                return r if kw.get("stream") else self._check(r, what)
        raise AssertionError("unreachable")

    # -- the steps ------------------------------------------------------------------------------------------
    def validate(self, study: StudyMetadata, items: list[DepositItem]) -> list[Problem]:
        return validate_citation(study, NAME)

    def preflight(self, study: StudyMetadata, items: list[DepositItem]) -> None:
        """Token, collection, licence and file-size limit, checked before anything is created or sent."""
        me = self._rq("GET", "users/:me", "GET /api/users/:me")
        log.info("Dataverse: %s as %s", self.base_url, (me or {}).get("identifier"))
        try:
            self._py(f"GET /api/dataverses/{self.collection}", lambda: self.api.get_dataverse(self.collection))
        except RepositoryError as exc:
            if "404" in str(exc):
                raise CollectionNotFound(f"Dataverse at {self.base_url} has no collection {self.collection!r} "
                                         "(the connection's extra 'collection')") from None
            raise
        offered = [x.get("name") for x in self._rq("GET", "licenses", "GET /api/licenses", auth=False) or []
                   if x.get("active", True)]
        lic = licence_of(study)
        if lic and lic["name"] not in offered:
            raise LicenceRefused(f"Dataverse at {self.base_url} does not offer the licence {lic['name']!r} "
                                 f"(license: {study.license}); it offers: {', '.join(offered)}")
        limit = self.max_file_bytes()
        over = [i for i in items if limit is not None and i.size > limit]
        if over:
            raise LimitExceeded(f"{len(over)} file(s) over the installation's limit of {limit} bytes per file "
                                "(:MaxFileUploadSizeInBytes); nothing was uploaded:\n"
                                + "\n".join(f"  - {i.name}: {i.size} bytes" for i in over))

    def max_file_bytes(self) -> int | None:
        try:
            out = self._rq("GET", "info/settings/:MaxFileUploadSizeInBytes", "GET :MaxFileUploadSizeInBytes",
                           auth=False)
        except RepositoryError:
            return None  # not set (404): no limit announced
        try:
            return int((out or {}).get("message"))
        except (TypeError, ValueError):
            return None

    def _dataset(self, pid: str) -> dict[str, Any] | None:
        try:
            return self._py(f"GET dataset {pid}", lambda: self.api.get_dataset(pid))
        except RepositoryError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def landing_page(self, pid: str) -> str:
        return f"{self.base_url}/dataset.xhtml?persistentId={pid}"

    def open_draft(self, study: StudyMetadata, previous: Publication | None,
                   context: dict[str, Any] | None = None) -> Draft:
        if previous and previous.pid:
            ds = self._dataset(previous.pid)
            if ds is not None:
                state = ds["latestVersion"]["versionState"]
                log.info("Dataverse: %s found (%s); continuing it", previous.pid, state)
                return Draft(str(ds["id"]), previous.pid, self.landing_page(previous.pid),
                             version=int(ds["latestVersion"].get("versionNumber") or 0) + (state != "DRAFT"),
                             is_new_version=state != "DRAFT" or previous.state == "published")
            log.warning("Dataverse: %s of an earlier run is gone; creating a new dataset", previous.pid)
        body = json.dumps(dataset_version(study, context, biomedical=self.biomedical))
        try:
            out = self._py(f"POST /api/dataverses/{self.collection}/datasets",
                           lambda: self.api.create_dataset(self.collection, body))
        except RepositoryError as exc:
            text = str(exc)
            if "HTTP 404" in text:
                raise CollectionNotFound(
                    f"Dataverse at {self.base_url} has no collection {self.collection!r}") from None
            if "license" in text.lower():
                raise LicenceRefused(text) from None
            raise
        pid = out["persistentId"]
        log.info("Dataverse: draft dataset %s created in collection %s", pid, self.collection)
        return Draft(str(out["id"]), pid, self.landing_page(pid))

    def remote_files(self, pid: str) -> dict[str, dict[str, Any]]:
        files = self._py(f"GET files of {pid}", lambda: self.api.get_datafiles_metadata(pid, ":latest")) or []
        out = {}
        for f in files:
            df = f.get("dataFile") or {}
            name = f"{f['directoryLabel']}/{f['label']}" if f.get("directoryLabel") else f["label"]
            out[name] = {"id": df.get("id"), "size": df.get("filesize"), "checksum": df.get("checksum") or {}}
        return out

    @staticmethod
    def _matches(item: DepositItem, checksum: dict[str, Any]) -> bool:
        algo, value = (checksum.get("type") or "").upper(), checksum.get("value")
        expected = {"MD5": item.md5, "SHA-256": item.sha256}.get(algo)
        return expected is not None and value == expected

    def _supports_direct(self, pid: str, size: int) -> dict[str, Any] | None:
        if self.direct_upload is False:
            return None
        try:
            return self._rq("GET", "datasets/:persistentId/uploadurls", "GET uploadurls",
                            params={"persistentId": pid, "size": size})
        except RepositoryError as exc:
            if "HTTP 404" in str(exc) and self.direct_upload is None:
                self.direct_upload = False
                return None
            if "exceeds" in str(exc):
                raise LimitExceeded(str(exc)) from None
            raise

    def upload(self, draft: Draft, items: list[DepositItem]) -> UploadOutcome:
        pid = draft.pid or ""
        out = UploadOutcome()
        before = self.retry.count
        there = self.remote_files(pid)
        wanted = {i.name for i in items}
        for name, f in there.items():
            if name not in wanted:
                self._rq("DELETE", f"files/{f['id']}", f"DELETE file {name}")
                out.removed.append(name)
        pending_direct: list[tuple[DepositItem, dict[str, Any]]] = []
        for item in items:
            have = there.get(item.name)
            if have is not None and self._matches(item, have["checksum"]):
                log.info("%s: %s already in %s with the same checksum: skipped", item.uid or "-", item.name, pid)
                out.skipped.append(item.name)
                out.files[item.name] = {"size": item.size, "sha256": item.sha256, "checksum": have["checksum"]}
                continue
            if have is not None:
                log.warning("%s: %s in %s differs (checksum): replacing it", item.uid or "-", item.name, pid)
                self._rq("DELETE", f"files/{have['id']}", f"DELETE file {item.name}")
            direct = self._supports_direct(pid, item.size)
            if direct is not None:
                self._put_direct(item, direct)
                pending_direct.append((item, direct))
            else:
                added = self._add(pid, item)
                self._verify(pid, item, added, out)
            out.uploaded.append(item.name)
            out.bytes_sent += item.size
        for start in range(0, len(pending_direct), self.max_files_per_request):
            batch = pending_direct[start:start + self.max_files_per_request]
            self._register(pid, batch, out)
        out.retries = self.retry.count - before
        return out

    def _add(self, pid: str, item: DepositItem) -> dict[str, Any]:
        meta = {"directoryLabel": item.folder or None, "restrict": "false", "tabIngest": "false",
                "description": f"{item.kind}" + (f" of dataset {item.uid}" if item.uid else "")}
        meta = {k: v for k, v in meta.items() if v is not None}

        def files() -> dict[str, Any]:
            return {"file": (item.basename, open(item.local, "rb")),
                    "jsonData": (None, json.dumps(meta))}

        data = self._rq("POST", "datasets/:persistentId/add", f"add {item.name}", files=files,
                        params={"persistentId": pid})
        log.info("%s: %s uploaded to %s (%d bytes)", item.uid or "-", item.name, pid, item.size)
        return (data or {}).get("files", [{}])[0]

    def _put_direct(self, item: DepositItem, direct: dict[str, Any]) -> None:
        for attempt in self.retry(f"PUT {item.name} to storage"):
            with attempt:
                with open(item.local, "rb") as fh:
                    r = self.http.put(direct["url"], data=fh, timeout=self.timeout,
                                      headers={"x-amz-tagging": "dv-state=temp",
                                               "Content-Length": str(item.size)})
                if r.status_code >= 500:
                    raise TransientError(f"PUT {item.name} to storage: HTTP {r.status_code}")
                if r.status_code >= 400:
                    raise RepositoryError(f"the storage refused {item.name} (HTTP {r.status_code})")
        log.info("%s: %s sent by direct upload (%d bytes)", item.uid or "-", item.name, item.size)

    def _register(self, pid: str, batch: list[tuple[DepositItem, dict[str, Any]]], out: UploadOutcome) -> None:
        entries = [{"storageIdentifier": d["storageIdentifier"], "fileName": i.basename,
                    "directoryLabel": i.folder or None, "mimeType": "application/octet-stream",
                    "checksum": {"@type": "SHA-256", "@value": i.sha256}} for i, d in batch]
        data = self._rq("POST", "datasets/:persistentId/addFiles", f"addFiles ({len(entries)})",
                        files=lambda: {"jsonData": (None, json.dumps(entries))}, params={"persistentId": pid})
        added = {(f.get("directoryLabel", ""), f.get("label")): f for f in (data or {}).get("Files", [])}
        failures = (data or {}).get("failures") or []
        if failures:
            raise RepositoryError(f"Dataverse refused {len(failures)} file(s) of {pid}: "
                                  + "; ".join(str(f.get("message")) for f in failures))
        for item, _d in batch:
            self._verify(pid, item, added.get((item.folder, item.basename), {}), out)

    def _verify(self, pid: str, item: DepositItem, added: dict[str, Any], out: UploadOutcome) -> None:
        df = added.get("dataFile") or {}
        checksum = df.get("checksum") or {}
        if not self._matches(item, checksum):
            if df.get("id") is not None:
                self._rq("DELETE", f"files/{df['id']}", f"DELETE bad copy of {item.name}")
            raise ChecksumMismatch(
                f"{item.uid or '-'}: {item.name} arrived damaged in {pid}: Dataverse computed "
                f"{checksum.get('type')} {checksum.get('value')}, the file has MD5 {item.md5} / SHA-256 "
                f"{item.sha256[:16]}…; the copy was removed and nothing was published. Run the deposit again.")
        out.files[item.name] = {"size": item.size, "sha256": item.sha256, "checksum": checksum}

    def set_metadata(self, draft: Draft, study: StudyMetadata, context: dict[str, Any] | None = None) -> None:
        pid = draft.pid or ""
        body = json.dumps({"fields": citation_fields(study, context)})
        self._py(f"edit metadata of {pid}", lambda: self.api.edit_dataset_metadata(pid, body, replace=True))
        lic = licence_of(study)
        if lic:
            try:
                self._rq("PUT", "datasets/:persistentId/license", f"licence of {pid}", json={"name": lic["name"]},
                         params={"persistentId": pid})
            except RepositoryError as exc:
                if "licen" in str(exc).lower():
                    raise LicenceRefused(str(exc)) from None
                raise

    def publish(self, draft: Draft) -> Publication:
        pid = draft.pid or ""
        ds = self._dataset(pid) or {}
        if (ds.get("latestVersion") or {}).get("versionState") == "DRAFT":
            self._py(f"publish {pid}", lambda: self.api.publish_dataset(pid, release_type="major"))
            ds = self._dataset(pid) or {}
            for _ in range(self.publish_polls):  # 202: publication workflows still running
                if (ds.get("latestVersion") or {}).get("versionState") == "RELEASED":
                    break
                self.retry.sleep(self.retry.backoff_seconds)
                ds = self._dataset(pid) or {}
            else:
                if (ds.get("latestVersion") or {}).get("versionState") != "RELEASED":
                    raise TransientError(f"publish {pid}: still not released (workflows or locks); a retry resumes")
        v = ds.get("latestVersion") or {}
        log.info("Dataverse: %s published as version %s.%s", pid, v.get("versionNumber"), v.get("versionMinorNumber"))
        return Publication(NAME, "published", draft.id, pid, self.landing_page(pid),
                           version=int(v.get("versionNumber") or 1),
                           published_at=dt.datetime.now(dt.timezone.utc).isoformat(), api=self.base_url,
                           collection=self.collection)

    def as_draft(self, draft: Draft) -> Publication:
        pid = draft.pid or ""
        return Publication(NAME, "draft", draft.id, pid, f"{self.landing_page(pid)}&version=DRAFT",
                           version=draft.version, api=self.base_url, collection=self.collection)

    def exists(self, publication: Publication) -> bool:
        ds = self._dataset(publication.pid or "") if publication.pid else None
        return bool(ds) and (ds.get("latestVersion") or {}).get("versionState") == "RELEASED"


def file_size(path: Path) -> int:
    return path.stat().st_size
