"""Release a quarantined dataset so that the next ingest run takes it again.

A plain re-run (clearing the failed task) cannot succeed on a quarantined dataset: the
stage refuses a dataset in state ``quarantined``, and the task retries for nothing. A
release is the operator's decision instead, offered when the landing-zone file changed
since the ledger saw it, or when the operator confirms that the cause was fixed elsewhere
(for example the naming policy or a reader). It puts the dataset back to ``discovered``
(the next scan collects it again, under the same uid) and writes an audit entry.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from microfair.ledger import Ledger

log = logging.getLogger(__name__)

RELEASE_ACTION = "release_quarantine"
RELEASED_STATE = "discovered"


@dataclass(frozen=True)
class LandingFile:
    path: str
    exists: bool
    size: int | None
    mtime_ns: int | None
    ledger_size: int | None
    ledger_mtime_ns: int | None

    @property
    def changed(self) -> bool:
        """The file is there and its size or mtime differs from what the ledger recorded."""
        return self.exists and (self.size != self.ledger_size or self.mtime_ns != self.ledger_mtime_ns)

    def describe(self) -> str:
        if not self.exists:
            return f"{self.path} is no longer in the landing zone"
        if self.changed:
            return (f"{self.path} changed since it was quarantined "
                    f"(size {self.ledger_size} → {self.size} bytes, mtime differs: "
                    f"{'yes' if self.mtime_ns != self.ledger_mtime_ns else 'no'})")
        return f"{self.path} is unchanged since it was quarantined ({self.size} bytes)"


def landing_file(ds: Any) -> LandingFile:
    """The dataset's landing-zone file now, against the size and mtime in the ledger."""
    try:
        st = os.stat(ds.source_path)
        size, mtime, exists = st.st_size, st.st_mtime_ns, True
    except OSError:
        size = mtime = None
        exists = False
    return LandingFile(ds.source_path, exists, size, mtime, ds.size_bytes, ds.source_mtime_ns)


class ReleaseRefused(ValueError):
    """The dataset cannot be released (not quarantined, or unchanged and not confirmed)."""


def release_from_quarantine(ledger: Ledger, uid: str, actor: str, *, confirmed_unchanged: bool = False,
                            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put a quarantined dataset back to ``discovered``; returns the audit details.

    Refused when the dataset is not quarantined, when its landing file is gone, or when the file is
    unchanged and ``confirmed_unchanged`` is false. The quarantined copy and its reason file stay
    where they are (quarantine never deletes).
    """
    ds = ledger.require(uid)
    if ds.state != "quarantined":
        raise ReleaseRefused(f"{uid} is not quarantined (state {ds.state!r})")
    newer = newer_version(ledger, ds)
    if newer is not None:
        raise ReleaseRefused(f"{uid}: the changed file was already taken up as dataset {newer}; "
                             "that dataset is the one to follow")
    lf = landing_file(ds)
    if not lf.exists:
        raise ReleaseRefused(f"{uid}: {lf.describe()}; there is nothing to ingest again")
    if not lf.changed and not confirmed_unchanged:
        raise ReleaseRefused(f"{uid}: {lf.describe()}; confirm that the cause was fixed to retry it as it is")
    details = {"previous_reason": ds.reason, "source": ds.source_path, "file_changed": lf.changed,
               "confirmed_unchanged": bool(confirmed_unchanged and not lf.changed),
               "ledger_size": lf.ledger_size, "size": lf.size, **(extra or {})}
    ledger.update(uid, state=RELEASED_STATE,
                  reason=f"released from quarantine by {actor}; waiting for the next ingest run")
    ledger.audit(actor, RELEASE_ACTION, uid, details)
    log.info("%s: released from quarantine by %s (%s)", uid, actor, lf.describe())
    return details


def newer_version(ledger: Ledger, ds: Any) -> str | None:
    """The uid of a newer dataset of the same landing file (a changed file becomes a new version), if any."""
    from sqlalchemy import select

    from microfair.ledger import Dataset

    with ledger.session() as s:
        return s.scalar(select(Dataset.uid).where(Dataset.source_path == ds.source_path, Dataset.id > ds.id)
                        .order_by(Dataset.id.desc()).limit(1))


def record_trigger(ledger: Ledger, uid: str, actor: str, outcome: dict[str, Any]) -> None:
    """Add the outcome of the triggered ingest run to the dataset's latest release entry."""
    from sqlalchemy import select

    from microfair.ledger import AuditEntry, Dataset

    with ledger.session() as s:
        entry = s.scalar(select(AuditEntry).join(Dataset, Dataset.id == AuditEntry.dataset_id)
                         .where(Dataset.uid == uid, AuditEntry.action == RELEASE_ACTION)
                         .order_by(AuditEntry.id.desc()).limit(1))
        if entry is not None:
            entry.details = {**(entry.details or {}), "triggered": outcome}


__all__ = ["RELEASE_ACTION", "LandingFile", "ReleaseRefused", "landing_file", "newer_version", "record_trigger",
           "release_from_quarantine"]
