"""BioStudies submission API client (the BioImage Archive's back end), over requests and ftplib.

* ``POST /auth/login`` gives a ``sessid``, sent as the ``X-Session-Token`` header afterwards.
* Files go to the user folder: HTTP multipart (``POST /files/user/<dir>``, field ``files``) for
  small files, FTP into the user's secret directory for large ones (resumed with ``REST``
  after a broken connection). A file already there with the same size is skipped.
* ``POST /submissions/async`` returns ``{accNo, version}``; ``GET /submissions/requests/{accNo}/
  {version}/status`` moves to ``POST_PROCESSED`` (done) or ``INVALID`` (rejected).
* 5xx answers and connection resets are retried with exponential back-off.

No secret (password, session token, FTP password, the secret directory) is ever put in a
log message or an exception.
"""

from __future__ import annotations

import ftplib
import hashlib
import logging
import os
import posixpath
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

FINAL_OK = "POST_PROCESSED"
FINAL_BAD = "INVALID"


class BiostudiesError(RuntimeError):
    """A BioStudies request failed for a reason that retrying will not fix."""


class AuthenticationError(BiostudiesError):
    """BioStudies refused the login or the session token."""


class SubmissionRejected(BiostudiesError):
    """BioStudies rejected the submission; ``messages`` holds the server's errors."""

    def __init__(self, summary: str, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__(summary + (":\n" + "\n".join(f"  - {m}" for m in messages) if messages else ""))


class TransientError(BiostudiesError):
    """A 5xx answer or a broken connection: retried with back-off."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    path: str
    size: int
    type: str  # FILE | DIR


@dataclass(frozen=True)
class FtpAccess:
    """The BioStudies FTP server; files land in the user's secret directory (from the login profile)."""

    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="", repr=False)
    timeout: float = 60.0


@dataclass
class UploadReport:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    retries: int = 0
    bytes_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"uploaded": len(self.uploaded), "skipped": len(self.skipped), "resumed": self.resumed,
                "retries": self.retries, "bytes_sent": self.bytes_sent}


def flatten_log(node: Any, depth: int = 0) -> list[str]:
    """The ERROR messages of a BioStudies validation tree ``{level, message, subnodes}``, leaves first."""
    if not isinstance(node, dict):
        return [str(node)] if node else []
    subs = [m for s in node.get("subnodes") or [] for m in flatten_log(s, depth + 1)]
    msg = node.get("message")
    if subs:
        return subs
    if msg and node.get("level", "ERROR") in ("ERROR", "FATAL"):
        return [msg]
    return [msg] if msg and depth == 0 else []


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (TransientError, requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError, ConnectionError, socket.timeout,
                            ftplib.error_temp, EOFError))


class BiostudiesClient:
    """One BioStudies user session.

    :param base_url: the submission API, e.g. ``https://www.ebi.ac.uk/biostudies/submissions/api``.
    :param login: the BioStudies account (e-mail). :param password: its password (never logged).
    :param ftp: the FTP server for large files; without it every file goes over HTTP.
    :param ftp_threshold_bytes: files larger than this go through FTP.
    :param retries: retries of one request on 5xx and connection resets.
    :param backoff_seconds: first delay; it doubles after each failure (capped at ``max_backoff_seconds``).
    :param sleep: the sleep function (tests pass a recorder).
    """

    def __init__(self, base_url: str, login: str, password: str, *, ftp: FtpAccess | None = None,
                 ftp_threshold_bytes: int = 100 << 20, compare_bytes_below: int = 64 << 20, retries: int = 5,
                 backoff_seconds: float = 2.0,
                 max_backoff_seconds: float = 300.0, timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.login_name = login
        self._password = password
        self.ftp = ftp
        self.ftp_threshold_bytes = ftp_threshold_bytes
        self.compare_bytes_below = compare_bytes_below
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout = timeout
        self.sleep = sleep
        self.http = session or requests.Session()
        self.http.trust_env = False
        self._token: str | None = None
        self._secret: str | None = None
        self.retry_count = 0
        self.delays: list[float] = []

    def __repr__(self) -> str:
        return f"BiostudiesClient({self.base_url!r}, login={self.login_name!r})"

    # -- plumbing -------------------------------------------------------------------------------------------
    def _retrying(self, what: str) -> Retrying:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.retry_count += 1
            self.delays.append(delay)
            log.warning("BioStudies: %s failed (%s); retry %d/%d in %.1f s", what, _describe(exc),
                        state.attempt_number, self.retries, delay)

        return Retrying(stop=stop_after_attempt(self.retries + 1),
                        wait=wait_exponential(multiplier=self.backoff_seconds, min=self.backoff_seconds,
                                              max=self.max_backoff_seconds),
                        retry=retry_if_exception(_is_transient), sleep=self.sleep, before_sleep=before_sleep,
                        reraise=True)

    def _request(self, method: str, path: str, *, auth: bool = True, expect_json: bool = True,
                 files: Callable[[], Any] | None = None, **kw: Any) -> Any:
        """One API call, retried on 5xx/resets; re-logs in once when the session token expired."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        base_headers = dict(kw.pop("headers", None) or {})
        relogged = False
        for attempt in self._retrying(f"{method} {path}"):
            with attempt:
                if auth and self._token is None:
                    self.login()
                headers = dict(base_headers)
                if auth:
                    headers["X-Session-Token"] = self._token or ""
                opened = files() if files else None
                try:
                    r = self.http.request(method, url, headers=headers, timeout=self.timeout,
                                          files=opened, **kw)
                finally:
                    for _field, (_name, fh) in opened or []:
                        fh.close()
                if r.status_code == 401 and auth and not relogged:
                    relogged, self._token = True, None
                    log.info("BioStudies: session expired; logging in again as %s", self.login_name)
                    raise TransientError("session expired")
                return self._check(r, method, path, expect_json)
        raise AssertionError("unreachable")

    def _check(self, r: requests.Response, method: str, path: str, expect_json: bool) -> Any:
        if r.status_code >= 500:
            raise TransientError(f"{method} {path}: HTTP {r.status_code}")
        if r.status_code == 401:
            raise AuthenticationError(f"BioStudies refused the session of {self.login_name} (HTTP 401) on {path}")
        if r.status_code >= 400:
            body: Any
            try:
                body = r.json()
            except ValueError:
                body = r.text[:2000]
            messages = flatten_log(body.get("log")) if isinstance(body, dict) and "log" in body else [str(body)]
            raise SubmissionRejected(f"BioStudies answered HTTP {r.status_code} to {method} {path}", messages)
        if not expect_json:
            return r
        try:
            return r.json() if r.content else None
        except ValueError:
            return r.text

    # -- session --------------------------------------------------------------------------------------------
    def login(self) -> dict[str, Any]:
        """Log in; keep the session token and the FTP secret directory. Returns the profile without them."""
        url = f"{self.base_url}/auth/login"
        for attempt in self._retrying("login"):
            with attempt:
                r = self.http.post(url, json={"login": self.login_name, "password": self._password},
                                   timeout=self.timeout)
                if r.status_code >= 500:
                    raise TransientError(f"login: HTTP {r.status_code}")
                if r.status_code in (401, 403) or (r.status_code == 400 and "password" in r.text.lower()):
                    raise AuthenticationError(
                        f"BioStudies refused the login of {self.login_name!r} (HTTP {r.status_code}): "
                        "check the user and password of the BioStudies connection")
                if r.status_code >= 400:
                    raise BiostudiesError(f"BioStudies login of {self.login_name!r} failed: HTTP {r.status_code}")
                profile = r.json()
        token = profile.get("sessid")
        if not token:
            raise AuthenticationError(f"BioStudies login of {self.login_name!r} returned no session")
        self._token, self._secret = token, profile.get("secret")
        log.info("BioStudies: logged in as %s", self.login_name)
        return {k: v for k, v in profile.items() if k not in ("sessid", "secret")}

    def logout(self) -> None:
        if self._token:
            try:
                self.http.post(f"{self.base_url}/auth/logout", json={"sessid": self._token}, timeout=self.timeout)
            except requests.RequestException:
                pass
            self._token = None

    # -- user folder ----------------------------------------------------------------------------------------
    def list_files(self, folder: str = "") -> list[RemoteFile]:
        try:
            items = self._request("GET", f"files/user/{folder.strip('/')}")
        except SubmissionRejected as exc:
            if "404" in str(exc):
                return []
            raise
        return [RemoteFile(i["name"], i.get("path", ""), int(i.get("size") or 0), i.get("type", "FILE"))
                for i in items or []]

    def remote_sha256(self, remote: str) -> str:
        """SHA-256 of a file in the user folder (``GET /files/user/<dir>?fileName=``, streamed)."""
        folder, name = posixpath.split(remote)
        r = self._request("GET", f"files/user/{folder}", params={"fileName": name}, expect_json=False,
                          stream=True)
        h = hashlib.sha256()
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
        return h.hexdigest()

    def same_content(self, local: Path, remote: str) -> bool:
        with open(local, "rb") as fh:
            local_sha = hashlib.file_digest(fh, "sha256").hexdigest()
        return self.remote_sha256(remote) == local_sha

    def make_folders(self, folder: str) -> None:
        """Create ``a/b/c`` in the user folder, level by level (existing levels are fine)."""
        parent = ""
        for part in [p for p in folder.strip("/").split("/") if p]:
            names = {f.name for f in self.list_files(parent) if f.type == "DIR"}
            if part not in names:
                self._request("POST", f"folder/user/{parent}", params={"folder": part}, expect_json=False)
            parent = posixpath.join(parent, part) if parent else part

    def upload_http(self, local: Path, remote: str) -> None:
        folder, name = posixpath.split(remote)

        def files() -> list[tuple[str, tuple[str, Any]]]:
            return [("files", (name, open(local, "rb")))]

        self._request("POST", f"files/user/{folder}", files=files, expect_json=False)

    def delete_file(self, remote: str) -> None:
        folder, name = posixpath.split(remote)
        self._request("DELETE", f"files/user/{folder}", params={"fileName": name}, expect_json=False)

    def upload_ftp(self, local: Path, remote: str) -> bool:
        """Upload through FTP, resuming a partial upload; True when it resumed."""
        if self.ftp is None:
            raise BiostudiesError("no FTP server configured for large files")
        if self._secret is None:
            self.login()
        size = local.stat().st_size
        resumed = False
        for attempt in self._retrying(f"FTP upload of {remote}"):
            with attempt:
                ftp = ftplib.FTP(timeout=self.ftp.timeout)
                try:
                    ftp.connect(self.ftp.host, self.ftp.port)
                    try:
                        ftp.login(self.ftp.user, self.ftp.password)
                    except ftplib.error_perm as exc:
                        raise AuthenticationError(f"the BioStudies FTP server refused user {self.ftp.user!r}: "
                                                  f"{str(exc).split(' ', 1)[0]}") from None
                    ftp.voidcmd("TYPE I")
                    ftp.cwd(self._secret or "")
                    folder, name = posixpath.split(remote)
                    for part in [p for p in folder.split("/") if p]:
                        try:
                            ftp.cwd(part)
                        except ftplib.error_perm:
                            ftp.mkd(part)
                            ftp.cwd(part)
                    try:
                        have = ftp.size(name) or 0
                    except ftplib.error_perm:
                        have = 0
                    if have == size:
                        return resumed
                    offset = have if 0 < have < size else 0
                    with open(local, "rb") as fh:
                        fh.seek(offset)
                        if offset:
                            resumed = True
                            log.info("BioStudies: resuming FTP upload of %s at %d of %d bytes", remote, offset, size)
                        ftp.storbinary(f"STOR {name}", fh, blocksize=1 << 20, rest=offset or None)
                    try:
                        ftp.quit()
                    except (ftplib.Error, OSError):
                        pass
                finally:
                    ftp.close()
        return resumed

    def upload_files(self, files: Iterable[tuple[Path, str, str]], *,
                     on_uploaded: Callable[[Path, str, str], None] | None = None,
                     force: Iterable[str] = ()) -> UploadReport:
        """Upload ``(local, remote, uid)`` triples; skip those already there with the same content.

        A file of at most ``compare_bytes_below`` bytes (a file list, a small image) whose remote copy has
        the same size is downloaded and compared by SHA-256 (a file list whose checksums changed keeps its
        size); a larger one is skipped on an equal size, and ``force`` names remote paths to send again
        even then (the caller knows from the ledger that their content changed).
        """
        report = UploadReport()
        before = self.retry_count
        force = set(force)
        listings: dict[str, dict[str, RemoteFile]] = {}
        for local, remote, uid in files:
            folder, name = posixpath.split(remote)
            if folder not in listings:
                self.make_folders(folder)
                listings[folder] = {f.name: f for f in self.list_files(folder)}
            size = local.stat().st_size
            there = listings[folder].get(name)
            if there is not None and there.size == size and remote not in force \
                    and (size > self.compare_bytes_below or self.same_content(local, remote)):
                log.info("%s: %s already in the BioStudies user folder (%d bytes): skipped", uid, remote, size)
                report.skipped.append(remote)
            else:
                if self.ftp is not None and size > self.ftp_threshold_bytes:
                    if there is not None and (there.size >= size or remote in force):
                        self.delete_file(remote)  # a different file of that name: start over
                    if self.upload_ftp(local, remote):
                        report.resumed.append(remote)
                    via = "ftp"
                else:
                    self.upload_http(local, remote)
                    via = "http"
                report.uploaded.append(remote)
                report.bytes_sent += size
                log.info("%s: uploaded %s (%d bytes) by %s", uid, remote, size, via)
            if on_uploaded:
                on_uploaded(local, remote, uid)
        report.retries = self.retry_count - before
        return report

    # -- submissions ----------------------------------------------------------------------------------------
    def submit_async(self, pagetab: dict[str, Any], **params: Any) -> tuple[str, int]:
        """Submit a PageTab JSON; returns ``(accNo, version)`` of the submission request."""
        import json

        body = json.dumps(pagetab, ensure_ascii=False).encode("utf-8")
        out = self._request("POST", "submissions/async", data=body, params=params or None,
                            headers={"Submission_Type": "application/json", "Content-Type": "application/json"})
        return str(out["accNo"]), int(out["version"])

    def status(self, accno: str, version: int) -> str:
        out = self._request("GET", f"submissions/requests/{accno}/{version}/status", expect_json=False)
        text = out.text.strip()
        return text.strip('"') if not text.startswith("{") else out.json().get("status", text)

    def errors(self, accno: str, version: int) -> list[str]:
        try:
            out = self._request("GET", f"submissions/requests/{accno}/{version}/errors")
        except BiostudiesError:
            return []
        if isinstance(out, dict) and "log" in out:
            return flatten_log(out["log"])
        return [str(m) for m in (out or [])]

    def wait(self, accno: str, version: int, *, poll_seconds: float = 30.0, timeout_seconds: float = 86400.0,
             clock: Callable[[], float] = time.monotonic) -> str:
        """Poll until ``POST_PROCESSED``; raise :class:`SubmissionRejected` on ``INVALID``."""
        deadline = clock() + timeout_seconds
        while True:
            state = self.status(accno, version)
            if state == FINAL_OK:
                return state
            if state == FINAL_BAD:
                raise SubmissionRejected(f"BioStudies rejected {accno} version {version} (INVALID)",
                                         self.errors(accno, version))
            if clock() > deadline:
                raise BiostudiesError(f"{accno} version {version} still {state} after {timeout_seconds:.0f} s")
            self.sleep(poll_seconds)

    def get_submission(self, accno: str) -> dict[str, Any]:
        return self._request("GET", f"submissions/{accno}.json")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, requests.RequestException):
        inner = exc.__context__ or exc
        return f"{type(exc).__name__} ({type(inner).__name__})"
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, TransientError) else type(exc).__name__


def file_size(path: str | os.PathLike[str]) -> int:
    return Path(path).stat().st_size
