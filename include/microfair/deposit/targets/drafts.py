"""Drafts waiting on Dataverse/Zenodo for a person to press publish (the dashboard's ``/publish`` view).

Read from the ledger's ``publications`` records in one query (not one call per dataset), so that the
list costs the same with thirty datasets as with thirty thousand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from microfair.ledger.models import Dataset, Record

RECORD = "publications"


@dataclass
class WaitingDraft:
    """A Dataverse/Zenodo draft complete on the repository, waiting for a person to press publish."""

    target: str
    id: str
    pid: str | None
    landing_page: str | None
    datasets: list[str]
    request: dict[str, Any]
    complete: bool  # every file sent and the metadata set (an interrupted run leaves an incomplete draft)

    @property
    def key(self) -> str:
        return f"{self.target}:{self.id}"


def records_of_kind(ledger: Any, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(uid, body)`` of every record of ``kind``, in dataset order, from a single SELECT."""
    with ledger.session() as s:
        rows = s.execute(select(Dataset.uid, Record.body).join(Dataset, Dataset.id == Record.dataset_id)
                         .where(Record.kind == kind).order_by(Dataset.id)).all()
    for uid, body in rows:
        yield uid, body or {}


def waiting_drafts(ledger: Any) -> list[WaitingDraft]:
    """Every draft recorded in the ledger's ``publications`` records, one per (target, draft id)."""
    found: dict[tuple[str, str], WaitingDraft] = {}
    for uid, record in records_of_kind(ledger, RECORD):
        for target, body in record.items():
            if not isinstance(body, dict) or body.get("state") != "draft" or target == "bia":
                continue
            key = (target, str(body.get("id")))
            if key not in found:
                found[key] = WaitingDraft(target, str(body.get("id")), body.get("pid"), body.get("landing_page"),
                                          list(body.get("datasets") or []), dict(body.get("request") or {}),
                                          bool(body.get("metadata_sha256")))
            if uid not in found[key].datasets:
                found[key].datasets.append(uid)
    return sorted(found.values(), key=lambda d: (d.target, d.id))
