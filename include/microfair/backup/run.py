"""One backup run on one target: back up, check, read copies back, trace damage, forget/prune, record.

A dataset's copy on a target is *verified* when its raw file, read back out of the
repository with ``restic dump``, has the checksum the ledger holds. Once verified,
the copy stays verified in later snapshots as long as restic did not re-read the
file (same size, mtime and ctime in the snapshot: restic then re-uses the same
content blobs). What each run reads back is planned by :mod:`microfair.backup.schedule`:
a rotating ``check --read-data-subset n/N`` and the datasets read back longest ago,
so that every pack is read and every dataset restored within the verification window.
Damage found by ``check`` (packs) or by a restore (blobs) is traced by
:mod:`microfair.backup.damage` to *every* dataset with content there; all of them lose
their verified status, and their 3-2-1 verdicts are re-evaluated at once (which raises
the ``backup_321_lost`` alert of :mod:`microfair.monitor.alerts`).

Per dataset and target the ledger holds a record ``backup:<target>``; each run
leaves one stage event (``stage="backup"``, no dataset) whose details carry the
target, snapshot, bytes added, dedup ratio and duration.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from microfair.backup.damage import Damage, datasets_touched, trace
from microfair.backup.restic import BackupSummary, CheckResult, DamagedContent, ResticCredentials, Restic, ResticError
from microfair.backup.schedule import CheckPlan, choose_read_backs, plan_check
from microfair.backup.verify import ExpectedContent, read_back_companions
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
    read_back: list[str] = field(default_factory=list)  # already-verified datasets restored again this run
    unverified: dict[str, str] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    damage: dict[str, Any] = field(default_factory=dict)
    forget: dict[str, Any] = field(default_factory=dict)
    repository_bytes: int | None = None
    error: str | None = None

    @property
    def damaged_packs(self) -> list[str]:
        return list(self.damage.get("packs") or [])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReadBack:
    """One file restored with ``restic dump`` and compared with the ledger."""

    uid: str
    path: str
    ok: bool
    reason: str | None = None
    blobs: tuple[str, ...] = ()  # blobs restic could not read (damage)
    algorithm: str | None = None
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "path": self.path, "ok": self.ok, "reason": self.reason}


def target_runs(ledger: Ledger, target_name: str) -> list[Any]:
    """Finished run events of one target, oldest first."""
    return [e for e in ledger.events(stage="backup")
            if e.dataset_id is None and (e.details or {}).get("target") == target_name and e.state != "running"]


def _eligible(ledger: Ledger) -> list[Any]:
    """Datasets with a raw copy on the facility storage (a failed conversion still has one to protect)."""
    return [d for d in ledger.datasets() if d.raw_path and (d.sha256 or d.blake3)
            and d.state not in ("quarantined", "discovered")]


def read_back(restic: Restic, snapshot: str, uid: str, path: str, expected: ExpectedContent) -> ReadBack:
    """Restore one file from ``snapshot`` and compare it with the ledger's checksums."""
    try:
        restic.dump(snapshot, path, expected.update)
    except DamagedContent as exc:
        return ReadBack(uid, path, False, f"restore failed: {exc.reason}", blobs=exc.blobs)
    except ResticError as exc:
        return ReadBack(uid, path, False, f"restore failed: {exc.reason}")
    why = expected.mismatch()
    return ReadBack(uid, path, why is None, why, algorithm=expected.algorithm,
                    digest=expected.actual if why is None else None)


# -- the steps of a run --------------------------------------------------------
def _back_up(cfg: FacilityConfig, restic: Restic, result: TargetRun) -> tuple[BackupSummary, list[str]]:
    restic.unlock(create=True)
    paths = backup_paths(cfg)
    log.info("target %s: backing up %s", result.target, ", ".join(paths))
    try:
        summary = restic.backup(paths, tags=[SNAPSHOT_TAG])
    except ResticError:
        restic.remove_partials()  # a failed or killed restic leaves temporary packs in the cache
        raise
    result.snapshot = summary.snapshot_id
    result.bytes_added, result.bytes_processed = summary.data_added, summary.total_bytes_processed
    result.dedup_ratio, result.duration_s = summary.dedup_ratio, round(summary.total_duration, 3)
    result.files_new, result.files_changed = summary.files_new, summary.files_changed
    log.info("target %s: snapshot %s, %d bytes added for %d bytes read (dedup ratio %.1f) in %.1f s",
             result.target, summary.snapshot_id, summary.data_added, summary.total_bytes_processed,
             summary.dedup_ratio, summary.total_duration)
    return summary, paths


def _check(restic: Restic, plan: CheckPlan, result: TargetRun) -> CheckResult:
    check = restic.check(plan.subset)
    result.full_verification = plan.full
    result.check = {"ok": check.ok, **plan.to_dict(), "damaged_packs": list(check.damaged_packs),
                    "errors": list(check.errors[:20])}
    if check.ok:
        log.info("target %s: restic check --read-data%s passed (%s)", result.target,
                 "" if plan.full else f"-subset={plan.subset}", plan.why)
    else:
        log.error("target %s: restic check found errors (damaged packs: %s)", result.target,
                  ", ".join(p[:12] for p in check.damaged_packs) or "unknown")
    return check


def _base_record(target: str, snapshot: str, path: str, now: datetime) -> dict[str, Any]:
    return {"target": target, "snapshot": snapshot, "path": path, "checked_at": now.isoformat(), "verified": False}


def _apply_read(rec: dict[str, Any], rb: ReadBack, snapshot: str, now: datetime) -> None:
    rec["read_back_at"] = now.isoformat()
    rec["read_back_snapshot"] = snapshot
    rec["read_back_ok"] = rb.ok
    if rb.ok:
        rec.update(verified=True, verified_at=now.isoformat(), method="restore", verified_snapshot=snapshot,
                   algorithm=rb.algorithm, read_back_digest=rb.digest)
        rec.pop("reason", None)
    else:
        rec.update(verified=False, reason=rb.reason)
        rec.pop("read_back_digest", None)


def _mark_damaged(records: dict[str, dict[str, Any]], damage: Damage) -> None:
    for uid, paths in damage.datasets.items():
        rec = records.get(uid)
        if rec is None:
            continue
        why = (f"damaged pack(s) ({damage.label()}) could not be traced to datasets ({damage.untraced[0]})"
               if damage.untraced and not paths else
               f"content in a damaged pack ({damage.label()}): restore to verify after repair")
        rec.update(verified=False, damaged_paths=paths[:20], reason=why)


def run_backup(cfg: FacilityConfig, ledger: Ledger, target_name: str, *,
               credentials: ResticCredentials | None = None, ctx: RunContext | None = None,
               full: bool | None = None, restic: Restic | None = None, rng: Any = None) -> TargetRun:
    """Back up the facility storage to one target and verify it; see the module docstring.

    :param credentials: repository secrets (from an Airflow connection); default: the target's password_file.
    :param full: force (True) or skip (False) the full read; default: when the verification window requires it.
    :param rng: unused (kept for callers of the sampling version); the read-backs are chosen oldest first.
    :returns: the run's outcome; ``state`` is ``flagged`` when damage or a mismatch was found.
    :raises ResticError: the target could not be backed up (unreachable, disk full…); recorded in the ledger.
    """
    target = cfg.backup.target(target_name)
    restic = restic or restic_for(cfg, target, credentials)
    now = _now()
    result = TargetRun(target=target.name)
    previous = target_runs(ledger, target.name)
    damage = Damage()  # set inside; read after the run's event is closed
    with ledger.stage(None, "backup", ctx) as outcome:
        outcome.details = {"target": target.name, "medium": target.medium, "offsite": target.offsite,
                           "repository": target.repository}
        started = time.monotonic()
        summary, paths = _back_up(cfg, restic, result)
        plan = plan_check(cfg, previous, now, full)
        check = _check(restic, plan, result)
        snapshot = summary.snapshot_id
        datasets = _eligible(ledger)
        nodes = {n.path: n for n in restic.ls(snapshot, paths[0]) if n.type == "file"}

        cat = _catalogue(ledger, target.name, datasets, nodes, snapshot, check, plan, now)
        reads = _read_back_due(cfg, ledger, restic, cat, datasets, snapshot, result, now)
        damage = _trace_damage(restic, ledger, datasets, check, reads, cat.records, result)
        records = cat.records

        for uid, rec in records.items():
            ledger.put_record(uid, record_kind(target.name), rec)
            if rec["verified"]:
                result.verified.append(uid)
            else:
                result.unverified[uid] = rec["reason"]

        _forget(cfg, restic, result)
        _conclude(result, check, reads, damage, outcome)
        outcome.bytes = result.bytes_added
        outcome.checksum = snapshot
        wall = round(time.monotonic() - started, 3)
        outcome.details.update({k: v for k, v in result.to_dict().items() if k not in ("verified", "target")},
                               n_verified=len(result.verified), wall_s=wall)
        log.info("target %s: %d dataset(s) verified (%d newly restored, %d read back again), %d not verified",
                 target.name, len(result.verified), len(result.newly_verified), len(result.read_back),
                 len(result.unverified))
    if damage.datasets:
        from microfair.backup.policy import evaluate_policy  # policy imports this module

        evaluate_policy(cfg, ledger, sorted(damage.datasets), ctx=ctx)
    return result


@dataclass
class Catalogue:
    """Each dataset's record for this run, and which copies must be (or may be) read back."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: dict[str, tuple[str, ExpectedContent]] = field(default_factory=dict)
    to_restore: list[str] = field(default_factory=list)  # new or changed: restored now
    carried: dict[str, str | None] = field(default_factory=dict)  # verified before: uid → last read-back


def _catalogue(ledger: Ledger, target: str, datasets: list[Any], nodes: dict[str, Any], snapshot: str,
               check: CheckResult, plan: CheckPlan, now: datetime) -> Catalogue:
    cat = Catalogue()
    for ds in datasets:
        path = _real(ds.raw_path)
        prev = ledger.get_record(ds.uid, record_kind(target)) or {}
        rec = cat.records[ds.uid] = _base_record(target, snapshot, path, now)
        for k in ("read_back_at", "read_back_snapshot", "read_back_ok", "read_back_digest", "companions"):
            if k in prev:
                rec[k] = prev[k]
        node = nodes.get(path)
        if node is None:
            rec["reason"] = "raw file not in the snapshot (unreadable or missing at backup time)"
            continue
        if not check.ok and not check.damaged_packs:
            rec["reason"] = f"restic check failed on snapshot {snapshot}: " + "; ".join(check.errors[:2])
            continue
        rec["fingerprint"] = node.fingerprint
        cat.expected[ds.uid] = (path, ExpectedContent(ds.sha256, ds.blake3, ds.size_bytes))
        if prev.get("verified") and prev.get("fingerprint") == node.fingerprint and not plan.full:
            rec.update(verified=True, verified_at=prev.get("verified_at"), method="carried",
                       verified_snapshot=prev.get("verified_snapshot"), algorithm=prev.get("algorithm"))
            cat.carried[ds.uid] = prev.get("read_back_at") or prev.get("verified_at")
        else:
            cat.to_restore.append(ds.uid)
    return cat


def _read_back_due(cfg: FacilityConfig, ledger: Ledger, restic: Restic, cat: Catalogue, datasets: list[Any],
                   snapshot: str, result: TargetRun, now: datetime) -> list[ReadBack]:
    """Restore the new copies, the ones read back longest ago, and a few catalogued files."""
    again = choose_read_backs(cfg, cat.carried, now)
    reads: list[ReadBack] = []
    for uid in cat.to_restore + again:
        path, exp = cat.expected[uid]
        rb = read_back(restic, snapshot, uid, path, exp)
        rb = read_back_companions(rb, ledger.files(uid, "companion"),  # a .vsi's .ets too (microfair.companions)
                                  lambda p, e, u=uid: read_back(restic, snapshot, u, p, e), cat.records[uid])
        reads.append(rb)
        _apply_read(cat.records[uid], rb, snapshot, now)
        if uid in again:
            result.read_back.append(uid)
            result.samples.append(rb.to_dict())
        elif rb.ok:
            result.newly_verified.append(uid)
        if not rb.ok:
            log.error("dataset %s: copy on target %s does not match the ledger: %s", uid, result.target, rb.reason)
    exclude = {r["path"] for r in cat.records.values()}
    for uid, path, exp in _catalogued_sample(cfg, ledger, datasets, exclude=exclude,
                                             k=cfg.backup.restore_sample_files, now=now):
        rb = read_back(restic, snapshot, uid, path, exp)
        reads.append(rb)
        result.samples.append(rb.to_dict())
    return reads


def _trace_damage(restic: Restic, ledger: Ledger, datasets: list[Any], check: CheckResult, reads: list[ReadBack],
                  records: dict[str, dict[str, Any]], result: TargetRun) -> Damage:
    blobs = {b for rb in reads for b in rb.blobs}
    if not check.damaged_packs and not blobs:
        return Damage()
    damage = trace(restic, set(check.damaged_packs), blobs)
    damage.datasets = datasets_touched(ledger, datasets, damage.paths)
    if damage.untraced:  # damage we cannot trace: nothing on this target counts until it is repaired
        damage.datasets = {uid: damage.datasets.get(uid, []) for uid in records}
    _mark_damaged(records, damage)
    result.damage = damage.to_dict()
    log.error("target %s: damaged pack(s) %s hold content of %d dataset(s): %s", result.target,
              damage.label(), len(damage.datasets), ", ".join(sorted(damage.datasets)) or "none known")
    return damage


def _forget(cfg: FacilityConfig, restic: Restic, result: TargetRun) -> None:
    try:
        result.forget = restic.forget(keep_daily=cfg.backup.keep_daily, keep_weekly=cfg.backup.keep_weekly,
                                      keep_monthly=cfg.backup.keep_monthly, prune=cfg.backup.prune)
    except ResticError as exc:  # the copy is made and verified; an old-snapshot clean-up can wait
        result.forget = {"error": exc.reason}
        log.warning("target %s: forget/prune failed (retried next run): %s", result.target, exc.reason)
    if result.full_verification:
        try:
            result.repository_bytes = int(restic.stats_raw().get("total_size", 0)) or None
        except ResticError:
            pass


def _conclude(result: TargetRun, check: CheckResult, reads: list[ReadBack], damage: Damage, outcome: Any) -> None:
    problems = []
    if not check.ok:
        problems.append(f"restic check found errors in {len(check.damaged_packs) or 'unknown'} pack(s)")
    if damage.datasets:
        problems.append(f"{len(damage.datasets)} dataset(s) with content in damaged pack(s) {damage.label()}")
    failed = [rb for rb in reads if not rb.ok]
    if failed:
        problems.append(f"{len(failed)} restore(s) did not match the ledger")
    if problems:
        result.state = "flagged"
        result.error = f"target {result.target}: " + "; ".join(problems)
        outcome.state, outcome.error = "flagged", result.error


def _catalogued_sample(cfg: FacilityConfig, ledger: Ledger, datasets: list[Any], *, exclude: set[str], k: int,
                       now: datetime) -> list[tuple[str, str, ExpectedContent]]:
    """``k`` of the other catalogued files (records, reports…) a target holds, rotating by the clock."""
    roots = [_real(cfg.storage.raw)]
    if cfg.backup.include_converted:
        roots.append(_real(cfg.storage.converted))
    if cfg.backup.include_reports:
        roots.append(_real(cfg.storage.reports))
    out = []
    for ds in datasets:
        for f in ledger.files(ds.uid):
            if not (f.sha256 or f.blake3):
                continue
            path = _real(f.path)
            if path in exclude or not os.path.isfile(path) or not any(path.startswith(r + os.sep) for r in roots):
                continue
            out.append((ds.uid, path, ExpectedContent(f.sha256, f.blake3, f.size_bytes)))
    if not out or k <= 0:
        return []
    start = int(now.timestamp() // 3600) % len(out)
    return [out[(start + i) % len(out)] for i in range(min(k, len(out)))]
