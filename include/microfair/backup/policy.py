"""The 3-2-1 policy checker: does each dataset have enough *verified* copies?

Copy 1 is the primary store: the raw file, re-hashed against the ledger checksum at
least every ``primary_verify_days``. Each backup target adds a copy when

* its latest run finished (succeeded, or flagged for damage elsewhere) less than
  ``max_copy_age_hours`` ago: a target that failed last time (server down, disk full)
  counts for nothing until it succeeds again;
* the dataset's ``backup:<target>`` record says the raw file in that run's snapshot
  was verified against the ledger checksums.

The verdict and its reasons go to the ledger record ``backup_verdict``; when the
verdict changes, a ``backup`` stage event is written for the dataset.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from microfair.backup.run import record_kind, target_runs
from microfair.backup.verify import ExpectedContent, check_companion_files, check_local_file
from microfair.config import FacilityConfig
from microfair.ledger import Ledger, RunContext
from microfair.provenance import refresh as refresh_provenance

log = logging.getLogger(__name__)

VERDICT = "backup_verdict"
PRIMARY = "primary_verification"


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _parse(ts: str | None) -> datetime | None:
    return _utc(datetime.fromisoformat(ts)) if ts else None


@dataclass
class TargetHealth:
    name: str
    medium: str
    offsite: bool
    ok: bool
    snapshot: str | None = None
    last_run_at: str | None = None
    reason: str | None = None


@dataclass
class CopyStatus:
    location: str  # "primary" or a target name
    medium: str
    offsite: bool
    verified: bool
    detail: str | None = None


@dataclass
class Verdict:
    uid: str
    name: str
    project: str | None
    compliant: bool
    copies: int
    media: list[str]
    offsite_copies: int
    reasons: list[str] = field(default_factory=list)
    locations: list[CopyStatus] = field(default_factory=list)
    evaluated_at: str = ""
    size_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_health(cfg: FacilityConfig, ledger: Ledger, now: datetime | None = None) -> dict[str, TargetHealth]:
    """Whether each target's latest finished run lets its copies count, and why not."""
    now = now or datetime.now(timezone.utc)
    max_age = timedelta(hours=cfg.backup.max_copy_age_hours)
    out: dict[str, TargetHealth] = {}
    for t in cfg.backup.targets:
        h = TargetHealth(t.name, t.medium, t.offsite, ok=False)
        runs = target_runs(ledger, t.name)
        if not runs:
            h.reason = f"target {t.name}: never backed up"
        else:
            last = runs[-1]
            ended = _utc(last.ended_at or last.started_at)
            h.last_run_at = ended.isoformat()
            if last.state not in ("succeeded", "flagged"):
                h.reason = f"target {t.name}: last run failed at {ended:%Y-%m-%d %H:%M} UTC: {last.error}"
            elif now - ended > max_age:
                h.reason = (f"target {t.name}: last good run {ended:%Y-%m-%d %H:%M} UTC is older than "
                            f"{cfg.backup.max_copy_age_hours:g} h")
            else:
                h.ok, h.snapshot = True, (last.details or {}).get("snapshot")
        out[t.name] = h
    return out


def verify_primary(cfg: FacilityConfig, ledger: Ledger, ds: Any, *, force: bool = False,
                   now: datetime | None = None) -> tuple[bool, str | None]:
    """Copy 1: the raw file on the facility storage matches the ledger (re-hashed when stale)."""
    now = now or datetime.now(timezone.utc)
    if not ds.raw_path:
        return False, "no raw copy on the facility storage"
    try:
        st = os.stat(ds.raw_path)
    except OSError as exc:
        return False, f"raw file {ds.raw_path}: {exc.strerror or exc}"
    prev = ledger.get_record(ds.uid, PRIMARY) or {}
    fresh = (prev.get("verified") and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns
             and (at := _parse(prev.get("verified_at"))) is not None
             and now - at < timedelta(days=cfg.backup.primary_verify_days))
    if fresh and not force:
        return True, None
    expected = ExpectedContent(ds.sha256, ds.blake3, ds.size_bytes)
    why = check_local_file(ds.raw_path, expected) or check_companion_files(ledger.files(ds.uid, "companion"))
    body = {"verified": why is None, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "algorithm": expected.algorithm,
            "verified_at": now.isoformat() if why is None else prev.get("verified_at"),
            "checked_at": now.isoformat(), "reason": why}
    ledger.put_record(ds.uid, PRIMARY, body)
    if why:
        log.error("dataset %s: primary raw copy %s does not match the ledger: %s", ds.uid, ds.raw_path, why)
        return False, f"raw file {ds.raw_path}: {why}"
    return True, None


def evaluate_dataset(cfg: FacilityConfig, ledger: Ledger, ds: Any, health: dict[str, TargetHealth], *,
                     force_primary: bool = False, now: datetime | None = None) -> Verdict:
    now = now or datetime.now(timezone.utc)
    b = cfg.backup
    copies: list[CopyStatus] = []
    reasons: list[str] = []
    ok, why = verify_primary(cfg, ledger, ds, force=force_primary, now=now)
    copies.append(CopyStatus("primary", b.primary_medium, False, ok, why or "raw tree"))
    if not ok:
        reasons.append(f"primary: {why}")
    for t in b.targets:
        h = health[t.name]
        rec = ledger.get_record(ds.uid, record_kind(t.name)) or {}
        if not h.ok:
            copies.append(CopyStatus(t.name, t.medium, t.offsite, False, h.reason))
            reasons.append(h.reason or f"target {t.name}: unavailable")
        elif not rec:
            copies.append(CopyStatus(t.name, t.medium, t.offsite, False, "not backed up yet"))
            reasons.append(f"target {t.name}: not backed up yet")
        elif rec.get("snapshot") != h.snapshot:
            copies.append(CopyStatus(t.name, t.medium, t.offsite, False, "not in the latest snapshot"))
            reasons.append(f"target {t.name}: not in the latest snapshot {h.snapshot}")
        elif not rec.get("verified"):
            copies.append(CopyStatus(t.name, t.medium, t.offsite, False, rec.get("reason")))
            reasons.append(f"target {t.name}: copy not verified: {rec.get('reason')}")
        else:
            copies.append(CopyStatus(t.name, t.medium, t.offsite, True,
                                     f"snapshot {str(h.snapshot)[:8]}, verified {rec.get('verified_at')}"))
    good = [c for c in copies if c.verified]
    media = sorted({c.medium for c in good})
    offsite = sum(1 for c in good if c.offsite)
    if len(good) < b.required_copies:
        reasons.append(f"{len(good)} verified cop{'y' if len(good) == 1 else 'ies'}, {b.required_copies} required")
    if len(media) < b.required_media:
        reasons.append(f"{len(media)} medi{'um' if len(media) == 1 else 'a'} ({', '.join(media) or 'none'}), "
                       f"{b.required_media} required")
    if offsite < b.required_offsite:
        reasons.append(f"{offsite} off-site cop{'y' if offsite == 1 else 'ies'}, {b.required_offsite} required")
    compliant = (len(good) >= b.required_copies and len(media) >= b.required_media
                 and offsite >= b.required_offsite)
    return Verdict(uid=ds.uid, name=ds.name, project=ds.project, compliant=compliant, copies=len(good),
                   media=media, offsite_copies=offsite, reasons=[] if compliant else reasons, locations=copies,
                   evaluated_at=now.isoformat(), size_bytes=ds.size_bytes)


def evaluate_policy(cfg: FacilityConfig, ledger: Ledger, uids: list[str] | None = None, *,
                    ctx: RunContext | None = None, force_primary: bool = False,
                    now: datetime | None = None) -> list[Verdict]:
    """Decide 3-2-1 for every collected dataset (or ``uids``); record verdicts; return them."""
    now = now or datetime.now(timezone.utc)
    health = target_health(cfg, ledger, now)
    verdicts = []
    for ds in ledger.datasets():
        if uids is not None and ds.uid not in uids:
            continue
        if not ds.raw_path or ds.state in ("quarantined", "discovered"):
            continue
        try:
            v = evaluate_dataset(cfg, ledger, ds, health, force_primary=force_primary, now=now)
        except Exception as exc:  # one dataset's problem never hides the others' verdicts
            log.exception("dataset %s: 3-2-1 evaluation failed", ds.uid)
            v = Verdict(ds.uid, ds.name, ds.project, False, 0, [], 0, [f"evaluation failed: {exc}"],
                        evaluated_at=now.isoformat(), size_bytes=ds.size_bytes)
        prev = ledger.get_record(ds.uid, VERDICT) or {}
        ledger.put_record(ds.uid, VERDICT, v.to_dict())
        if (prev.get("compliant"), prev.get("copies"), prev.get("reasons")) != (v.compliant, v.copies, v.reasons):
            with ledger.stage(ds.uid, "backup", ctx) as outcome:
                outcome.details = {"compliant": v.compliant, "copies": v.copies, "media": v.media,
                                   "offsite_copies": v.offsite_copies}
                if not v.compliant:
                    outcome.state, outcome.error = "flagged", "; ".join(v.reasons)
            refresh_provenance(cfg, ledger, ds.uid)  # the RO-Crate lists the copies; never fails the evaluation
            log.info("dataset %s: 3-2-1 %s (%d verified copies%s)", ds.uid,
                     "holds" if v.compliant else "does NOT hold", v.copies,
                     "" if v.compliant else ": " + "; ".join(v.reasons))
        verdicts.append(v)
    return verdicts


def backup_status(cfg: FacilityConfig, ledger: Ledger, *, refresh: bool = True) -> dict[str, Any]:
    """Per dataset, per project and per target, for ``microfair backup-status`` and the dashboard."""
    now = datetime.now(timezone.utc)
    if refresh:
        rows = [v.to_dict() for v in evaluate_policy(cfg, ledger, now=now)]
    else:
        rows = []
        for ds in ledger.datasets():
            body = ledger.get_record(ds.uid, VERDICT)
            if body:
                rows.append(body)
    projects: dict[str, dict[str, Any]] = {}
    for r in rows:
        p = projects.setdefault(r.get("project") or "(none)", {"datasets": 0, "compliant": 0, "bytes": 0,
                                                                "bytes_compliant": 0})
        p["datasets"] += 1
        p["bytes"] += r.get("size_bytes") or 0
        if r["compliant"]:
            p["compliant"] += 1
            p["bytes_compliant"] += r.get("size_bytes") or 0
    health = target_health(cfg, ledger, now)
    targets = {}
    for name, h in health.items():
        runs = target_runs(ledger, name)
        last = (runs[-1].details or {}) if runs else {}
        targets[name] = {**asdict(h), "bytes_added": last.get("bytes_added"), "dedup_ratio": last.get("dedup_ratio"),
                         "duration_s": last.get("duration_s"), "repository_bytes": last.get("repository_bytes")}
    return {"evaluated_at": now.isoformat(), "rule": {"copies": cfg.backup.required_copies,
                                                     "media": cfg.backup.required_media,
                                                     "offsite": cfg.backup.required_offsite},
            "compliant": sum(1 for r in rows if r["compliant"]), "datasets": rows, "projects": projects,
            "targets": targets}
