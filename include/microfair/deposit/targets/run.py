"""One deposit to Dataverse or Zenodo, step by step, from the same study file and ledger as the BIA deposit.

validate (study file + files, every problem at once) → preflight (token, collection, licence, limits) →
draft (created, or the draft of an earlier run, or a new version) → upload (resumable, checksums) →
metadata → publish, or leave the draft for a person. The ledger record ``publications`` of every
deposited dataset holds, per target, the persistent identifier, the landing page, the state and the
files sent (with their checksums); the draft is recorded as soon as it exists, so that a crash resumes
it instead of opening a second one. A run after a success with the same files and metadata changes
nothing and reports the existing identifier; the RO-Crates are left out of that comparison
(:mod:`~microfair.deposit.targets.unchanged`), and each dataset's crate is refreshed right after a
publish so that it names the PID and landing page (not after a draft: publishing it later sends nothing again).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microfair.deposit.builder import DepositPlan, DepositSelection, plan_deposit
from microfair.deposit.problems import DepositInvalid, Problem
from microfair.deposit.run import ACTOR, RECORD as BIA_RECORD, FileChangedError, _events, staging_dir
from microfair.deposit.study import load_study
from microfair.deposit.targets.base import DepositItem, Publication, UploadOutcome, hash_file
from microfair.deposit.targets.citation import TARGET_TITLES, study_digest
from microfair.deposit.targets.drafts import WaitingDraft, waiting_drafts  # noqa: F401 (the /publish view's list)
from microfair.deposit.targets.unchanged import content_fingerprint, same_files

log = logging.getLogger(__name__)

RECORD = "publications"


@dataclass
class DepositOutcome:
    publication: Publication
    action: str  # unchanged | published | draft
    upload: UploadOutcome = field(default_factory=UploadOutcome)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, **self.publication.to_dict(), "upload": self.upload.to_dict()}


# -- the ledger --------------------------------------------------------------------------------------------
def publications(ledger: Any, uid: str) -> dict[str, dict[str, Any]]:
    """Every target a dataset is deposited in (``bia`` from its own record when not mirrored yet)."""
    out = dict(ledger.get_record(uid, RECORD) or {})
    bia = ledger.get_record(uid, BIA_RECORD) or {}
    if "bia" not in out and bia.get("accession"):
        out["bia"] = {"target": "bia", "state": "published" if bia.get("status") == "POST_PROCESSED" else "submitted",
                      "id": bia["accession"], "pid": bia.get("doi") or bia["accession"],
                      "landing_page": bia.get("url"), "version": bia.get("version") or 1}
    return out


def previous_publication(ledger: Any, uids: list[str], target: str) -> Publication | None:
    for uid in uids:
        body = (ledger.get_record(uid, RECORD) or {}).get(target)
        if body:
            return Publication.from_dict(body)
    return None


def record_publication(ledger: Any, uids: list[str], pub: Publication, request: dict[str, Any] | None = None) -> None:
    for uid in uids:
        body = dict(ledger.get_record(uid, RECORD) or {})
        body[pub.target] = {**pub.to_dict(), "datasets": uids, **({"request": request} if request else {})}
        ledger.put_record(uid, RECORD, body)


# -- what is deposited --------------------------------------------------------------------------------------
def _zip_zarr(src: Path, dest: Path) -> Path:
    """One deterministic ZIP (stored, sorted, fixed times) of an OME-Zarr tree; rebuilt only when it changed."""
    entries = sorted(p for p in src.rglob("*") if p.is_file())
    stamp = json.dumps([(p.relative_to(src).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in entries])
    side = dest.with_name(dest.name + ".source.json")
    if dest.is_file() and side.is_file() and side.read_text() == stamp:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for p in entries:
            info = zipfile.ZipInfo(f"{src.name}/{p.relative_to(src).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            with open(p, "rb") as fh, zf.open(info, "w", force_zip64=True) as out:
                while chunk := fh.read(8 << 20):
                    out.write(chunk)
    os.replace(tmp, dest)
    side.write_text(stamp)
    return dest


def gather_items(cfg: Any, ledger: Any, plan: DepositPlan, target: str, *, include_zarr: bool = False,
                 include_reports: bool = True) -> list[DepositItem]:
    """The raw files (checked against the ledger), the OME-Zarr as one archive each when asked, the reports.

    Raises :class:`~microfair.deposit.run.FileChangedError` when a raw copy no longer matches its ledger SHA-256.
    """
    from microfair.ingest import report_dir

    items: list[DepositItem] = []
    changed = []
    extras_done: set[str] = set()
    for f in plan.files():
        size, sha, md5 = hash_file(f.local)
        if sha != f.sha256:
            changed.append((f.uid, f.remote, f.sha256 or "", sha))
        ds = ledger.require(f.uid)
        is_raw = ds.raw_path is not None and Path(ds.raw_path) == Path(f.local)
        kind = "raw" if is_raw else "companion" if f.role == "companion" else "metadata"  # metadata: its RO-Crate
        items.append(DepositItem(f.remote, f.local, size, sha, md5, f.uid, kind))
        if not is_raw or f.uid in extras_done:  # e.g. the dataset's RO-Crate beside it: no second set of extras
            continue
        extras_done.add(f.uid)
        folder = f.remote.rsplit("/", 1)[0] if "/" in f.remote else ""
        if include_zarr and ds.zarr_path and Path(ds.zarr_path).is_dir():
            z = Path(ds.zarr_path)
            archive = _zip_zarr(z, staging_dir(cfg, plan.selection) / target / "archives" / folder / f"{z.name}.zip")
            size, sha, md5 = hash_file(archive)
            items.append(DepositItem(f"{folder}/{z.name}.zip".lstrip("/"), archive, size, sha, md5, f.uid,
                                     "zarr-archive"))
        if include_reports:
            rdir = report_dir(cfg, ds)
            if rdir.is_dir():
                for p in sorted(x for x in rdir.iterdir() if x.is_file() and not x.name.startswith(".")):
                    size, sha, md5 = hash_file(p)
                    items.append(DepositItem(f"reports/{folder}/{rdir.name}/{p.name}".replace("//", "/"), p, size,
                                             sha, md5, f.uid, "report"))
    if changed:
        raise FileChangedError(changed)
    return items


class LocalChecks:
    """A target's local validation alone (no connection): what ``validate`` steps and the CLI need."""

    def __init__(self, name: str) -> None:
        self.name = name

    def validate(self, study: Any, items: list[DepositItem]) -> list[Problem]:
        if self.name == "zenodo":
            from microfair.deposit.zenodo import validate_zenodo

            return validate_zenodo(study, items)
        from microfair.deposit.targets.citation import validate_citation

        return validate_citation(study, self.name)


def _file_problems(plan: DepositPlan) -> list[Problem]:
    p = []
    if not plan.files():
        sel = plan.selection
        p.append(Problem("components", f"no validated dataset matches project={sel.project!r} study={sel.study!r} "
                                       "and the components' select:"))
    for f in plan.files():
        if not Path(f.local).is_file():
            p.append(Problem(f"files[{f.remote}]", f"raw copy {f.local} of {f.uid} is missing"))
        if not f.sha256:
            p.append(Problem(f"files[{f.remote}]", f"{f.uid} has no SHA-256 in the ledger"))
    return p


def context_of(ledger: Any, plan: DepositPlan) -> dict[str, Any]:
    """What the ledger adds to the study file: the BIA accession and DOI, the production date, the methods."""
    ctx: dict[str, Any] = {}
    for uid in plan.uids():
        bia = ledger.get_record(uid, BIA_RECORD) or {}
        if bia.get("accession"):
            ctx.setdefault("bia_accession", bia["accession"])
            if bia.get("doi"):
                ctx.setdefault("bia_doi", bia["doi"])
    times = [ds.source_mtime_ns for uid in plan.uids() if (ds := ledger.get(uid)) and ds.source_mtime_ns]
    if times:
        ctx["production_date"] = dt.datetime.fromtimestamp(min(times) / 1e9, dt.timezone.utc).date().isoformat()
    ctx["imaging_methods"] = sorted({m for a in plan.acquisitions() for m in a.methods})
    return ctx


def build_repository(cfg: Any, ledger: Any, study_path: str | Path, selection: DepositSelection, target: Any, *,
                     include_zarr: bool = False, include_reports: bool = True,
                     today: dt.date | None = None) -> tuple[DepositPlan, list[DepositItem], list[Problem]]:
    """The plan, the files and every problem for ``target``, recording nothing and sending nothing."""
    study, problems = load_study(study_path)
    plan = plan_deposit(cfg, ledger, study, selection, release_in_days=cfg.biostudies.release_in_days, today=today)
    problems = problems + _file_problems(plan)
    items: list[DepositItem] = []
    if not problems:
        items = gather_items(cfg, ledger, plan, target.name, include_zarr=include_zarr, include_reports=include_reports)
    return plan, items, problems + target.validate(study, items)


def validate_repository(cfg: Any, ledger: Any, study_path: str | Path, selection: DepositSelection, target: Any,
                        ctx: Any = None, **kw: Any) -> tuple[DepositPlan, list[DepositItem]]:
    """Raise :class:`DepositInvalid` listing every problem (recorded on each dataset and in the audit)."""
    plan, items, problems = build_repository(cfg, ledger, study_path, selection, target, **kw)
    where = TARGET_TITLES.get(target.name, target.name)
    if problems:
        err = DepositInvalid(problems, f"study file {study_path}", where=where)
        for p in problems:
            log.error("deposit %s to %s: %s", selection.label(), where, p)
        _events(ledger, plan.uids(), ctx, f"{target.name}:validate", "failed", error=str(err),
                details={"target": target.name, "problems": [str(p) for p in problems]})
        ledger.audit(ACTOR, "deposit_invalid", None, {"target": target.name, "selection": selection.label(),
                                                        "study_file": str(study_path),
                                                        "problems": [str(p) for p in problems]})
        raise err
    for uid in plan.uids():
        log.info("%s: ready for %s in %s (%d file(s))", uid, where, selection.label(), len(items))
    return plan, items


def deposit(cfg: Any, ledger: Any, study_path: str | Path, selection: DepositSelection, target: Any, *,
            publish: bool = True, include_zarr: bool = False, include_reports: bool = True, ctx: Any = None,
            today: dt.date | None = None) -> DepositOutcome:
    """Validate, then deposit to ``target``; idempotent (see the module docstring)."""
    plan, items = validate_repository(cfg, ledger, study_path, selection, target, ctx,
                                      include_zarr=include_zarr, include_reports=include_reports, today=today)
    uids, study, name = plan.uids(), plan.study, target.name
    context = context_of(ledger, plan)
    fingerprint = content_fingerprint(items)  # the crates left out: they change after every stage
    digest = study_digest({"study": study.model_dump(mode="json", exclude_defaults=True), "context": context,
                           "files": fingerprint})
    request = {"study_file": str(study_path), "project": selection.project, "study": selection.study,
               "include_zarr": include_zarr, "include_reports": include_reports}
    previous = previous_publication(ledger, uids, name)
    if previous and previous.state == "published" and previous.metadata_sha256 == digest \
            and same_files(previous.files, fingerprint) and target.exists(previous):
        for uid in uids:
            log.info("%s: already published in %s as %s (%s): nothing to do", uid, name, previous.pid,
                     previous.landing_page)
        _events(ledger, uids, ctx, f"{name}:publish", "succeeded",
                details={"target": name, "unchanged": True, "pid": previous.pid})
        return DepositOutcome(previous, "unchanged")
    if previous and previous.state == "draft" and not publish and previous.metadata_sha256 == digest \
            and same_files(previous.files, fingerprint):
        log.info("%s: draft %s in %s is complete and waits for a person to publish it", selection.label(),
                 previous.id, name)
    step = "preflight"
    try:
        target.preflight(study, items)
        step = "draft"
        draft = target.open_draft(study, previous, context)
        opened = target.as_draft(draft)
        opened.metadata_sha256 = None  # not complete yet: a later run must finish it
        record_publication(ledger, uids, opened, request)
        step = "upload"
        upload = target.upload(draft, items)
        _events(ledger, uids, ctx, f"{name}:upload", "succeeded", details={"target": name, **upload.to_dict()})
        step = "metadata"
        target.set_metadata(draft, study, context)
        step = "publish" if publish else "draft"
        pub = target.publish(draft) if publish else target.as_draft(draft)
    except Exception as exc:
        _events(ledger, uids, ctx, f"{name}:{step}", "failed", error=f"{type(exc).__name__}: {exc}",
                details={"target": name})
        raise
    pub.files, pub.metadata_sha256 = upload.files, digest
    record_publication(ledger, uids, pub, request)
    action = "published" if publish else "draft"
    for uid in uids:
        log.info("%s: %s in %s as %s (%s)", uid, action, name, pub.pid, pub.landing_page)
    _events(ledger, uids, ctx, f"{name}:{'publish' if publish else 'draft'}", "succeeded",
            details={"target": name, "pid": pub.pid, "landing_page": pub.landing_page, "state": pub.state})
    ledger.audit(ACTOR, "published" if publish else "deposit_draft", None,
                 {"target": name, "pid": pub.pid, "landing_page": pub.landing_page, "datasets": uids,
                  "selection": selection.label()})
    if publish:
        _refresh_crates(cfg, ledger, uids)
    return DepositOutcome(pub, action, upload)


def _refresh_crates(cfg: Any, ledger: Any, uids: list[str]) -> None:
    """The PID and landing page into each dataset's RO-Crate at once (never fails the deposit)."""
    from microfair.provenance import refresh

    for uid in uids:
        refresh(cfg, ledger, uid)
