"""What every repository target does, in the same steps: the interface, its data and its errors.

A target (BioImage Archive, Dataverse, Zenodo) is driven by :func:`microfair.deposit.targets.run.deposit`:

1. ``validate(study, items)``: local checks, every problem with its path in the study file;
2. ``preflight(study, items)``: token, collection, licence, size and file-count limits, before anything is sent;
3. ``open_draft(study, previous, context)``: create a draft, resume the draft of an earlier run, or open a new
   version of a published record;
4. ``upload(draft, items)``: resumable (a file already there with the same checksum is skipped), each
   checksum the server reports compared with the one computed from the file (itself checked against the
   ledger before anything is sent);
5. ``set_metadata(draft, study)``;
6. ``publish(draft)`` or leave the draft for a person (``publish: false``).

The result is a :class:`Publication`: the persistent identifier, the landing page and the state.
No secret (token, password) ever appears in a message of these errors.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from microfair.deposit.problems import Problem

log = logging.getLogger(__name__)


class RepositoryError(RuntimeError):
    """A repository refused a request for a reason that retrying will not fix."""


class RepositoryAuthError(RepositoryError):
    """The token is missing, wrong (401) or not allowed to do this (403)."""


class CollectionNotFound(RepositoryError):
    """The collection (Dataverse) or community (Zenodo) does not exist."""


class LicenceRefused(RepositoryError):
    """The installation does not accept the study's licence."""


class LimitExceeded(RepositoryError):
    """A file, or the deposit as a whole, is over the installation's limits (found before uploading)."""


class ChecksumMismatch(RepositoryError):
    """The checksum the server computed differs from the file's; the bad copy was removed, nothing published."""


class TransientError(RepositoryError):
    """A 5xx answer or a broken connection: retried with back-off."""


@dataclass(frozen=True)
class DepositItem:
    """One file to deposit: its name in the deposit (``a/b/c.tif``), where it is, what it must hash to."""

    name: str
    local: Path
    size: int
    sha256: str
    md5: str
    uid: str | None = None
    kind: str = "raw"  # raw | companion | metadata (the RO-Crate beside a raw file) | zarr-archive | report

    @property
    def folder(self) -> str:
        return self.name.rsplit("/", 1)[0] if "/" in self.name else ""

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass
class Draft:
    """An open (unpublished) version on the repository."""

    id: str
    pid: str | None
    landing_page: str | None
    version: int = 1
    is_new_version: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Publication:
    """Where a study is deposited: what the ledger, the dashboard, the RO-Crate and the AVUs record."""

    target: str
    state: str  # draft | published
    id: str
    pid: str | None
    landing_page: str | None
    version: int = 1
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> size, sha256, checksum
    metadata_sha256: str | None = None
    published_at: str | None = None
    api: str | None = None
    collection: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> "Publication":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in body.items() if k in known})


@dataclass
class UploadOutcome:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retries: int = 0
    bytes_sent: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"uploaded": len(self.uploaded), "skipped": len(self.skipped), "removed": self.removed,
                "retries": self.retries, "bytes_sent": self.bytes_sent}


class Target(Protocol):
    """A repository client behind the common deposit steps."""

    name: str

    def validate(self, study: Any, items: list[DepositItem]) -> list[Problem]: ...

    def preflight(self, study: Any, items: list[DepositItem]) -> None: ...

    def open_draft(self, study: Any, previous: Publication | None, context: dict[str, Any] | None = None) -> Draft: ...

    def upload(self, draft: Draft, items: list[DepositItem]) -> UploadOutcome: ...

    def set_metadata(self, draft: Draft, study: Any, context: dict[str, Any] | None = None) -> None: ...

    def publish(self, draft: Draft) -> Publication: ...

    def as_draft(self, draft: Draft) -> Publication: ...

    def exists(self, publication: Publication) -> bool: ...


def hash_file(path: Path) -> tuple[int, str, str]:
    """(size, SHA-256, MD5) of a file, read once."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def is_transient(exc: BaseException) -> bool:
    try:
        import httpx

        httpx_errors: tuple[type[BaseException], ...] = (httpx.TransportError,)
    except ImportError:  # pragma: no cover
        httpx_errors = ()
    return isinstance(exc, (TransientError, requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError, ConnectionError, socket.timeout,
                            *httpx_errors))


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, TransientError):
        return str(exc)
    return type(exc).__name__


class Retry:
    """Exponential back-off on 5xx and connection resets (``sleep`` is replaceable for tests)."""

    def __init__(self, service: str, retries: int = 5, backoff_seconds: float = 2.0, max_backoff_seconds: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.service, self.retries, self.backoff_seconds = service, retries, backoff_seconds
        self.max_backoff_seconds, self.sleep = max_backoff_seconds, sleep
        self.count = 0
        self.delays: list[float] = []

    def __call__(self, what: str) -> Retrying:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.count += 1
            self.delays.append(delay)
            log.warning("%s: %s failed (%s); retry %d/%d in %.1f s", self.service, what, describe(exc),
                        state.attempt_number, self.retries, delay)

        return Retrying(stop=stop_after_attempt(self.retries + 1),
                        wait=wait_exponential(multiplier=self.backoff_seconds, min=self.backoff_seconds,
                                              max=self.max_backoff_seconds),
                        retry=retry_if_exception(is_transient), sleep=self.sleep, before_sleep=before_sleep,
                        reraise=True)
