"""The copies themselves, checked just before the retention robot deletes a landing file.

The 3-2-1 verdict is built from ledger records. Before a deletion, each backup copy the
verdict counts is checked again in its repository:

1. the repository opens with our key (``restic cat config``, once per retention run);
2. its most recent ``restic check`` (recorded by the backup run) succeeded, less than
   ``retention.max_check_age_hours`` ago;
3. the snapshot the record names is listed by ``restic snapshots`` now;
4. ``restic ls`` of that snapshot, run now, lists the raw file with the ledger's size
   (this opens the repository again and reads the snapshot's trees);
5. the file was read back from that target with ``restic dump`` and matched the ledger
   checksum (the digest is in the record), and, for files up to
   ``retention.restore_max_bytes``, it is restored again now and hashed.

Steps 4 and 5 are repeated for every companion file of the dataset (the ``.ets`` of a ``.vsi``,
ledger role ``companion``) with its own ledger size and checksum and the read-back the backup run
recorded for it (``companions`` in the record): a copy missing or damaging one companion does not count.

A copy that fails any of these does not count; the reason is returned for the report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from microfair.backup.restic import Restic, ResticCredentials, ResticError
from microfair.backup.run import file_credentials, record_kind, restic_for, target_runs
from microfair.backup.schedule import last_check
from microfair.backup.verify import ExpectedContent
from microfair.config import FacilityConfig
from microfair.config.backup import BackupTarget
from microfair.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass
class CopyCheck:
    """The outcome of checking one dataset's copy on one target, now."""

    target: str
    ok: bool
    snapshot: str | None = None
    reason: str | None = None
    restored: bool = False  # restored and hashed during this check

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "snapshot": self.snapshot, "reason": self.reason,
                "restored": self.restored}


class CopyChecker(Protocol):
    def check(self, ds: Any, target: BackupTarget) -> CopyCheck: ...


@dataclass
class _Repository:
    restic: Restic | None
    reason: str | None = None
    snapshots: set[str] = field(default_factory=set)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class RepositoryCopies:
    """Checks copies in the real repositories (see the module docstring).

    :param credentials: target → restic credentials (an Airflow connection); default: its password_file.
    """

    def __init__(self, cfg: FacilityConfig, ledger: Ledger, *, now: datetime | None = None,
                 credentials: Callable[[BackupTarget], ResticCredentials] | None = None) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.now = now or datetime.now(timezone.utc)
        self.credentials = credentials or file_credentials
        self._repos: dict[str, _Repository] = {}

    def _repository(self, target: BackupTarget) -> _Repository:
        if target.name in self._repos:
            return self._repos[target.name]
        repo = _Repository(None)
        try:
            creds = self.credentials(target)
        except Exception as exc:  # a missing Airflow connection, an unreadable secret…
            creds, repo.reason = None, f"no credentials for the repository: {exc}"
        try:
            if creds is None:
                raise ResticError(repo.reason or "no credentials")
            restic = restic_for(self.cfg, target, creds)
            reason = self._check_age(target)
            if reason is None:
                restic.open()
                repo.snapshots = {s["id"] for s in restic.snapshots()}
                repo.restic = restic
            repo.reason = reason
        except ResticError as exc:
            repo.reason = repo.reason or f"repository does not open: {exc.reason}"
        self._repos[target.name] = repo
        if repo.reason:
            log.error("target %s: its copies free nothing: %s", target.name, repo.reason)
        return repo

    def _check_age(self, target: BackupTarget) -> str | None:
        check = last_check(target_runs(self.ledger, target.name))
        if check is None:
            return "no restic check recorded for this repository"
        at = _utc(datetime.fromisoformat(check["at"]))
        if not check.get("ok"):
            packs = ", ".join(p[:12] for p in check.get("damaged_packs") or []) or "see the backup run"
            return f"its most recent restic check ({at:%Y-%m-%d %H:%M} UTC) failed (damaged packs: {packs})"
        limit = self.cfg.retention.max_check_age_hours
        if self.now - at > timedelta(hours=limit):
            return f"its most recent restic check ({at:%Y-%m-%d %H:%M} UTC) is older than {limit:g} h"
        return None

    def check(self, ds: Any, target: BackupTarget) -> CopyCheck:
        out = CopyCheck(target.name, False)
        repo = self._repository(target)
        if repo.restic is None:
            out.reason = repo.reason
            return out
        rec = self.ledger.get_record(ds.uid, record_kind(target.name)) or {}
        snapshot = rec.get("snapshot")
        out.snapshot = snapshot
        path = os.path.realpath(ds.raw_path)
        listed = [sid for sid in repo.snapshots if snapshot and sid.startswith(snapshot)]
        if len(listed) != 1:
            out.reason = f"snapshot {str(snapshot)[:8]} is not listed in the repository now"
            return out
        digest = rec.get("read_back_digest")
        want = ds.blake3 if rec.get("algorithm") == "blake3" else ds.sha256
        if not rec.get("verified") or not digest or digest != want:
            out.reason = "no read-back of this file matching the ledger checksum is recorded"
            return out
        files = [(path, ds.size_bytes, ds.sha256, ds.blake3, digest)]
        done = rec.get("companions") or {}
        for f in self.ledger.files(ds.uid, "companion"):
            cpath = os.path.realpath(f.path)
            seen = done.get(cpath) or {}
            want = f.blake3 if seen.get("algorithm") == "blake3" else f.sha256
            if not seen.get("read_back_digest") or seen["read_back_digest"] != want:
                out.reason = f"no read-back of companion {cpath} matching the ledger checksum is recorded"
                return out
            files.append((cpath, f.size_bytes, f.sha256, f.blake3, want))
        try:
            listed_nodes = {n.path: n for n in repo.restic.ls(snapshot, *[f[0] for f in files])
                            if n.type == "file"}
        except ResticError as exc:
            out.reason = f"restic ls of snapshot {snapshot[:8]} failed now: {exc.reason}"
            return out
        for fpath, size, sha256, b3, _ in files:
            why = self._check_file(repo.restic, snapshot, listed_nodes.get(fpath), fpath, size, sha256, b3)
            if why:
                out.reason = why
                return out
            out.restored = out.restored or (size is not None and size <= self.cfg.retention.restore_max_bytes)
        out.ok = True
        return out

    def _check_file(self, restic: Restic, snapshot: str, node: Any, path: str, size: int | None,
                    sha256: str | None, b3: str | None) -> str | None:
        """Why one file's copy in ``snapshot`` does not hold now (None: it holds)."""
        if node is None:
            return f"snapshot {snapshot[:8]} does not list {path} now"
        if size is not None and node.size != size:
            return f"snapshot {snapshot[:8]} lists {node.size} bytes for {path}, the ledger says {size}"
        if size is not None and size <= self.cfg.retention.restore_max_bytes:
            expected = ExpectedContent(sha256, b3, size)
            try:
                restic.dump(snapshot, path, expected.update)
            except ResticError as exc:
                return f"restore of {path} from snapshot {snapshot[:8]} failed now: {exc.reason}"
            why = expected.mismatch()
            if why:
                return f"{path} restored from snapshot {snapshot[:8]} now: {why}"
        return None
