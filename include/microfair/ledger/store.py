"""The :class:`Ledger`: idempotent writes and the reads the CLI and dashboard need."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from microfair.ledger.models import AuditEntry, Dataset, DatasetFile, Record, StageEvent, StageStatus, utcnow
from microfair.ledger.owner import current_owner, owner_alive

log = logging.getLogger(__name__)

#: Stages in life-cycle order, as the dashboard shows them.
STAGES = ("collect", "validate", "convert", "qc", "backup", "irods", "deposit")

#: Latest stage states that mean "this stage did not finish": the dataset needs another run.
UNFINISHED = ("failed", "interrupted")
#: Datasets that no re-run can move on (a person has to act first).
SETTLED_BAD = ("quarantined", "failed")
#: Datasets whose unfinished stages no longer matter: a newer version of the file took over.
RETIRED = ("superseded",)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _interrupted_reason(ev: StageEvent, why: str) -> str:
    owner = (ev.details or {}).get("owner") or {}
    who = f" (pid {owner['pid']} on {owner['host']})" if owner.get("pid") and owner.get("host") else ""
    return f"interrupted: the process running {ev.stage}{who} ended without finishing it; {why}"


@dataclass
class RunContext:
    """Where an event comes from in Airflow, so the dashboard can clear exactly that task."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    attempt: int = 1


@dataclass
class StageOutcome:
    """What a stage reports back into its event while it runs."""

    bytes: int | None = None
    checksum: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    state: str = "succeeded"  # a stage may set "flagged", "skipped" or "failed" (with ``error``) itself
    error: str | None = None


#: How long a write waits for another writer's lock before it gives up (seconds).
BUSY_TIMEOUT_S = 30.0
#: How the databases say that a lock was not granted in time (SQLite, PostgreSQL lock_timeout).
_LOCKED = ("database is locked", "database table is locked", "lock timeout", "could not obtain lock")


class LedgerBusy(RuntimeError):
    """Another writer held the ledger for longer than the busy timeout; the transaction was rolled back."""


def _sqlite_pragmas(busy_timeout_s: float):
    def apply(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return apply


def make_engine(url: str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
        return engine
    return create_engine(url, pool_pre_ping=True)


class Ledger:
    """Dataset ledger over any SQLAlchemy URL (SQLite by default, PostgreSQL at scale)."""

    def __init__(self, url: str, *, migrate: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.engine = make_engine(url, busy_timeout_s)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @classmethod
    def from_config(cls, cfg: Any, **kw: Any) -> "Ledger":
        return cls(cfg.ledger.url, **kw)

    # -- schema -------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        from microfair.ledger.migrate import upgrade

        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed whole, or rolled back whole (:class:`LedgerBusy` when another writer
        held the lock for longer than the busy timeout)."""
        try:
            with self._sessions() as s, s.begin():
                yield s
        except OperationalError as exc:
            if not any(m in str(exc.orig).lower() for m in _LOCKED):
                raise
            raise LedgerBusy(f"the ledger {self.url} is locked by another writer for more than "
                             f"{self.busy_timeout_s:g} s; nothing was changed, the task can be retried "
                             f"({str(exc.orig).strip()})") from exc

    # -- datasets -----------------------------------------------------------
    def get(self, uid: str) -> Dataset | None:
        with self.session() as s:
            return s.scalar(select(Dataset).where(Dataset.uid == uid))

    def require(self, uid: str) -> Dataset:
        ds = self.get(uid)
        if ds is None:
            raise KeyError(f"{uid}: no such dataset in the ledger")
        return ds

    def upsert_dataset(self, uid: str, **fields: Any) -> Dataset:
        with self.session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.uid == uid))
            if ds is None:
                ds = Dataset(uid=uid, **fields)
                s.add(ds)
            else:
                for k, v in fields.items():
                    setattr(ds, k, v)
            s.flush()
            return ds

    def update(self, uid: str, **fields: Any) -> Dataset:
        with self.session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.uid == uid))
            if ds is None:
                raise KeyError(f"{uid}: no such dataset in the ledger")
            for k, v in fields.items():
                setattr(ds, k, v)
            return ds

    def datasets(self, *, state: str | None = None, project: str | None = None) -> list[Dataset]:
        with self.session() as s:
            q = select(Dataset).order_by(Dataset.id)
            if state:
                q = q.where(Dataset.state == state)
            if project:
                q = q.where(Dataset.project == project)
            return list(s.scalars(q))

    def add_file(self, uid: str, role: str, path: str | Path, *, size_bytes: int | None = None,
                 sha256: str | None = None, blake3: str | None = None) -> None:
        with self.session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.uid == uid))
            if ds is None:
                raise KeyError(f"{uid}: no such dataset in the ledger")
            f = s.scalar(select(DatasetFile).where(DatasetFile.dataset_id == ds.id, DatasetFile.role == role,
                                                   DatasetFile.path == str(path)))
            if f is None:
                f = DatasetFile(dataset_id=ds.id, role=role, path=str(path))
                s.add(f)
            f.size_bytes, f.sha256, f.blake3 = size_bytes, sha256, blake3

    def files(self, uid: str, role: str | None = None) -> list[DatasetFile]:
        with self.session() as s:
            q = select(DatasetFile).join(Dataset).where(Dataset.uid == uid).order_by(DatasetFile.id)
            if role:
                q = q.where(DatasetFile.role == role)
            return list(s.scalars(q))

    # -- records ------------------------------------------------------------
    def put_record(self, uid: str, kind: str, body: dict[str, Any]) -> None:
        with self.session() as s:
            ds_id = s.scalar(select(Dataset.id).where(Dataset.uid == uid))
            if ds_id is None:
                raise KeyError(f"{uid}: no such dataset in the ledger")
            rec = s.scalar(select(Record).where(Record.dataset_id == ds_id, Record.kind == kind))
            if rec is None:
                s.add(Record(dataset_id=ds_id, kind=kind, body=body))
            else:
                rec.body = body
                rec.updated_at = utcnow()

    def get_record(self, uid: str, kind: str) -> dict[str, Any] | None:
        with self.session() as s:
            return s.scalar(select(Record.body).join(Dataset).where(Dataset.uid == uid, Record.kind == kind))

    # -- events -------------------------------------------------------------
    def start_event(self, uid: str | None, stage: str, ctx: RunContext | None = None) -> int:
        ctx = ctx or RunContext()
        with self.session() as s:
            ds_id = None
            if uid is not None:
                ds_id = s.scalar(select(Dataset.id).where(Dataset.uid == uid))
                if ds_id is None:
                    raise KeyError(f"{uid}: no such dataset in the ledger")
            ev = StageEvent(dataset_id=ds_id, stage=stage, state="running", attempt=ctx.attempt,
                            dag_id=ctx.dag_id, run_id=ctx.run_id, task_id=ctx.task_id, map_index=ctx.map_index,
                            details={"owner": current_owner()})
            s.add(ev)
            s.flush()
            if ds_id is not None:
                # A new attempt of this stage: an earlier one still "running" was cut off (killed process).
                for old in s.scalars(select(StageEvent).where(StageEvent.dataset_id == ds_id,
                                                              StageEvent.stage == stage, StageEvent.id < ev.id,
                                                              StageEvent.state == "running")):
                    self._interrupt(s, old, f"superseded by event {ev.id}")
                    log.warning("%s: %s event %d was left running; marked interrupted (new attempt: event %d)",
                                uid, stage, old.id, ev.id)
                self._set_status(s, ds_id, stage, "running", ev.id, None)
            return ev.id

    def finish_event(self, event_id: int, state: str, *, bytes: int | None = None, checksum: str | None = None,
                     error: str | None = None, details: dict[str, Any] | None = None) -> None:
        with self.session() as s:
            ev = s.get(StageEvent, event_id)
            if ev is None:
                raise KeyError(f"no stage event {event_id}")
            ev.state, ev.ended_at = state, utcnow()
            ev.bytes, ev.checksum, ev.error = bytes, checksum, error
            ev.details = details or None  # the running owner is dropped: it only matters while running
            if ev.dataset_id is not None:
                st = s.get(StageStatus, (ev.dataset_id, ev.stage))
                if st is None or st.event_id is None or st.event_id <= ev.id:  # never over a newer attempt
                    self._set_status(s, ev.dataset_id, ev.stage, state, ev.id, error)

    def _interrupt(self, s: Session, ev: StageEvent, why: str) -> None:
        reason = _interrupted_reason(ev, why)
        ev.state, ev.ended_at, ev.error = "interrupted", utcnow(), reason
        if ev.dataset_id is not None:
            st = s.get(StageStatus, (ev.dataset_id, ev.stage))
            if st is not None and st.event_id == ev.id:
                st.state, st.error, st.updated_at = "interrupted", reason, utcnow()

    def sweep_interrupted(self, *, older_than: timedelta = timedelta(minutes=10),
                          foreign_older_than: timedelta = timedelta(hours=24),
                          now: datetime | None = None) -> list[int]:
        """Mark ``interrupted`` the stage events left ``running`` by a process that is gone.

        An event started on this host is swept when it is older than ``older_than`` and its process
        (pid and start time, recorded at the start) no longer exists; a live process is never swept.
        One started on another host (or before owners were recorded) cannot be checked from here: it is
        swept once older than ``foreign_older_than``. Returns the ids of the events marked.
        """
        now = now or utcnow()
        marked: list[int] = []
        with self.session() as s:
            for ev in s.scalars(select(StageEvent).where(StageEvent.state == "running").order_by(StageEvent.id)):
                age = now - _aware(ev.started_at)
                alive = owner_alive((ev.details or {}).get("owner"))
                if alive is False and age >= older_than:
                    self._interrupt(s, ev, "found by the stale-event sweep (its process no longer exists)")
                elif alive is None and age >= foreign_older_than:
                    self._interrupt(s, ev, f"found by the stale-event sweep (running for more than "
                                           f"{foreign_older_than}, its process cannot be checked from this host)")
                else:
                    continue
                marked.append(ev.id)
        if marked:
            log.warning("ledger: %d stage event(s) left running by a process that is gone; marked interrupted: %s",
                        len(marked), marked)
        return marked

    def unfinished_datasets(self, stages: tuple[str, ...] | None = None) -> list[tuple[Dataset, str, str]]:
        """Datasets whose latest attempt of a stage failed or was interrupted: ``(dataset, stage, state)``.

        Quarantined and superseded datasets are left out. A dataset appears once per such
        stage, in life-cycle order. Call :meth:`sweep_interrupted` first to include orphans still
        marked ``running``.
        """
        with self.session() as s:
            q = (select(Dataset, StageStatus.stage, StageStatus.state)
                 .join(StageStatus, StageStatus.dataset_id == Dataset.id)
                 .where(StageStatus.state.in_(UNFINISHED), Dataset.state.not_in((*SETTLED_BAD, *RETIRED)))
                 .order_by(Dataset.id))
            if stages:
                q = q.where(StageStatus.stage.in_(stages))
            rows = [(ds, stage, state) for ds, stage, state in s.execute(q)]
        order = {st: i for i, st in enumerate(STAGES)}
        return sorted(rows, key=lambda r: (r[0].id, order.get(r[1], len(order))))

    @staticmethod
    def _set_status(s: Session, ds_id: int, stage: str, state: str, event_id: int, error: str | None) -> None:
        st = s.get(StageStatus, (ds_id, stage))
        if st is None:
            s.add(StageStatus(dataset_id=ds_id, stage=stage, state=state, event_id=event_id, error=error))
        else:
            st.state, st.event_id, st.error, st.updated_at = state, event_id, error, utcnow()

    @contextmanager
    def stage(self, uid: str | None, stage: str, ctx: RunContext | None = None) -> Iterator[StageOutcome]:
        """Record one attempt of ``stage``: running → succeeded/flagged/skipped, or failed with the reason.

        The exception is re-raised so that the Airflow task fails visibly too.
        """
        event_id = self.start_event(uid, stage, ctx)
        outcome = StageOutcome()
        try:
            yield outcome
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.finish_event(event_id, "failed", bytes=outcome.bytes, checksum=outcome.checksum, error=reason,
                              details={**outcome.details, "traceback": traceback.format_exc(limit=8)})
            raise
        self.finish_event(event_id, outcome.state, bytes=outcome.bytes, checksum=outcome.checksum,
                          error=outcome.error, details=outcome.details or None)

    def events(self, uid: str | None = None, stage: str | None = None) -> list[StageEvent]:
        with self.session() as s:
            q = select(StageEvent).order_by(StageEvent.id)
            if uid is not None:
                q = q.join(Dataset).where(Dataset.uid == uid)
            if stage:
                q = q.where(StageEvent.stage == stage)
            return list(s.scalars(q))

    def stage_states(self, uid: str) -> dict[str, StageStatus]:
        with self.session() as s:
            q = select(StageStatus).join(Dataset).where(Dataset.uid == uid)
            return {st.stage: st for st in s.scalars(q)}

    # -- audit --------------------------------------------------------------
    def audit(self, actor: str, action: str, uid: str | None = None, details: dict[str, Any] | None = None) -> None:
        with self.session() as s:
            ds_id = s.scalar(select(Dataset.id).where(Dataset.uid == uid)) if uid else None
            s.add(AuditEntry(actor=actor, action=action, dataset_id=ds_id, details=details))

    def audit_entries(self, action: str | None = None) -> list[AuditEntry]:
        with self.session() as s:
            q = select(AuditEntry).order_by(AuditEntry.id)
            if action:
                q = q.where(AuditEntry.action == action)
            return list(s.scalars(q))

    # -- summaries ----------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts per dataset state and per stage state, for `microfair status` and the demo."""
        with self.session() as s:
            by_state = dict(s.execute(select(Dataset.state, func.count()).group_by(Dataset.state)).all())
            stages: dict[str, dict[str, int]] = {}
            for stage, state, n in s.execute(
                select(StageStatus.stage, StageStatus.state, func.count()).group_by(StageStatus.stage, StageStatus.state)
            ):
                stages.setdefault(stage, {})[state] = n
            total_bytes = s.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0)))
            problems = [
                {"uid": uid, "name": name, "state": state, "reason": reason}
                for uid, name, state, reason in s.execute(
                    select(Dataset.uid, Dataset.name, Dataset.state, Dataset.reason)
                    .where(Dataset.state.in_(SETTLED_BAD)).order_by(Dataset.id)
                )
            ]
            problems += self._stage_problems(s)
            return {"datasets": sum(by_state.values()), "bytes": int(total_bytes or 0), "by_state": by_state,
                    "stages": stages, "problems": problems}


    @staticmethod
    def _stage_problems(s: Session) -> list[dict[str, Any]]:
        """Datasets (not quarantined) whose latest attempt of a stage failed, was interrupted, or is
        still ``running`` although its process on this host is gone (not yet swept)."""
        rows = s.execute(
            select(Dataset.uid, Dataset.name, StageStatus.stage, StageStatus.state, StageStatus.error,
                   StageEvent.details)
            .join(StageStatus, StageStatus.dataset_id == Dataset.id)
            .outerjoin(StageEvent, StageEvent.id == StageStatus.event_id)
            .where(StageStatus.state.in_((*UNFINISHED, "running")), Dataset.state.not_in((*SETTLED_BAD, *RETIRED)))
            .order_by(Dataset.id, StageStatus.stage))
        out = []
        for uid, name, stage, state, error, details in rows:
            if state == "running":
                owner = (details or {}).get("owner")
                if owner_alive(owner) is not False:
                    continue
                state, error = "interrupted", (f"interrupted: the process running {stage} (pid {owner['pid']} "
                                               f"on {owner['host']}) is gone; the next run of {stage} redoes it")
            out.append({"uid": uid, "name": name, "state": f"{stage} {state}",
                        "reason": f"{stage} {state}: {error or 'no message recorded'}"})
        return out


def as_dict(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in Dataset.__table__.columns:
        v = getattr(ds, col.name)
        out[col.name] = v.isoformat() if isinstance(v, datetime) else v
    return out
