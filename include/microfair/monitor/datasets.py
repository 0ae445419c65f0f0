"""The datasets table (filtered, searched and paginated in SQL) and one dataset's detail."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, or_, select

from microfair.ledger import STAGES, AuditEntry, Dataset, DatasetFile, Ledger, Record, StageEvent, StageStatus
from microfair.monitor.overview import FAILED_STATES, utc
from microfair.monitor.stages import NOT_CONFIGURED, PENDING, QUARANTINED, StageAvailability

VERDICT = "backup_verdict"
IRODS = "irods"
BIA = "bia"
#: The record a stage leaves when it is done (its cell shows a summary of it).
STAGE_RECORD = {"irods": IRODS, "deposit": BIA}
STAGE_STATES = ("succeeded", "flagged", "failed", "interrupted", "running", "skipped", QUARANTINED, PENDING)



@dataclass
class DatasetQuery:
    """What the user asked for in the datasets table."""

    q: str | None = None
    microscope: str | None = None
    project: str | None = None
    state: str | None = None
    stage: str | None = None
    stage_state: str | None = None
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        self.q = (self.q or "").strip() or None
        self.page = max(1, int(self.page))
        self.page_size = max(1, min(500, int(self.page_size)))
        if self.stage is not None and self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; stages are {', '.join(STAGES)}")
        if self.stage_state is not None and self.stage_state not in STAGE_STATES:
            raise ValueError(f"unknown stage state {self.stage_state!r}; one of {', '.join(STAGE_STATES)}")


@dataclass
class StageCell:
    state: str  # succeeded|flagged|failed|interrupted|running|skipped|pending|quarantined|not configured
    error: str | None = None
    event_id: int | None = None
    label: str | None = None  # e.g. "3 copies · 2 media · 1 off-site" for backup, "S-BIAD123" for deposit
    hint: str | None = None  # tooltip when there is no error, e.g. the iRODS collection


@dataclass
class DatasetRow:
    id: int
    uid: str
    name: str
    microscope: str
    project: str | None
    state: str
    size_bytes: int | None
    created_at: datetime | None
    stages: dict[str, StageCell]
    reason: str | None = None


@dataclass
class DatasetPage:
    query: DatasetQuery
    rows: list[DatasetRow]
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.page_size))


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def backup_label(verdict: dict[str, Any] | None) -> tuple[str, str | None]:
    """(state, label) of the 3-2-1 cell from a ``backup_verdict`` record."""
    if not verdict:
        return PENDING, None
    label = (f"{verdict.get('copies', 0)} cop{'y' if verdict.get('copies') == 1 else 'ies'} · "
             f"{len(verdict.get('media') or [])} media · {verdict.get('offsite_copies', 0)} off-site")
    return ("succeeded" if verdict.get("compliant") else "flagged"), label


def dataset_page(ledger: Ledger, query: DatasetQuery, availability: dict[str, StageAvailability]) -> DatasetPage:
    cond = []
    if query.q:
        pat = _like(query.q)
        cond.append(or_(Dataset.uid.like(pat, escape="\\"), Dataset.name.like(pat, escape="\\"),
                        Dataset.study.like(pat, escape="\\"), Dataset.experiment.like(pat, escape="\\")))
    if query.microscope:
        cond.append(Dataset.microscope == query.microscope)
    if query.project:
        cond.append(Dataset.project == query.project)
    if query.state:
        cond.append(Dataset.state == query.state)
    if query.stage and query.stage_state:
        if query.stage_state == PENDING:
            cond.append(~exists().where(StageStatus.dataset_id == Dataset.id, StageStatus.stage == query.stage))
            cond.append(Dataset.state != QUARANTINED)
        elif query.stage_state == QUARANTINED:
            cond.append(Dataset.state == QUARANTINED)
            cond.append(~exists().where(StageStatus.dataset_id == Dataset.id, StageStatus.stage == query.stage))
        else:
            cond.append(exists().where(StageStatus.dataset_id == Dataset.id, StageStatus.stage == query.stage,
                                       StageStatus.state == query.stage_state))
    with ledger.session() as s:
        total = int(s.scalar(select(func.count()).select_from(Dataset).where(*cond)) or 0)
        page = list(s.execute(
            select(Dataset.id, Dataset.uid, Dataset.name, Dataset.microscope, Dataset.project, Dataset.state,
                   Dataset.size_bytes, Dataset.created_at, Dataset.reason)
            .where(*cond).order_by(Dataset.id.desc())
            .limit(query.page_size).offset((query.page - 1) * query.page_size)))
        ids = [r.id for r in page]
        statuses: dict[int, dict[str, StageStatus]] = {}
        verdicts: dict[int, dict[str, Any]] = {}
        summaries: dict[int, dict[str, dict[str, Any]]] = {}
        if ids:
            for st in s.scalars(select(StageStatus).where(StageStatus.dataset_id.in_(ids))):
                statuses.setdefault(st.dataset_id, {})[st.stage] = st
            for ds_id, body in s.execute(select(Record.dataset_id, Record.body)
                                         .where(Record.dataset_id.in_(ids), Record.kind == VERDICT)):
                verdicts[ds_id] = body
            # Only the fields the cells show, not the whole (possibly large) deposit or iRODS record.
            keys = ("accession", "status", "doi", "collection")
            for ds_id, kind, *values in s.execute(
                    select(Record.dataset_id, Record.kind, *(Record.body[k].as_string() for k in keys))
                    .where(Record.dataset_id.in_(ids), Record.kind.in_((IRODS, BIA)))):
                summaries.setdefault(ds_id, {})[kind] = dict(zip(keys, values))
    rows = []
    for r in page:
        cells = stage_cells(statuses.get(r.id, {}), verdicts.get(r.id), availability, summaries.get(r.id),
                            ds_state=r.state, ds_reason=r.reason)
        rows.append(DatasetRow(r.id, r.uid, r.name, r.microscope, r.project, r.state, r.size_bytes,
                               utc(r.created_at), cells, r.reason))
    return DatasetPage(query, rows, total)


def stage_cells(statuses: dict[str, Any], verdict: dict[str, Any] | None,
                availability: dict[str, StageAvailability],
                records: dict[str, dict[str, Any]] | None = None, *, ds_state: str | None = None,
                ds_reason: str | None = None) -> dict[str, StageCell]:
    """One cell per stage; ``records`` holds the dataset's ``irods`` and ``bia`` records (or their summary).

    A stage that has not run on a quarantined dataset is "quarantined" (it will not run), never "pending".
    """
    records = records or {}
    cells = {}
    for stage in STAGES:
        st = statuses.get(stage)
        avail = availability.get(stage)
        record = records.get(STAGE_RECORD.get(stage, ""))
        if st is None and record is None and avail is not None and not avail.configured:
            cells[stage] = StageCell(NOT_CONFIGURED)
            continue
        if st is None and record is None and ds_state == QUARANTINED:
            cells[stage] = StageCell(QUARANTINED, hint=ds_reason)
            continue
        cell = StageCell(st.state, st.error, st.event_id) if st is not None else StageCell(PENDING)
        if stage == "backup" and cell.state not in (*FAILED_STATES, "running"):
            state, label = backup_label(verdict)
            cell.label = label
            if verdict:
                cell.state = state
                cell.error = "; ".join(verdict.get("reasons") or []) or None
        elif record is not None:
            if st is None:
                cell.state = "succeeded"
            if stage == "irods" and cell.state in ("succeeded", "skipped"):
                cell.label = "registered"
                cell.hint = record.get("collection")
            elif stage == "deposit":
                cell.label = deposit_label(record)
                cell.hint = record.get("doi") and f"DOI {record['doi']}"
        cells[stage] = cell
    return cells


def deposit_label(bia: dict[str, Any]) -> str | None:
    """``S-BIAD123`` once deposited, with the submission status while it is not processed yet."""
    acc, status = bia.get("accession"), (bia.get("status") or "").upper()
    if not acc:
        return "invalid" if status == "INVALID" else ("uploaded" if status == "" else status.lower())
    if status and status != "POST_PROCESSED":
        return f"{acc} · {status.lower().replace('_', ' ')}"
    return acc


@dataclass
class DatasetDetail:
    dataset: Dataset
    records: dict[str, dict[str, Any]]
    files: list[DatasetFile]
    events: list[StageEvent]
    stages: dict[str, StageCell]
    audit: list[AuditEntry] = field(default_factory=list)

    @property
    def errors(self) -> list[StageEvent]:
        """Failed and interrupted attempts (the latest ones and the earlier ones since re-run)."""
        return [e for e in self.events if e.state in FAILED_STATES]

    @property
    def warnings(self) -> list[StageEvent]:
        """Flags (naming, QC, 3-2-1) of the latest attempt of each stage: the data went on."""
        current = {c.event_id for c in self.stages.values() if c.event_id is not None}
        return [e for e in self.events if e.state == "flagged" and e.error and e.id in current]

    @property
    def failed_now(self) -> set[int]:
        """Events that are the latest (failed) attempt of their stage: those a re-run may clear."""
        return {c.event_id for c in self.stages.values() if c.state in FAILED_STATES and c.event_id is not None}

    @property
    def quarantined(self) -> bool:
        return self.dataset.state == QUARANTINED


def dataset_detail(ledger: Ledger, uid: str, availability: dict[str, StageAvailability]) -> DatasetDetail | None:
    with ledger.session() as s:
        ds = s.scalar(select(Dataset).where(Dataset.uid == uid))
        if ds is None:
            return None
        records = {r.kind: r.body for r in s.scalars(select(Record).where(Record.dataset_id == ds.id))}
        files = list(s.scalars(select(DatasetFile).where(DatasetFile.dataset_id == ds.id).order_by(DatasetFile.id)))
        events = list(s.scalars(select(StageEvent).where(StageEvent.dataset_id == ds.id)
                                .order_by(StageEvent.started_at, StageEvent.id)))
        statuses = {st.stage: st for st in s.scalars(select(StageStatus).where(StageStatus.dataset_id == ds.id))}
        audit = list(s.scalars(select(AuditEntry).where(AuditEntry.dataset_id == ds.id)
                               .order_by(AuditEntry.id.desc()).limit(50)))
    return DatasetDetail(ds, records, files, events,
                         stage_cells(statuses, records.get(VERDICT), availability, records, ds_state=ds.state,
                                     ds_reason=ds.reason), audit)


def get_event(ledger: Ledger, event_id: int) -> tuple[StageEvent, str | None, bool] | None:
    """(event, dataset uid, is the latest attempt of its stage and failed)."""
    with ledger.session() as s:
        ev = s.get(StageEvent, event_id)
        if ev is None:
            return None
        uid = s.scalar(select(Dataset.uid).where(Dataset.id == ev.dataset_id)) if ev.dataset_id else None
        if ev.dataset_id is None:
            latest = ev.state in FAILED_STATES
        else:
            st = s.get(StageStatus, (ev.dataset_id, ev.stage))
            latest = st is not None and st.event_id == ev.id and st.state in FAILED_STATES
        return ev, uid, latest


def qc_thumbnails(qc: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(label, path) of every thumbnail a QC record names, whichever of the usual shapes it has."""
    if not qc:
        return []
    out: list[tuple[str, str]] = []
    thumbs = qc.get("thumbnails")
    if isinstance(thumbs, dict):
        out += [(str(k), str(v)) for k, v in thumbs.items() if isinstance(v, str)]
    elif isinstance(thumbs, list):
        for i, t in enumerate(thumbs):
            if isinstance(t, str):
                out.append((f"#{i}", t))
            elif isinstance(t, dict) and isinstance(t.get("path"), str):
                out.append((str(t.get("channel") or t.get("name") or f"#{i}"), t["path"]))
    if isinstance(qc.get("thumbnail"), str):
        out.append(("overview", qc["thumbnail"]))
    for i, ch in enumerate(qc.get("channels") or []):
        if isinstance(ch, dict) and isinstance(ch.get("thumbnail"), str):
            out.append((str(ch.get("name") or ch.get("channel") or f"channel {i}"), ch["thumbnail"]))
    seen, unique = set(), []
    for label, path in out:
        if path not in seen:
            seen.add(path)
            unique.append((label, path))
    return unique


def thumbnail_file(reports_root: Path, converted_root: Path, ledger: Ledger, uid: str, n: int) -> Path | None:
    """The ``n``-th thumbnail of a dataset's QC record as a file, or None when it is not there.

    A relative path in the record is relative to the dataset's report folder (where ``qc.json`` is),
    and must stay inside it on the resolved path: a ``..`` cannot escape. An absolute path must be
    inside the reports or converted tree.
    """
    thumbs = qc_thumbnails(ledger.get_record(uid, "qc"))
    if not 0 <= n < len(thumbs):
        return None
    raw = Path(thumbs[n][1])
    if raw.is_absolute():
        allowed = [Path(os.path.realpath(reports_root)), Path(os.path.realpath(converted_root))]
        real = Path(os.path.realpath(raw))
    else:
        folder = report_folder(reports_root, ledger, uid)
        if folder is None:
            return None
        allowed = [Path(os.path.realpath(folder))]
        real = Path(os.path.realpath(folder / raw))
    if not any(real.is_relative_to(a) for a in allowed) or not real.is_file():
        return None
    return real


def report_folder(reports_root: Path, ledger: Ledger, uid: str) -> Path | None:
    """The dataset's report folder: where its ``qc.json`` is (ledger file), else its thumbnails' folder."""
    files = ledger.files(uid)
    for f in files:
        if f.role == "report" and Path(f.path).name == "qc.json":
            return Path(f.path).parent
    for f in files:
        if f.role == "thumbnail":
            return Path(f.path).parent.parent
    return None
