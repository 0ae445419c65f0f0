"""The overview page: activity per microscope and project, throughput, backlog, failures, storage.

Every figure is one aggregate query on indexed columns, so the page stays fast with
tens of thousands of datasets.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select

from microfair.config import FacilityConfig
from microfair.ledger import Dataset, DatasetFile, Ledger, StageEvent, StageStatus
from microfair.units import format_bytes

log = logging.getLogger(__name__)

#: The stage states a failure list shows (the same as :data:`microfair.monitor.datasets.FAILED_STATES`).
FAILED_STATES = ("failed", "interrupted")


def utc(dt: datetime | None) -> datetime | None:
    """Ledger timestamps are UTC; SQLite returns them naive."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@dataclass
class Windows:
    """Start of today, of this week (Monday) and of this month, in the server's local time."""

    today: datetime
    week: datetime
    month: datetime

    @classmethod
    def at(cls, now: datetime | None = None) -> "Windows":
        local = (now or datetime.now(timezone.utc)).astimezone()
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        week = midnight - timedelta(days=midnight.weekday())
        month = midnight.replace(day=1)
        return cls(*(d.astimezone(timezone.utc) for d in (midnight, week, month)))


@dataclass
class Activity:
    key: str
    today: int = 0
    today_bytes: int = 0
    week: int = 0
    week_bytes: int = 0
    month: int = 0
    month_bytes: int = 0


@dataclass
class Backlog:
    microscope: str
    path: str
    waiting: int = 0
    waiting_bytes: int = 0
    oldest: datetime | None = None
    failed: int = 0
    free_bytes: int | None = None
    missing: bool = False  # the zone's folder does not exist or is not mounted: nothing can be collected


@dataclass
class Failure:
    event_id: int
    uid: str | None
    name: str | None
    microscope: str | None
    stage: str
    error: str | None
    at: datetime | None
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None
    state: str = "failed"  # failed | interrupted (the stage's latest attempt)
    ds_state: str | None = None  # the dataset's state, e.g. "quarantined"
    ds_reason: str | None = None

    @property
    def quarantined(self) -> bool:
        return self.ds_state == "quarantined"

    @property
    def rerunnable(self) -> bool:
        """A plain re-run (clear the task) can succeed: never on a quarantined dataset (release it first)."""
        return bool(self.dag_id and self.run_id and self.task_id) and not self.quarantined


@dataclass
class TierUsage:
    tier: str
    path: str
    ledger_bytes: int | None
    volume_used: int | None = None
    volume_total: int | None = None


@dataclass
class Overview:
    windows: Windows
    by_microscope: list[Activity]
    by_project: list[Activity]
    throughput: list[tuple[date, int, int]]  # day, datasets, bytes
    backlog: list[Backlog]
    failures: list[Failure]
    failures_total: int
    storage: list[TierUsage]
    backup_targets: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)


def _activity(ledger: Ledger, w: Windows, *, microscope: str | None = None,
              project: str | None = None) -> tuple[list[Activity], list[Activity]]:
    """Acquisitions and bytes today / this week / this month, per microscope and per project.

    One range scan on ``created_at`` grouped by (microscope, project), summed here both ways.
    The group keys are expressions on purpose: grouping on the bare column lets SQLite walk the
    whole table in ``microscope`` index order instead of reading only this month's rows.
    """
    size = func.coalesce(Dataset.size_bytes, 0)

    def window(start: datetime) -> tuple[Any, Any]:
        inside = Dataset.created_at >= start
        return (func.sum(case((inside, 1), else_=0)), func.sum(case((inside, size), else_=0)))

    scope_key = func.coalesce(Dataset.microscope, "(none)")
    project_key = func.coalesce(Dataset.project, "(none)")
    q = (select(scope_key, project_key, *window(w.today), *window(w.week), *window(w.month))
         .where(Dataset.created_at >= min(w.week, w.month)).group_by(scope_key, project_key))
    if microscope:
        q = q.where(Dataset.microscope == microscope)
    if project:
        q = q.where(Dataset.project == project)
    scopes: dict[str, list[int]] = {}
    projects: dict[str, list[int]] = {}
    with ledger.session() as s:
        for m, p, *vals in s.execute(q):
            for key, into in ((str(m), scopes), (str(p), projects)):
                acc = into.setdefault(key, [0] * 6)
                for i, v in enumerate(vals):
                    acc[i] += int(v or 0)
    return ([Activity(k, *v) for k, v in sorted(scopes.items())],
            [Activity(k, *v) for k, v in sorted(projects.items())])


def throughput(ledger: Ledger, days: int, *, now: datetime | None = None, microscope: str | None = None,
               project: str | None = None) -> list[tuple[date, int, int]]:
    """Datasets and bytes collected per day over the last ``days`` days (UTC days), zeros included."""
    now = now or datetime.now(timezone.utc)
    start_day = (now.astimezone(timezone.utc) - timedelta(days=days - 1)).date()
    start = datetime.combine(start_day, datetime.min.time(), tzinfo=timezone.utc)
    day = func.date(Dataset.collected_at)
    q = (select(day, func.count(), func.coalesce(func.sum(Dataset.size_bytes), 0))
         .where(Dataset.collected_at >= start).group_by(day))
    if microscope:
        q = q.where(Dataset.microscope == microscope)
    if project:
        q = q.where(Dataset.project == project)
    with ledger.session() as s:
        found = {}
        for d, n, b in s.execute(q):
            d = d if isinstance(d, date) else date.fromisoformat(str(d)[:10])
            found[d] = (int(n), int(b))
    return [(start_day + timedelta(days=i), *found.get(start_day + timedelta(days=i), (0, 0)))
            for i in range(days)]


def backlog(cfg: FacilityConfig, ledger: Ledger) -> list[Backlog]:
    """Per landing zone: acquisitions found but not yet collected, and failed collections."""
    waiting_q = (select(Dataset.microscope, func.count(), func.coalesce(func.sum(Dataset.size_bytes), 0),
                        func.min(Dataset.created_at))
                 .where(Dataset.state == "discovered").group_by(Dataset.microscope))
    failed_q = (select(Dataset.microscope, func.count()).join(StageStatus, StageStatus.dataset_id == Dataset.id)
                .where(StageStatus.stage == "collect", StageStatus.state == "failed").group_by(Dataset.microscope))
    with ledger.session() as s:
        waiting = {m: (int(n), int(b), utc(t)) for m, n, b, t in s.execute(waiting_q)}
        failed = dict(s.execute(failed_q).all())
    out = []
    for z in cfg.landing_zones:
        n, b, oldest = waiting.get(z.microscope, (0, 0, None))
        free = None
        missing = not _is_dir(z.path)
        if not missing:
            try:
                free = shutil.disk_usage(z.path).free
            except OSError:
                missing = True
        out.append(Backlog(z.microscope, str(z.path), n, b, oldest, int(failed.get(z.microscope, 0)), free,
                           missing))
    return out


def _is_dir(path: Any) -> bool:
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def failures(ledger: Ledger, *, limit: int = 50, microscope: str | None = None,
             project: str | None = None) -> tuple[list[Failure], int]:
    """Datasets whose latest attempt of some stage failed (newest first), and run-level failures."""
    base = (select(StageStatus.event_id, Dataset.uid, Dataset.name, Dataset.microscope, StageStatus.stage,
                   StageStatus.error, StageStatus.updated_at, StageEvent.dag_id, StageEvent.run_id,
                   StageEvent.task_id, StageEvent.map_index, StageStatus.state, Dataset.state, Dataset.reason)
            .join(Dataset, Dataset.id == StageStatus.dataset_id)
            .outerjoin(StageEvent, StageEvent.id == StageStatus.event_id)
            .where(StageStatus.state.in_(FAILED_STATES)))
    count_q = (select(func.count()).select_from(StageStatus).join(Dataset, Dataset.id == StageStatus.dataset_id)
               .where(StageStatus.state.in_(FAILED_STATES)))
    if microscope:
        base, count_q = base.where(Dataset.microscope == microscope), count_q.where(Dataset.microscope == microscope)
    if project:
        base, count_q = base.where(Dataset.project == project), count_q.where(Dataset.project == project)
    # Run-level events (no dataset: backup runs, discovery) are few; read the newest through the
    # (dataset_id, stage) index and filter here, rather than let the planner walk every failed event.
    runs_q = (select(StageEvent.id, StageEvent.state, StageEvent.stage, StageEvent.error, StageEvent.started_at,
                     StageEvent.dag_id, StageEvent.run_id, StageEvent.task_id, StageEvent.map_index)
              .where(StageEvent.dataset_id.is_(None)).order_by(StageEvent.id.desc()).limit(200))
    since = datetime.now(timezone.utc) - timedelta(days=7)
    with ledger.session() as s:
        rows = [Failure(ev, uid, name, m, st, err, utc(at), d, r, t, mi, state, ds_state, ds_reason)
                for ev, uid, name, m, st, err, at, d, r, t, mi, state, ds_state, ds_reason in
                s.execute(base.order_by(StageStatus.updated_at.desc()).limit(limit))]
        total = int(s.scalar(count_q) or 0)
        if not (microscope or project):
            runs = [Failure(ev, None, None, None, st, err, utc(at), d, r, t, mi, state)
                    for ev, state, st, err, at, d, r, t, mi in s.execute(runs_q)
                    if state in FAILED_STATES and utc(at) >= since][:10]
            rows = runs + rows
            total += len(runs)
    return rows, total


def _sums(ledger: Ledger) -> tuple[int, int, int | None]:
    """(datasets, bytes, bytes with a raw copy) in one pass over the datasets table."""
    raw_size = case((Dataset.raw_path.is_not(None), Dataset.size_bytes), else_=None)
    with ledger.session() as s:
        n, b, raw = s.execute(select(func.count(), func.coalesce(func.sum(Dataset.size_bytes), 0),
                                     func.sum(raw_size)).select_from(Dataset)).one()
    return int(n), int(b), (int(raw) if raw is not None else None)


def storage(cfg: FacilityConfig, ledger: Ledger, *, raw_bytes: int | None = None) -> list[TierUsage]:
    """Bytes the ledger knows per storage tier, with the volume's used and total size.

    ``raw_bytes``: the raw tier's total when the caller already summed it (see :func:`overview`).
    """
    raw = raw_bytes if raw_bytes is not None else _sums(ledger)[2]
    with ledger.session() as s:
        by_role = dict(s.execute(select(DatasetFile.role, func.sum(DatasetFile.size_bytes))
                                 .group_by(DatasetFile.role)).all())
    known = {"raw": raw, "converted": by_role.get("zarr") or by_role.get("converted"),
             "quarantine": by_role.get("quarantine"),
             "reports": sum(int(by_role.get(r) or 0) for r in ("record", "report", "thumbnail", "qc")) or None}
    out = []
    for tier in ("raw", "converted", "quarantine", "reports"):
        path = getattr(cfg.storage, tier)
        u = TierUsage(tier, str(path), int(known[tier]) if known[tier] is not None else None)
        try:
            du = shutil.disk_usage(path)
            u.volume_used, u.volume_total = du.used, du.total
        except OSError:
            pass
        out.append(u)
    return out


def backup_targets(cfg: FacilityConfig, ledger: Ledger) -> list[dict[str, Any]]:
    """Latest run of each configured backup target (from its run events), for the storage panel."""
    out = []
    with ledger.session() as s:
        for t in cfg.backup.targets:
            ev = s.execute(
                select(StageEvent.state, StageEvent.ended_at, StageEvent.details, StageEvent.error)
                .where(StageEvent.stage == "backup", StageEvent.dataset_id.is_(None), StageEvent.state != "running",
                       StageEvent.details["target"].as_string() == t.name)
                .order_by(StageEvent.id.desc()).limit(1)).first()
            details = (ev.details or {}) if ev else {}
            out.append({"name": t.name, "medium": t.medium, "offsite": t.offsite,
                        "state": ev.state if ev else None, "last_run": utc(ev.ended_at) if ev else None,
                        "error": ev.error if ev else None, "repository_bytes": details.get("repository_bytes")})
    return out


def totals(ledger: Ledger) -> dict[str, int]:
    n, b, _ = _sums(ledger)
    return {"datasets": n, "bytes": b}


def overview(cfg: FacilityConfig, ledger: Ledger, *, microscope: str | None = None, project: str | None = None,
             days: int = 30, now: datetime | None = None,
             failed: tuple[list[Failure], int] | None = None) -> Overview:
    """Everything the overview page shows; ``failed``: the result of :func:`failures` when already read."""
    w = Windows.at(now)
    fails, n_fail = failed if failed is not None else failures(ledger, microscope=microscope, project=project)
    n_datasets, n_bytes, raw_bytes = _sums(ledger)
    by_microscope, by_project = _activity(ledger, w, microscope=microscope, project=project)
    return Overview(
        windows=w,
        by_microscope=by_microscope,
        by_project=by_project,
        throughput=throughput(ledger, days, now=now, microscope=microscope, project=project),
        backlog=backlog(cfg, ledger),
        failures=fails, failures_total=n_fail,
        storage=storage(cfg, ledger, raw_bytes=raw_bytes),
        backup_targets=backup_targets(cfg, ledger),
        totals={"datasets": n_datasets, "bytes": n_bytes},
    )


def filter_choices(ledger: Ledger) -> dict[str, list[str]]:
    """Distinct microscopes, projects and states, for the filter drop-downs (indexed columns)."""
    with ledger.session() as s:
        return {
            "microscopes": [m for (m,) in s.execute(select(Dataset.microscope).distinct().order_by(Dataset.microscope))],
            "projects": [p for (p,) in s.execute(select(Dataset.project).distinct().order_by(Dataset.project)) if p],
            "states": [x for (x,) in s.execute(select(Dataset.state).distinct().order_by(Dataset.state))],
        }


def human_bytes(n: int | None) -> str:
    """Bytes in IEC units (MiB, GiB): the one convention of the dashboard and the CLI."""
    return format_bytes(n)


__all__ = ["Activity", "Backlog", "Failure", "Overview", "TierUsage", "Windows", "backlog", "backup_targets",
           "failures", "filter_choices", "human_bytes", "overview", "storage", "throughput", "totals", "utc"]
