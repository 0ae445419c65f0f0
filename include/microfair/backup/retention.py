"""The retention robot: frees acquisition-PC landing zones, only once 3-2-1 is verified.

A landing-zone file is deleted only when *all* of these hold, checked just before the
deletion:

1. it lies inside a configured landing zone, reached from the zone's root without
   ``..``, without following any symbolic link and without crossing a mount point
   (a bind mount of the raw tree into a landing zone would otherwise lose the primary);
2. it is a regular file that is not the primary raw copy itself (same inode), and the
   landing zone does not overlap the facility storage or a backup repository;
3. it is older than ``retention.days`` (counted from the later of collection and the
   file's modification time);
4. the dataset is 3-2-1 compliant right now (policy re-evaluated, primary re-hashed);
5. its size and checksum still match the ledger (a file changed after the backup is kept);
6. every backup copy the verdict counts is checked in its repository, now
   (:mod:`microfair.backup.copies`: the repository opens, its latest ``restic check``
   passed recently, the snapshot is listed and lists the file with the ledger's size and a
   recorded read-back matching the ledger checksum, small files restored again). Copies
   that fail do not count; if the rest no longer make 3-2-1, nothing is deleted and the
   report says, per target, why.

A main file's companion files (the ``_<stem>_/`` folder of a ``.vsi``, ledger role
``companion``) go with it: each landing companion must still match its ledger size and checksum,
its raw copy must too, and every counted backup copy must hold it (the copy checks include the
companions). If any of this fails for one companion, nothing of the acquisition is deleted and
the report says which companion. Companions are deleted before the main file; the emptied
companion folder is removed. A file found in a companion folder that the ledger does not know is
kept (it was never backed up).

Dry-run is the default (``retention.dry_run: true``): the robot reports what it would
free and when. Every deletion is written to the ledger's audit log with its checksum.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microfair.backup.copies import CopyCheck, CopyChecker, RepositoryCopies
from microfair.backup.policy import Verdict, evaluate_dataset, target_health
from microfair.backup.verify import ExpectedContent, check_local_file
from microfair.checksum import CHUNK
from microfair.companions import counterpart, expected_companions
from microfair.backup.restic import ResticCredentials
from microfair.config import FacilityConfig
from microfair.config.backup import BackupTarget
from microfair.ledger import Ledger

log = logging.getLogger(__name__)

RECORD = "retention"
ACTION = "retention_delete"


@dataclass
class RetentionItem:
    uid: str
    name: str
    path: str
    size_bytes: int | None
    action: str  # delete (dry-run) | deleted | wait | refuse | freed (earlier)
    reason: str
    eligible_on: str | None = None
    sha256: str | None = None
    copies: list[dict[str, Any]] | None = None  # the backup copies checked just before deletion

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetentionReport:
    dry_run: bool
    items: list[RetentionItem]

    @property
    def bytes_freed(self) -> int:
        return sum(i.size_bytes or 0 for i in self.items if i.action == "deleted")

    @property
    def bytes_freeable(self) -> int:
        return sum(i.size_bytes or 0 for i in self.items if i.action == "delete")

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "bytes_freed": self.bytes_freed, "bytes_freeable": self.bytes_freeable,
                "items": [i.to_dict() for i in self.items]}


class Refused(Exception):
    """This landing-zone file must not be deleted; the message says why."""


def _mount_points() -> list[str]:
    points = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4:
                    points.append(parts[4].encode().decode("unicode_escape"))
    except OSError:
        pass
    return points


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class LandingFile:
    """A landing-zone file opened safely: every folder from the zone root by ``openat`` with ``O_NOFOLLOW``."""

    def __init__(self, zone_root: str, parts: list[str], mounts: list[str]) -> None:
        self.zone_root, self.parts = zone_root, parts
        self._fds: list[int] = []
        try:
            fd = os.open(zone_root, os.O_RDONLY | os.O_DIRECTORY)
            self._fds.append(fd)
            root_dev = os.fstat(fd).st_dev
            here = os.path.realpath(zone_root)
            for comp in parts[:-1]:
                here = os.path.join(here, comp)
                if here in mounts:
                    raise Refused(f"{here} is a mount point inside the landing zone (bind mount?)")
                try:
                    fd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise Refused(f"{here} is a symbolic link or not a folder") from None
                    raise
                self._fds.append(fd)
                if os.fstat(fd).st_dev != root_dev:
                    raise Refused(f"{here} is on another file system than the landing zone")
            self.name = parts[-1]
            self.dir_fd = fd
            st = os.stat(self.name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise Refused("the landing-zone path is a symbolic link")
            if not stat.S_ISREG(st.st_mode):
                raise Refused("not a regular file")
            if st.st_dev != root_dev:
                raise Refused("on another file system than the landing zone")
            self.stat = st
        except BaseException:
            self.close()
            raise

    def digest(self, expected: ExpectedContent) -> str | None:
        fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.dir_fd)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (self.stat.st_dev, self.stat.st_ino):
                raise Refused("the file was replaced while being checked")
            while chunk := os.read(fd, CHUNK):
                expected.update(chunk)
        finally:
            os.close(fd)
        return expected.mismatch()

    def unlink(self) -> None:
        st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (
                self.stat.st_dev, self.stat.st_ino, self.stat.st_size, self.stat.st_mtime_ns):
            raise Refused("the file changed between verification and deletion")
        os.unlink(self.name, dir_fd=self.dir_fd)

    def close(self) -> None:
        for fd in reversed(self._fds):
            os.close(fd)
        self._fds = []

    def __enter__(self) -> "LandingFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _protected_roots(cfg: FacilityConfig) -> list[str]:
    roots = [os.path.realpath(p) for p in (cfg.storage.raw, cfg.storage.converted, cfg.storage.quarantine,
                                             cfg.storage.reports)]
    for t in cfg.backup.targets:
        if "://" not in t.repository and ":" not in t.repository.split("/", 1)[0]:
            roots.append(os.path.realpath(t.repository))
    return roots


def locate(cfg: FacilityConfig, source_path: str, mounts: list[str] | None = None) -> tuple[str, list[str]]:
    """The landing zone root and the path components below it, or :class:`Refused`."""
    if not source_path or not os.path.isabs(source_path):
        raise Refused(f"not an absolute path: {source_path!r}")
    raw_parts = source_path.split(os.sep)
    if ".." in raw_parts or "." in raw_parts[1:]:
        raise Refused("the path contains '..' or '.' components")
    mounts = _mount_points() if mounts is None else mounts
    protected = _protected_roots(cfg)
    for zone in cfg.landing_zones:
        for root in dict.fromkeys((os.path.normpath(str(zone.path)), os.path.realpath(zone.path))):
            if not _inside(source_path, root) or source_path == root:
                continue
            real_root = os.path.realpath(root)
            if any(_inside(real_root, p) or _inside(p, real_root) for p in protected):
                raise Refused(f"landing zone {zone.microscope} overlaps the facility storage or a backup "
                              "repository: nothing is deleted there")
            rel = os.path.relpath(source_path, root).split(os.sep)
            real = os.path.realpath(source_path)
            if not _inside(real, real_root):
                raise Refused(f"resolves outside landing zone {zone.microscope}: {real}")
            if any(_inside(real, p) for p in protected):
                raise Refused(f"resolves into the facility storage or a backup repository: {real}")
            inner = [m for m in mounts if _inside(m, real_root) and m != real_root and _inside(real, m)]
            if inner:
                raise Refused(f"below mount point {inner[0]} inside the landing zone (bind mount?)")
            return root, rel
    raise Refused("not inside any configured landing zone")


def _age_basis(ds: Any, mtime: float | None) -> datetime:
    basis = ds.collected_at or ds.created_at or datetime.now(timezone.utc)
    basis = basis if basis.tzinfo else basis.replace(tzinfo=timezone.utc)
    if mtime is not None:
        basis = max(basis, datetime.fromtimestamp(mtime, timezone.utc))
    return basis


def run_retention(cfg: FacilityConfig, ledger: Ledger, *, apply: bool | None = None, now: datetime | None = None,
                  actor: str = "retention-robot", copies: CopyChecker | None = None,
                  credentials: Callable[[BackupTarget], ResticCredentials] | None = None) -> RetentionReport:
    """Plan (dry-run) or apply the retention rule to every dataset's landing-zone copy.

    :param apply: delete for real; default ``not cfg.retention.dry_run``.
    :param copies: what checks the backup copies in their repositories (default: restic, see
        :class:`~microfair.backup.copies.RepositoryCopies`).
    :param credentials: target → repository credentials for the default checker (Airflow connections).
    """
    now = now or datetime.now(timezone.utc)
    apply = (not cfg.retention.dry_run) if apply is None else apply
    health = target_health(cfg, ledger, now)
    checker = copies or RepositoryCopies(cfg, ledger, now=now, credentials=credentials)
    mounts = _mount_points()
    items: list[RetentionItem] = []
    for ds in ledger.datasets():
        if not ds.source_path or not ds.raw_path or ds.state in ("quarantined", "failed", "discovered"):
            continue
        item = RetentionItem(ds.uid, ds.name, ds.source_path, ds.size_bytes, "refuse", "", sha256=ds.sha256)
        items.append(item)
        try:
            _decide(cfg, ledger, ds, item, health, mounts, now, apply, actor, checker)
        except Refused as exc:
            item.action, item.reason = "refuse", str(exc)
        except OSError as exc:
            item.action, item.reason = "refuse", f"cannot inspect: {exc.strerror or exc}"
        if item.action == "refuse":
            log.warning("dataset %s: landing copy %s kept: %s", ds.uid, ds.source_path, item.reason)
        else:
            log.info("dataset %s: %s %s (%s)", ds.uid, item.action, ds.source_path, item.reason)
    return RetentionReport(dry_run=not apply, items=items)


def _recount(cfg: FacilityConfig, verdict: Verdict, checks: dict[str, CopyCheck]) -> tuple[list[Any], list[str]]:
    """The copies that still hold after the live checks, and why they no longer make 3-2-1 (empty: they do)."""
    good = [c for c in verdict.locations if c.verified and (c.location not in checks or checks[c.location].ok)]
    media = {c.medium for c in good}
    offsite = sum(1 for c in good if c.offsite)
    b = cfg.backup
    if len(good) >= b.required_copies and len(media) >= b.required_media and offsite >= b.required_offsite:
        return good, []
    failed = [f"{name}: {c.reason}" for name, c in checks.items() if not c.ok]
    return good, failed + [f"{len(good)} cop{'y' if len(good) == 1 else 'ies'} checked now "
                     f"({len(media)} media, {offsite} off-site); {b.required_copies}-{b.required_media}-"
                     f"{b.required_offsite} required"]


def _decide(cfg: FacilityConfig, ledger: Ledger, ds: Any, item: RetentionItem, health: dict, mounts: list[str],
            now: datetime, apply: bool, actor: str, checker: CopyChecker) -> None:
    done = ledger.get_record(ds.uid, RECORD)
    if done and done.get("deleted_at") and not os.path.lexists(ds.source_path):
        item.action, item.reason = "freed", f"deleted {done['deleted_at']} by {done.get('actor')}"
        item.size_bytes = 0
        return
    root, parts = locate(cfg, ds.source_path, mounts)
    with LandingFile(root, parts, mounts) as lf:
        try:
            raw = os.stat(ds.raw_path)
            if (raw.st_dev, raw.st_ino) == (lf.stat.st_dev, lf.stat.st_ino):
                raise Refused("the landing file is the primary raw copy itself (hard link or bind mount)")
        except FileNotFoundError:
            raise Refused(f"the primary raw copy {ds.raw_path} is missing") from None
        eligible = _age_basis(ds, lf.stat.st_mtime) + timedelta(days=cfg.retention.days)
        item.eligible_on = eligible.date().isoformat()
        if now < eligible:
            stored = ledger.get_record(ds.uid, "backup_verdict") or {}
            state = "3-2-1 holds" if stored.get("compliant") else "3-2-1 not verified yet"
            item.action, item.reason = "wait", f"younger than {cfg.retention.days} days; {state}"
            return
        verdict = evaluate_dataset(cfg, ledger, ds, health, force_primary=True, now=now)
        if not verdict.compliant:
            raise Refused("not verified 3-2-1: " + "; ".join(verdict.reasons))
        if ds.size_bytes is not None and lf.stat.st_size != ds.size_bytes:
            raise Refused(f"changed since collection: {lf.stat.st_size} bytes, ledger says {ds.size_bytes}")
        why = lf.digest(ExpectedContent(ds.sha256, ds.blake3, ds.size_bytes))
        if why:
            raise Refused(f"changed since collection: {why}")
        targets = {t.name: t for t in cfg.backup.targets}
        checks = {c.location: checker.check(ds, targets[c.location])
                  for c in verdict.locations if c.verified and c.location in targets}
        item.copies = [c.to_dict() for c in checks.values()]
        for c in checks.values():
            if not c.ok:
                log.error("dataset %s: copy on target %s does not count now: %s", ds.uid, c.target, c.reason)
        good_copies, short = _recount(cfg, verdict, checks)
        if short:
            raise Refused("backup copies checked now do not hold: " + "; ".join(short))
        if lf.digest(ExpectedContent(ds.sha256, ds.blake3, ds.size_bytes)):  # the checks took a while
            raise Refused("changed while the backup copies were checked")
        companions = _companions(cfg, ledger, ds, mounts)
        _act(cfg, ledger, ds, item, lf, companions, verdict, checks, good_copies, now, apply, actor, mounts)
    if item.action == "deleted":
        _cleanup_companion_folders(ds.source_path)
        _cleanup_folders(cfg, root, parts)


@dataclass
class _Checked:
    """A landing companion checked against the ledger: where it is and what it was (stat) when checked."""

    zone: str
    parts: list[str]
    stat: os.stat_result

    @property
    def path(self) -> str:
        return os.path.join(self.zone, *self.parts)


def _companions(cfg: FacilityConfig, ledger: Ledger, ds: Any, mounts: list[str]) -> list[_Checked]:
    """The landing companions of ``ds``, opened safely and checked against the ledger (raw copy too).

    A companion no longer in the landing zone (freed by an interrupted run, or never there) is skipped;
    one that differs from the ledger, or whose raw copy does, refuses the whole acquisition. Each is
    closed after its check (an .oif.files folder can hold thousands of planes) and reopened to delete.
    """
    out: list[_Checked] = []
    for f in ledger.files(ds.uid, "companion"):
        name = os.path.relpath(f.path, os.path.dirname(ds.raw_path))
        landing = counterpart(f.path, ds.raw_path, ds.source_path)
        if landing is None:
            raise Refused(f"companion {name} is not in a companion folder of {ds.name}")
        why = check_local_file(f.path, ExpectedContent(f.sha256, f.blake3, f.size_bytes))
        if why:
            raise Refused(f"raw copy of companion {name}: {why}")
        if not os.path.lexists(landing):
            continue
        zone, parts = locate(cfg, str(landing), mounts)
        with LandingFile(zone, parts, mounts) as lf:
            why = lf.digest(ExpectedContent(f.sha256, f.blake3, f.size_bytes))
            if why:
                raise Refused(f"companion {name} changed since collection: {why}")
            out.append(_Checked(zone, parts, lf.stat))
    return out


def _act(cfg: FacilityConfig, ledger: Ledger, ds: Any, item: RetentionItem, lf: LandingFile,
         companions: list[_Checked], verdict: Verdict, checks: dict[str, CopyCheck], good_copies: list[Any],
         now: datetime, apply: bool, actor: str, mounts: list[str]) -> None:
    copies = len(good_copies)
    media = ", ".join(sorted({c.medium for c in good_copies}))
    snapshots = {c.target: c.snapshot for c in checks.values() if c.ok}
    extra = sum(c.stat.st_size for c in companions)
    item.size_bytes = (ds.size_bytes or 0) + extra
    with_companions = f" with {len(companions)} companion file(s), {extra} bytes" if companions else ""
    if not apply:
        item.action, item.reason = "delete", (f"would delete{with_companions}: {copies} copies checked now on "
                                              f"{media} (snapshots {_snapshots(snapshots)})")
        return
    freed = []
    for c in companions:  # companions first: a main file still there means the acquisition is not freed yet
        with LandingFile(c.zone, c.parts, mounts) as again:
            again.stat = c.stat  # unlink refuses a file replaced or changed since its check
            again.unlink()
        freed.append(c.path)
    lf.unlink()
    details = {"path": ds.source_path, "companions": freed, "sha256": ds.sha256, "blake3": ds.blake3,
               "size_bytes": ds.size_bytes,
               "copies": copies, "media": sorted({c.medium for c in good_copies}),
               "offsite_copies": sum(1 for c in good_copies if c.offsite),
               "locations": [c.location for c in good_copies], "snapshots": snapshots,
               "checked": [c.to_dict() for c in checks.values()]}
    ledger.audit(actor, ACTION, ds.uid, details)
    ledger.put_record(ds.uid, RECORD, {**details, "deleted_at": now.isoformat(), "actor": actor})
    item.action = "deleted"
    item.reason = f"{copies} copies checked now on {media} (snapshots {_snapshots(snapshots)}){with_companions}"


def _snapshots(snapshots: dict[str, str | None]) -> str:
    return ", ".join(f"{t} {str(s)[:8]}" for t, s in snapshots.items()) or "none"


def _cleanup_companion_folders(source_path: str) -> None:
    """Remove the companion folders of a freed main file once empty (a file the ledger did not know stays)."""
    for root in expected_companions(source_path):
        if not root.is_dir() or root.is_symlink():
            continue
        for d in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                        key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()
        if root.exists():
            log.warning("companion folder %s kept: it holds files the ledger does not know", root)


def _cleanup_folders(cfg: FacilityConfig, root: str, parts: list[str]) -> None:
    if not cfg.retention.remove_empty_folders:
        return
    for depth in range(len(parts) - 1, 0, -1):
        folder = Path(root, *parts[:depth])
        try:
            folder.rmdir()
        except OSError:
            return
