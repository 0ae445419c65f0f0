"""The repositories the shared behaviour checks run against: each stand-in, and a real one when configured.

``MICROFAIR_DATAVERSE_TEST_URL`` + ``MICROFAIR_DATAVERSE_TEST_TOKEN`` (+ ``MICROFAIR_DATAVERSE_TEST_COLLECTION``,
default ``root``), e.g. https://demo.dataverse.org; ``MICROFAIR_ZENODO_TEST_URL`` + ``MICROFAIR_ZENODO_TEST_TOKEN``,
e.g. https://sandbox.zenodo.org. Checks that need fault injection skip on a real installation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from microfair.deposit.dataverse import DataverseTarget
from microfair.deposit.zenodo import ZenodoTarget, zenodo_name
from microfair.standins.dataverse import DataverseStandin
from microfair.standins.zenodo import ZenodoStandin

DV_TOKEN = "dv-token-0d8f-never-logged"
ZENODO_TOKEN = "zenodo-token-77aa-never-logged"
COLLECTION = "facility"


class Sleeps(list):
    def __call__(self, s: float) -> None:
        self.append(s)


@dataclass
class Repo:
    kind: str  # dataverse | zenodo
    url: str
    token: str
    standin: Any = None
    collection: str = COLLECTION
    sleeps: Sleeps = field(default_factory=Sleeps)

    @property
    def live(self) -> bool:
        return self.standin is None

    def target(self, *, token: str | None = None, retries: int = 4, **kw: Any) -> Any:
        token = self.token if token is None else token
        if self.kind == "dataverse":
            kw.setdefault("collection", self.collection)
            return DataverseTarget(self.url, token, kw.pop("collection"), retries=retries, backoff_seconds=1.0,
                                   sleep=self.sleeps, **kw)
        return ZenodoTarget(self.url, token, retries=retries, backoff_seconds=1.0, sleep=self.sleeps, **kw)

    def remote_checksums(self, pub: Any) -> dict[str, str]:
        """{name in the deposit: md5} as the repository lists the files of ``pub``."""
        t = self.target()
        if self.kind == "dataverse":
            return {name: f["checksum"]["value"] for name, f in t.remote_files(pub.pid).items()}
        files = t._call("GET", f"deposit/depositions/{pub.id}/files", "files")  # noqa: SLF001
        return {f["filename"]: f["checksum"] for f in files}

    def remote_name(self, item: Any) -> str:
        return zenodo_name(item) if self.kind == "zenodo" else item.name

    def published_count(self) -> int:
        return len(self.standin.published()) if self.standin else -1


@contextlib.contextmanager
def open_repo(kind: str) -> Iterator[Repo]:
    if kind == "dataverse":
        with DataverseStandin({DV_TOKEN: "curator", "dv-token-other-user": "other"},
                              collections={COLLECTION: {"curator"}, "root": set()}) as dv:
            yield Repo("dataverse", dv.url, DV_TOKEN, dv)
    elif kind == "zenodo":
        with ZenodoStandin({ZENODO_TOKEN: "curator", "zenodo-read-only": "curator"},
                           scopes={"zenodo-read-only": {"deposit:read"}}) as z:
            yield Repo("zenodo", z.url, ZENODO_TOKEN, z)
    elif kind == "dataverse-live":
        yield Repo("dataverse", os.environ["MICROFAIR_DATAVERSE_TEST_URL"],
                   os.environ["MICROFAIR_DATAVERSE_TEST_TOKEN"],
                   collection=os.environ.get("MICROFAIR_DATAVERSE_TEST_COLLECTION", "root"))
    elif kind == "zenodo-live":
        yield Repo("zenodo", os.environ["MICROFAIR_ZENODO_TEST_URL"], os.environ["MICROFAIR_ZENODO_TEST_TOKEN"])
    else:
        raise ValueError(kind)


def repo_kinds() -> list[str]:
    kinds = ["dataverse", "zenodo"]
    if os.environ.get("MICROFAIR_DATAVERSE_TEST_URL") and os.environ.get("MICROFAIR_DATAVERSE_TEST_TOKEN"):
        kinds.append("dataverse-live")
    if os.environ.get("MICROFAIR_ZENODO_TEST_URL") and os.environ.get("MICROFAIR_ZENODO_TEST_TOKEN"):
        kinds.append("zenodo-live")
    return kinds
