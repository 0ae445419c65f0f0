"""One backup run on one target: back up, check, verify each dataset's copy, forget/prune, record.

A dataset's copy on a target is *verified* when its raw file, read back out of the
repository with ``restic dump``, has the checksum the ledger holds. Once verified,
the copy stays verified in later snapshots as long as restic did not re-read the
file (same size, mtime and ctime in the snapshot: restic then re-uses the same
content blobs), every run re-reads a random sample of verified files, and a full
verification (``check --read-data`` and every dataset restored) runs every
``full_verification_days``. A damaged pack found by ``restic check`` downgrades
exactly the datasets with content in it (``restic find --pack``).

Per dataset and target the ledger holds a record ``backup:<target>``; each run
leaves one stage event (``stage="backup"``, no dataset) whose details carry the
target, snapshot, bytes added, dedup ratio and duration.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from microfair.backup.restic import ResticCredentials, Restic, ResticError
from microfair.backup.verify import ExpectedContent
from microfair.config import FacilityConfig
from microfair.config.backup import BackupTarget
from microfair.ledger import Ledger, RunContext

log = logging.getLogger(__name__)

SNAPSHOT_TAG = "microfair"


def record_kind(target_name: str) -> str:
    """Ledger record kind holding one dataset's copy on one target."""
    return f"backup:{target_name}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def file_credentials(target: BackupTarget) -> ResticCredentials:
    """Credentials from the facility file: ``password_file`` and the ``sftp`` block (no Airflow needed)."""
    if not target.password_file:
        raise ResticError(f"target {target.name}: its password is in Airflow connection {target.connection_id!r};"
                          " run it from Airflow (microfair_backup) or give it a password_file")
    s = target.sftp
    return ResticCredentials(password_file=target.password_file,
                             ssh_identity_file=s.identity_file if s else None,
                             ssh_known_hosts_file=s.known_hosts_file if s else None,
                             ssh_port=s.port if s else None,
                             ssh_connect_timeout=s.connect_timeout if s else 15)


def restic_for(cfg: FacilityConfig, target: BackupTarget, credentials: ResticCredentials | None = None,
               **kw: Any) -> Restic:
    b = cfg.backup
    return Restic(target.repository, credentials or file_credentials(target), binary=b.restic_binary,
                  host=b.restic_host, cache_dir=b.cache_dir, label=target.name, **kw)


def backup_paths(cfg: FacilityConfig) -> list[str]:
    """What each target receives: the raw tree, and the OME-Zarr and reports trees when enabled."""
    raw = cfg.storage.raw
    if not raw.is_dir():
        raise ResticError(f"the raw tree {raw} does not exist: nothing to back up")
    paths = [_real(raw)]
    if cfg.backup.include_converted and cfg.storage.converted.is_dir():
        paths.append(_real(cfg.storage.converted))
    if cfg.backup.include_reports and cfg.storage.reports.is_dir():
        paths.append(_real(cfg.storage.reports))
    return paths


@dataclass
class TargetRun:
    """What one run did on one target (also stored in the run's ledger event)."""

    target: str
    state: str = "succeeded"  # succeeded | flagged (damage found) | failed
    snapshot: str | None = None
    bytes_added: int = 0
    bytes_processed: int = 0
    dedup_ratio: float = 0.0
    duration_s: float = 0.0
    files_new: int = 0
    files_changed: int = 0
    full_verification: bool = False
    check: dict[str, Any] = field(default_factory=dict)
    verified: list[str] = field(default_factory=list)
    newly_verified: list[str] = field(default_factory=list)
    unverified: dict[str, str] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    forget: dict[str, Any] = field(default_factory=dict)
    repository_bytes: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_runs(ledger: Ledger, target_name: str) -> list[Any]:
    """Finished run events of one target, oldest first."""
    return [e for e in ledger.events(stage="backup")
            if e.dataset_id is None and (e.details or {}).get("target") == target_name and e.state != "running"]


def _full_due(cfg: FacilityConfig, ledger: Ledger, target_name: str, now: datetime) -> bool:
    days = cfg.backup.full_verification_days
    if days <= 0:
        return True
    for ev in reversed(target_runs(ledger, target_name)):
        if ev.state in ("succeeded", "flagged") and (ev.details or {}).get("full_verification"):
            ended = ev.ended_at if ev.ended_at.tzinfo else ev.ended_at.replace(tzinfo=timezone.utc)
            return now - ended >= timedelta(days=days)
    return True


def _eligible(ledger: Ledger) -> list[Any]:
    """Datasets with a raw copy on the facility storage (a failed conversion still has one to protect)."""
    return [d for d in ledger.datasets() if d.raw_path and (d.sha256 or d.blake3)
            and d.state not in ("quarantined", "discovered")]


def _restore_check(restic: Restic, snapshot: str, path: str, expected: ExpectedContent) -> str | None:
    try:
        restic.dump(snapshot, path, expected.update)
    except ResticError as exc:
        return f"restore failed: {exc.reason}"
    return expected.mismatch()


def run_backup(cfg: FacilityConfig, ledger: Ledger, target_name: str, *,
               credentials: ResticCredentials | None = None, ctx: RunContext | None = None,
               full: bool | None = None, restic: Restic | None = None,
               rng: random.Random | None = None) -> TargetRun:
    """Back up the facility storage to one target and verify it; see the module docstring.

    :param credentials: repository secrets (from an Airflow connection); default: the target's password_file.
    :param full: force (True) or skip (False) the full verification; default: when it is due.
    :returns: the run's outcome; ``state`` is ``flagged`` when damage or a mismatch was found.
    :raises ResticError: the target could not be backed up (unreachable, disk full…); recorded in the ledger.
    """
    target = cfg.backup.target(target_name)
    restic = restic or restic_for(cfg, target, credentials)
    rng = rng or random.Random()
    now = _now()
    result = TargetRun(target=target.name)
    with ledger.stage(None, "backup", ctx) as outcome:
        outcome.details = {"target": target.name, "medium": target.medium, "offsite": target.offsite,
                           "repository": target.repository}
        started = time.monotonic()
        restic.unlock(create=True)
        paths = backup_paths(cfg)
        log.info("target %s: backing up %s", target.name, ", ".join(paths))
        summary = restic.backup(paths, tags=[SNAPSHOT_TAG])
        result.snapshot = summary.snapshot_id
        result.bytes_added, result.bytes_processed = summary.data_added, summary.total_bytes_processed
        result.dedup_ratio, result.duration_s = summary.dedup_ratio, round(summary.total_duration, 3)
        result.files_new, result.files_changed = summary.files_new, summary.files_changed
        log.info("target %s: snapshot %s, %d bytes added for %d bytes read (dedup ratio %.1f) in %.1f s",
                 target.name, summary.snapshot_id, summary.data_added, summary.total_bytes_processed,
                 summary.dedup_ratio, summary.total_duration)

        result.full_verification = _full_due(cfg, ledger, target.name, now) if full is None else full
        subset = "100%" if result.full_verification else cfg.backup.check_read_data_subset
        check = restic.check(subset)
        damaged_paths: set[str] = set()
        check_blames_all = False
        if not check.ok:
            if check.damaged_packs:
                damaged_paths = restic.paths_in_packs(list(check.damaged_packs))
            else:
                check_blames_all = True
        result.check = {"ok": check.ok, "read_data_subset": subset, "damaged_packs": list(check.damaged_packs),
                        "errors": list(check.errors[:20])}
        if not check.ok:
            log.error("target %s: restic check found errors (damaged packs: %s)", target.name,
                      ", ".join(p[:12] for p in check.damaged_packs) or "unknown")

        nodes = {n.path: n for n in restic.ls(summary.snapshot_id, paths[0]) if n.type == "file"}
        carried: list[tuple[str, str, ExpectedContent]] = []
        records: dict[str, dict[str, Any]] = {}
        for ds in _eligible(ledger):
            path = _real(ds.raw_path)
            prev = ledger.get_record(ds.uid, record_kind(target.name)) or {}
            rec: dict[str, Any] = {"target": target.name, "snapshot": summary.snapshot_id, "path": path,
                                   "checked_at": now.isoformat(), "verified": False}
            node = nodes.get(path)
            if node is None:
                rec["reason"] = "raw file not in the snapshot (unreadable or missing at backup time)"
            elif check_blames_all:
                rec["reason"] = f"restic check failed on snapshot {summary.snapshot_id}: " + "; ".join(check.errors[:2])
            elif path in damaged_paths:
                rec["reason"] = ("content in a damaged pack (" + ", ".join(p[:12] for p in check.damaged_packs)
                                 + "): restore to verify after repair")
            else:
                rec["fingerprint"] = node.fingerprint
                expected = ExpectedContent(ds.sha256, ds.blake3, ds.size_bytes)
                if (prev.get("verified") and prev.get("fingerprint") == node.fingerprint
                        and not result.full_verification):
                    rec.update(verified=True, verified_at=prev.get("verified_at"), method="carried",
                               verified_snapshot=prev.get("verified_snapshot"), algorithm=prev.get("algorithm"))
                    carried.append((ds.uid, path, expected))
                else:
                    why = _restore_check(restic, summary.snapshot_id, path, expected)
                    if why is None:
                        rec.update(verified=True, verified_at=now.isoformat(), method="restore",
                                   verified_snapshot=summary.snapshot_id, algorithm=expected.algorithm)
                        result.newly_verified.append(ds.uid)
                    else:
                        rec["reason"] = why
                        log.error("dataset %s: copy on target %s does not match the ledger: %s",
                                  ds.uid, target.name, why)
            records[ds.uid] = rec

        # Re-read a random sample of copies we had only carried over, and of the other catalogued files.
        k = cfg.backup.restore_sample_files
        for uid, path, expected in rng.sample(carried, min(k, len(carried))):
            why = _restore_check(restic, summary.snapshot_id, path, expected)
            result.samples.append({"uid": uid, "path": path, "ok": why is None, "reason": why})
            if why is not None:
                records[uid].update(verified=False, reason=f"sample restore: {why}")
                log.error("dataset %s: sample restore from target %s failed: %s", uid, target.name, why)
        extra = _catalogued_files(cfg, ledger, exclude={r["path"] for r in records.values()})
        for uid, path, expected in rng.sample(extra, min(k, len(extra))):
            why = _restore_check(restic, summary.snapshot_id, path, expected)
            result.samples.append({"uid": uid, "path": path, "ok": why is None, "reason": why})

        for uid, rec in records.items():
            ledger.put_record(uid, record_kind(target.name), rec)
            if rec["verified"]:
                result.verified.append(uid)
            else:
                result.unverified[uid] = rec["reason"]

        try:
            result.forget = restic.forget(keep_daily=cfg.backup.keep_daily, keep_weekly=cfg.backup.keep_weekly,
                                          keep_monthly=cfg.backup.keep_monthly, prune=cfg.backup.prune)
        except ResticError as exc:  # the copy is made and verified; an old-snapshot clean-up can wait
            result.forget = {"error": exc.reason}
            log.warning("target %s: forget/prune failed (retried next run): %s", target.name, exc.reason)
        if result.full_verification:
            try:
                result.repository_bytes = int(restic.stats_raw().get("total_size", 0)) or None
            except ResticError:
                pass

        problems = []
        if not check.ok:
            problems.append(f"restic check found errors in {len(check.damaged_packs) or 'unknown'} pack(s)")
        bad_samples = [s for s in result.samples if not s["ok"]]
        if bad_samples:
            problems.append(f"{len(bad_samples)} sample restore(s) did not match the ledger")
        mismatched = [u for u, r in result.unverified.items() if "differs" in r or "restore failed" in r]
        if mismatched:
            problems.append(f"{len(mismatched)} dataset(s) failed verification")
        if problems:
            result.state = "flagged"
            result.error = f"target {target.name}: " + "; ".join(problems)
            outcome.state, outcome.error = "flagged", result.error
        outcome.bytes = result.bytes_added
        outcome.checksum = summary.snapshot_id
        wall = round(time.monotonic() - started, 3)
        outcome.details.update({k: v for k, v in result.to_dict().items() if k not in ("verified", "target")},
                               n_verified=len(result.verified), wall_s=wall)
        log.info("target %s: %d dataset(s) verified (%d newly restored and compared), %d not verified",
                 target.name, len(result.verified), len(result.newly_verified), len(result.unverified))
    return result


def _catalogued_files(cfg: FacilityConfig, ledger: Ledger, *, exclude: set[str]) -> list[tuple[str, str, ExpectedContent]]:
    """Files from the ledger's file table (records, thumbnails, raw copies…) that a target holds."""
    roots = [_real(cfg.storage.raw)]
    if cfg.backup.include_converted:
        roots.append(_real(cfg.storage.converted))
    if cfg.backup.include_reports:
        roots.append(_real(cfg.storage.reports))
    out = []
    for ds in _eligible(ledger):
        for f in ledger.files(ds.uid):
            if not (f.sha256 or f.blake3):
                continue
            path = _real(f.path)
            if path in exclude or not os.path.isfile(path) or not any(path.startswith(r + os.sep) for r in roots):
                continue
            out.append((ds.uid, path, ExpectedContent(f.sha256, f.blake3, f.size_bytes)))
    return out
