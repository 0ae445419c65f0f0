"""Zenodo through its deposition REST API (``/api/deposit/depositions``), over requests.

Draft → files into the draft's bucket (``PUT {bucket}/{name}``, streamed) → metadata → publish; a new
version (``actions/newversion``) when the files of a published record changed, since a published
record's files are frozen. Zenodo's per-record limits (100 files, 50 GB; the connection can lower them)
are checked before anything is created or sent. The token goes in the ``Authorization`` header and
never appears in a message.

The study → Zenodo metadata mapping is :func:`zenodo_metadata` (table in ``docs/deposit.md``).
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import time
from collections.abc import Callable
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
from microfair.deposit.targets.citation import (
    affiliation_names,
    citation_name,
    orcid_id,
    release_date,
    spdx,
    validate_citation,
)

log = logging.getLogger(__name__)

NAME = "zenodo"
MAX_FILES = 100
MAX_BYTES = 50 * 10**9
BIA_STUDY_URL = "https://www.ebi.ac.uk/biostudies/bioimages/studies/{accno}"


def zenodo_name(item: DepositItem) -> str:
    """Zenodo records have no folders: ``a/b/c.tif`` becomes ``a__b__c.tif``."""
    return item.name.replace("/", "__")


def zenodo_metadata(study: StudyMetadata, context: dict[str, Any] | None = None, *,
                    community: str | None = None, today: dt.date | None = None) -> dict[str, Any]:
    """The ``metadata`` of a deposition for ``study`` (``context``: ``bia_accession``, ``bia_doi``)."""
    ctx = context or {}
    today = today or dt.date.today()
    release = release_date(study, today)
    creators = []
    for a in study.authors:
        c: dict[str, Any] = {"name": citation_name(a)}
        affs = affiliation_names(a, study)
        if affs:
            c["affiliation"] = "; ".join(affs)
        if orcid_id(a):
            c["orcid"] = orcid_id(a)
        creators.append(c)
    description = "".join(f"<p>{html.escape(p.strip())}</p>"
                          for p in (study.description or "").split("\n\n") if p.strip())
    md: dict[str, Any] = {"upload_type": "dataset", "title": study.title, "creators": creators,
                          "description": description, "keywords": [k for k in study.keywords if k],
                          "publication_date": min(release, today).isoformat(), "language": "eng"}
    lic = spdx(study.license)
    if lic:
        md["license"] = lic.lower()
    if release > today:
        md.update(access_right="embargoed", embargo_date=release.isoformat())
    else:
        md["access_right"] = "open"
    related = [{"identifier": p.doi.removeprefix("https://doi.org/"), "relation": "isSupplementTo",
                "scheme": "doi", "resource_type": "publication-article"} for p in study.publications if p.doi]
    if ctx.get("bia_doi"):
        related.append({"identifier": ctx["bia_doi"], "relation": "isVariantFormOf", "scheme": "doi"})
    if ctx.get("bia_accession"):
        related.append({"identifier": BIA_STUDY_URL.format(accno=ctx["bia_accession"]),
                        "relation": "isVariantFormOf", "scheme": "url"})
    related += [{"identifier": ln.url, "relation": "references", "scheme": "url"} for ln in study.links if ln.url]
    if related:
        md["related_identifiers"] = related
    notes = [x for x in ((study.funding.statement if study.funding else None), study.acknowledgements) if x]
    grants = [f"{g.funder} {g.id}".strip() for g in (study.funding.grants if study.funding else []) if g.funder]
    if grants:
        notes.append("Grants: " + "; ".join(grants))
    if notes:
        md["notes"] = " ".join(notes)
    if community:
        md["communities"] = [{"identifier": community}]
    return md


def validate_zenodo(study: StudyMetadata, items: list[DepositItem]) -> list[Problem]:
    """Local checks: the citation fields Zenodo requires, and file names unique once flattened."""
    problems = validate_citation(study, NAME)
    names = [zenodo_name(i) for i in items]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem("files", f"two files would both be named {n!r} on Zenodo"))
    return problems


class ZenodoTarget:
    """Zenodo (or its sandbox) with a personal access token (scopes ``deposit:write``, ``deposit:actions``).

    :param base_url: ``https://zenodo.org`` or ``https://sandbox.zenodo.org``.
    :param community: optional community identifier to submit the record to.
    :param max_files: / :param max_bytes: the per-record limits (Zenodo: 100 files, 50 GB).
    """

    name = NAME

    def __init__(self, base_url: str, token: str, *, community: str | None = None, max_files: int = MAX_FILES,
                 max_bytes: int = MAX_BYTES, retries: int = 5, backoff_seconds: float = 2.0, timeout: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/api")
        self._token = token
        self.community, self.max_files, self.max_bytes = community, max_files, max_bytes
        self.retry = Retry("Zenodo", retries, backoff_seconds, sleep=sleep)
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False

    def __repr__(self) -> str:
        return f"ZenodoTarget({self.base_url!r})"

    def _call(self, method: str, path: str, what: str, *, expect: tuple[int, ...] = (200, 201, 202, 204),
              body_from: Callable[[], Any] | None = None, **kw: Any) -> Any:
        url = path if "://" in path else f"{self.base_url}/api/{path.lstrip('/')}"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        headers.update(kw.pop("headers", None) or {})
        for attempt in self.retry(what):
            with attempt:
                data = body_from() if body_from else None
                try:
                    r = self.http.request(method, url, headers=headers, data=data, timeout=self.timeout, **kw)
                finally:
                    if hasattr(data, "close"):
                        data.close()
                return self._check(r, what, expect)
        raise AssertionError("unreachable")

    def _check(self, r: requests.Response, what: str, expect: tuple[int, ...]) -> Any:
        code = r.status_code
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = {"message": r.text[:500]}
        if code >= 500:
            raise TransientError(f"{what}: HTTP {code}")
        message = body.get("message", "") if isinstance(body, dict) else ""
        errors = body.get("errors") if isinstance(body, dict) else None
        detail = "; ".join(f"{e.get('field', '')}: {e.get('message')}".lstrip(": ") for e in errors or []) or message
        if code in (401, 403):
            raise RepositoryAuthError(f"Zenodo at {self.base_url} refused the token (HTTP {code}) on {what}: {detail}; "
                                      "check the token (scopes deposit:write and deposit:actions) of the Zenodo "
                                      "connection")
        if code >= 400 or code not in expect:
            if "license" in detail.lower():
                raise LicenceRefused(f"Zenodo refused the licence: {detail}")
            if "communit" in detail.lower():
                raise CollectionNotFound(f"Zenodo: {detail}")
            if "quota" in detail.lower() or "too many files" in detail.lower():
                raise LimitExceeded(f"Zenodo: {detail}")
            raise RepositoryError(f"Zenodo answered HTTP {code} to {what}: {detail}")
        return body

    # -- the steps ------------------------------------------------------------------------------------------
    def validate(self, study: StudyMetadata, items: list[DepositItem]) -> list[Problem]:
        return validate_zenodo(study, items)

    def preflight(self, study: StudyMetadata, items: list[DepositItem]) -> None:
        """Limits first (nothing is sent), then the token (a list of the user's depositions)."""
        total = sum(i.size for i in items)
        problems = []
        if len(items) > self.max_files:
            problems.append(f"{len(items)} files; a Zenodo record holds at most {self.max_files} (ask for the "
                            "OME-Zarr as one archive, or deposit fewer datasets per record)")
        if total > self.max_bytes:
            problems.append(f"{total} bytes; a Zenodo record holds at most {self.max_bytes}")
        big = [i for i in items if i.size > self.max_bytes]
        problems += [f"{i.name}: {i.size} bytes, over the per-record limit" for i in big]
        if problems:
            raise LimitExceeded("over Zenodo's per-record limits; nothing was uploaded:\n"
                                + "\n".join(f"  - {p}" for p in problems))
        self._call("GET", "deposit/depositions", "GET /api/deposit/depositions", params={"size": 1})

    def _deposition(self, dep_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"deposit/depositions/{dep_id}", f"GET deposition {dep_id}")
        except RepositoryError as exc:
            if "HTTP 404" in str(exc) or "HTTP 410" in str(exc):
                return None
            raise

    def _draft_of(self, dep: dict[str, Any], *, new_version: bool) -> Draft:
        doi = (dep.get("metadata", {}).get("prereserve_doi") or {}).get("doi") or dep.get("doi")
        return Draft(str(dep["id"]), doi, dep["links"].get("html"), is_new_version=new_version,
                     extra={"bucket": dep["links"]["bucket"], "concept": dep.get("conceptrecid")})

    def open_draft(self, study: StudyMetadata, previous: Publication | None,
                   context: dict[str, Any] | None = None) -> Draft:
        if previous and previous.id:
            dep = self._deposition(previous.id)
            if dep is not None and not dep.get("submitted"):
                log.info("Zenodo: continuing draft %s", dep["id"])
                return self._draft_of(dep, new_version=previous.state == "published")
            if dep is not None:
                out = self._call("POST", f"deposit/depositions/{dep['id']}/actions/newversion",
                                 f"new version of {dep['id']}")
                latest = out["links"]["latest_draft"].rstrip("/").rsplit("/", 1)[-1]
                new = self._deposition(latest) or {}
                log.info("Zenodo: new version %s of record %s opened", new.get("id"), dep["id"])
                return self._draft_of(new, new_version=True)
            log.warning("Zenodo: deposition %s of an earlier run is gone; creating a new one", previous.id)
        md = zenodo_metadata(study, context, community=self.community)
        dep = self._call("POST", "deposit/depositions", "POST /api/deposit/depositions", json={"metadata": md})
        log.info("Zenodo: draft deposition %s created (reserved DOI %s)", dep["id"],
                 (dep.get("metadata", {}).get("prereserve_doi") or {}).get("doi"))
        return self._draft_of(dep, new_version=False)

    def upload(self, draft: Draft, items: list[DepositItem]) -> UploadOutcome:
        out = UploadOutcome()
        before = self.retry.count
        files = self._call("GET", f"deposit/depositions/{draft.id}/files", f"files of {draft.id}") or []
        there = {f["filename"]: f for f in files}
        wanted = {zenodo_name(i): i for i in items}
        for name, f in there.items():
            if name not in wanted or wanted[name].md5 != f.get("checksum"):
                self._call("DELETE", f"deposit/depositions/{draft.id}/files/{f['id']}", f"DELETE {name}")
                if name not in wanted:
                    out.removed.append(name)
        for name, item in wanted.items():
            have = there.get(name)
            if have is not None and have.get("checksum") == item.md5:
                log.info("%s: %s already in Zenodo draft %s with the same MD5: skipped", item.uid or "-", name,
                         draft.id)
                out.skipped.append(item.name)
                out.files[item.name] = {"size": item.size, "sha256": item.sha256, "checksum": f"md5:{item.md5}"}
                continue
            bucket = draft.extra["bucket"]
            got = self._call("PUT", f"{bucket}/{name}", f"PUT {name}", body_from=lambda i=item: open(i.local, "rb"),
                             headers={"Content-Type": "application/octet-stream", "Content-Length": str(item.size)})
            checksum = (got or {}).get("checksum", "")
            if checksum != f"md5:{item.md5}":
                self._remove(draft, name)
                raise ChecksumMismatch(
                    f"{item.uid or '-'}: {name} arrived damaged in Zenodo draft {draft.id}: Zenodo computed "
                    f"{checksum}, the file has md5:{item.md5}; the copy was removed and nothing was published. "
                    "Run the deposit again.")
            log.info("%s: %s uploaded to Zenodo draft %s (%d bytes)", item.uid or "-", name, draft.id, item.size)
            out.uploaded.append(item.name)
            out.bytes_sent += item.size
            out.files[item.name] = {"size": item.size, "sha256": item.sha256, "checksum": checksum}
        out.retries = self.retry.count - before
        return out

    def _remove(self, draft: Draft, name: str) -> None:
        for f in self._call("GET", f"deposit/depositions/{draft.id}/files", f"files of {draft.id}") or []:
            if f["filename"] == name:
                self._call("DELETE", f"deposit/depositions/{draft.id}/files/{f['id']}", f"DELETE {name}")

    def set_metadata(self, draft: Draft, study: StudyMetadata, context: dict[str, Any] | None = None) -> None:
        md = zenodo_metadata(study, context, community=self.community)
        self._call("PUT", f"deposit/depositions/{draft.id}", f"metadata of {draft.id}", json={"metadata": md})

    def publish(self, draft: Draft) -> Publication:
        out = self._call("POST", f"deposit/depositions/{draft.id}/actions/publish", f"publish {draft.id}",
                         expect=(202,))
        links = out.get("links") or {}
        log.info("Zenodo: %s published as %s", draft.id, out.get("doi"))
        return Publication(NAME, "published", str(out["id"]), out.get("doi"),
                           links.get("record_html") or links.get("html"),
                           published_at=dt.datetime.now(dt.timezone.utc).isoformat(), api=self.base_url,
                           collection=self.community)

    def as_draft(self, draft: Draft) -> Publication:
        return Publication(NAME, "draft", draft.id, draft.pid, draft.landing_page, api=self.base_url,
                           collection=self.community)

    def exists(self, publication: Publication) -> bool:
        dep = self._deposition(publication.id) if publication.id else None
        return bool(dep) and bool(dep.get("submitted"))
