"""The deposit stage, step by step: validate → upload → submit → (wait) → record → DataCite.

Each step takes the facility configuration, the ledger, the study file and the dataset
selection, rebuilds the same :class:`~microfair.deposit.builder.DepositPlan` (cheap, so
that each Airflow task stands alone), records one ``deposit`` stage event per dataset
(the step is in the event details) and is idempotent:

* upload skips files already in the user folder with the same size and checksum;
* submit refuses when a file changed after it was uploaded (SHA-256 again, against the
  one recorded at upload) and re-submits under the accession already in the ledger;
* record stores the accession (``S-BIAD…``) and the DOI in each dataset's ``bia`` record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microfair.checksum import digest_file
from microfair.deposit.biostudies import BiostudiesClient, SubmissionRejected, UploadReport
from microfair.deposit.builder import DepositPlan, DepositSelection, plan_deposit
from microfair.deposit.datacite import DataciteClient, datacite_payload
from microfair.eln.notify import eln_links
from microfair.deposit.problems import DepositInvalid, Problem
from microfair.deposit.study import load_study
from microfair.deposit.validate import validate_plan
from microfair.provenance import refresh as refresh_provenance

log = logging.getLogger(__name__)

STAGE = "deposit"
RECORD = "bia"
ACTOR = "microfair-deposit"


class FileChangedError(RuntimeError):
    """A file's content differs from what was uploaded (or from the ledger): nothing is submitted."""

    def __init__(self, changed: list[tuple[str, str, str, str]]) -> None:
        self.changed = changed
        lines = "\n".join(f"  - {uid}: {remote} (sha256 was {old[:12]}…, now {new[:12]}…)"
                          for uid, remote, old, new in changed)
        super().__init__(f"{len(changed)} file(s) changed after they were uploaded; run the upload again "
                         f"(it re-sends them) before submitting:\n{lines}")


@dataclass(frozen=True)
class SubmissionRef:
    accno: str
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {"accno": self.accno, "version": self.version}


def _events(ledger: Any, uids: list[str], ctx: Any, step: str, state: str, *, error: str | None = None,
            details: dict[str, Any] | None = None) -> None:
    for uid in uids:
        ev = ledger.start_event(uid, STAGE, ctx)
        ledger.finish_event(ev, state, error=error, details={"step": step, **(details or {})})


def staging_dir(cfg: Any, selection: DepositSelection) -> Path:
    return Path(cfg.storage.reports) / "deposits" / selection.label()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def build(cfg: Any, ledger: Any, study_path: str | Path, selection: DepositSelection,
          *, today: dt.date | None = None) -> tuple[DepositPlan, list[Problem]]:
    """The plan and every problem (study file and ledger), without recording anything."""
    study, problems = load_study(study_path)
    plan = plan_deposit(cfg, ledger, study, selection, release_in_days=cfg.biostudies.release_in_days, today=today)
    if plan.accession is None:
        plan.accession = _known_accession(ledger, plan.uids())
    return plan, problems + validate_plan(plan, today=today)


def _known_accession(ledger: Any, uids: list[str]) -> str | None:
    for uid in uids:
        rec = ledger.get_record(uid, RECORD) or {}
        if rec.get("accession"):
            return rec["accession"]
    return None


def validate_deposit(cfg: Any, ledger: Any, study_path: str | Path, selection: DepositSelection,
                     ctx: Any = None, *, today: dt.date | None = None) -> DepositPlan:
    """Validate locally; write ``pagetab.json``/``.tsv`` and the file lists to the staging folder.

    Raises :class:`DepositInvalid` listing every problem (also recorded on each dataset and in the audit).
    """
    plan, problems = build(cfg, ledger, study_path, selection, today=today)
    uids = plan.uids()
    if problems:
        err = DepositInvalid(problems, f"study file {study_path}")
        for p in problems:
            log.error("deposit %s: %s", selection.label(), p)
        _events(ledger, uids, ctx, "validate", "failed", error=str(err),
                details={"problems": [str(p) for p in problems]})
        ledger.audit(ACTOR, "deposit_invalid", None, {"selection": selection.label(), "study_file": str(study_path),
                                                        "problems": [str(p) for p in problems]})
        raise err
    out = staging_dir(cfg, selection)
    pagetab = plan.pagetab()
    _write(out / "pagetab.json", pagetab.dumps())
    _write(out / "pagetab.tsv", pagetab.to_tsv())
    for name, entries in plan.file_lists().items():
        _write(out / name, json.dumps(entries, indent=2, ensure_ascii=False))
    for uid in uids:
        log.info("%s: ready for the BioImage Archive in %s (%s)", uid, selection.label(), plan.root_path)
    _events(ledger, uids, ctx, "validate", "succeeded",
            details={"files": len(plan.files()), "components": len(plan.components), "staging": str(out)})
    return plan


def upload_deposit(cfg: Any, ledger: Any, plan: DepositPlan, client: BiostudiesClient, ctx: Any = None) -> UploadReport:
    """Upload the raw files and the file lists into ``RootPath`` of the user folder (resumable)."""
    files = plan.files()
    # The raw copy must still be what was collected: never publish a file the ledger does not vouch for.
    digests = {f.remote: digest_file(f.local).sha256 for f in files}
    bad = [(f.uid, f.remote, f.sha256 or "", digests[f.remote]) for f in files if digests[f.remote] != f.sha256]
    if bad:
        err = FileChangedError(bad)
        _events(ledger, sorted({b[0] for b in bad}), ctx, "upload", "failed",
                error=f"raw copy differs from its ledger checksum: {err}")
        raise RuntimeError(f"raw copies differ from their ledger checksums; not uploading:\n{err}")
    uploads: dict[str, dict[str, Any]] = {}
    force = []
    for f in files:
        rec = ledger.get_record(f.uid, RECORD) or {}
        before = (rec.get("uploads") or {}).get(f.remote)
        uploads.setdefault(f.uid, dict(rec.get("uploads") or {}))
        if before and before.get("sha256") != digests[f.remote]:
            log.warning("%s: %s changed since it was uploaded: sending it again", f.uid, f.remote)
            force.append(f"{plan.root_path}/{f.remote}")

    def done(local: Path, remote: str, uid: str) -> None:
        rel = remote[len(plan.root_path) + 1:]
        if uid in uploads:
            uploads[uid][rel] = {"size": local.stat().st_size, "sha256": digests.get(rel),
                                 "at": dt.datetime.now(dt.timezone.utc).isoformat()}
            rec = ledger.get_record(uid, RECORD) or {}
            ledger.put_record(uid, RECORD, {**rec, "root_path": plan.root_path, "uploads": uploads[uid]})

    out = staging_dir(cfg, plan.selection)
    triples = [(f.local, f"{plan.root_path}/{f.remote}", f.uid) for f in files]
    triples += [(out / name, f"{plan.root_path}/{name}", "file-list") for name in plan.file_lists()]
    try:
        report = client.upload_files(triples, on_uploaded=done, force=force)
    except Exception as exc:
        _events(ledger, plan.uids(), ctx, "upload", "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    _events(ledger, plan.uids(), ctx, "upload", "succeeded", details=report.to_dict())
    return report


def verify_unchanged(ledger: Any, plan: DepositPlan) -> None:
    """Raise :class:`FileChangedError` when a file's SHA-256 differs from the one recorded at upload."""
    changed = []
    for f in plan.files():
        rec = (ledger.get_record(f.uid, RECORD) or {}).get("uploads", {}).get(f.remote)
        if rec is None:
            raise RuntimeError(f"{f.uid}: {f.remote} was never uploaded; run the upload step first")
        now = digest_file(f.local).sha256
        if now != rec.get("sha256"):
            changed.append((f.uid, f.remote, rec.get("sha256") or "", now))
    if changed:
        raise FileChangedError(changed)


def submit_deposit(cfg: Any, ledger: Any, plan: DepositPlan, client: BiostudiesClient, ctx: Any = None) -> SubmissionRef:
    """Check nothing changed since upload, then submit the PageTab asynchronously."""
    uids = plan.uids()
    try:
        verify_unchanged(ledger, plan)
        accno, version = client.submit_async(plan.pagetab().to_json())
    except SubmissionRejected as exc:
        record_rejection(ledger, plan, None, None, exc.messages, ctx, step="submit")
        raise
    except Exception as exc:
        _events(ledger, uids, ctx, "submit", "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    for uid in uids:
        rec = ledger.get_record(uid, RECORD) or {}
        ledger.put_record(uid, RECORD, {**rec, "accession": accno, "version": version, "status": "SUBMITTED"})
        log.info("%s: submitted to the BioImage Archive as %s version %d", uid, accno, version)
    _events(ledger, uids, ctx, "submit", "succeeded", details={"accession": accno, "version": version})
    return SubmissionRef(accno, version)


def record_rejection(ledger: Any, plan: DepositPlan, accno: str | None, version: int | None,
                     messages: list[str], ctx: Any = None, *, step: str = "wait") -> None:
    """Show and record the server's errors on every dataset of the deposit."""
    label = f"{accno} version {version}" if accno else "the submission"
    for uid in plan.uids():
        for m in messages:
            log.error("%s: BioStudies rejected %s: %s", uid, label, m)
        rec = ledger.get_record(uid, RECORD) or {}
        ledger.put_record(uid, RECORD, {**rec, "status": "INVALID", "errors": messages})
    _events(ledger, plan.uids(), ctx, step, "failed", error=f"BioStudies rejected {label}: " + "; ".join(messages),
            details={"accession": accno, "version": version, "errors": messages})
    ledger.audit(ACTOR, "deposit_rejected", None, {"accession": accno, "errors": messages,
                                                   "selection": plan.selection.label()})


def record_deposit(cfg: Any, ledger: Any, plan: DepositPlan, ref: SubmissionRef, client: BiostudiesClient,
                   ctx: Any = None) -> dict[str, Any]:
    """After ``POST_PROCESSED``: store the accession and the DOI on every dataset of the deposit."""
    sub = client.get_submission(ref.accno) or {}
    doi = next((a.get("value") for a in sub.get("attributes", []) if a.get("name") == "DOI"), None)
    body = {"accession": ref.accno, "version": ref.version, "status": "POST_PROCESSED", "doi": doi,
            "release_date": plan.release_date.isoformat(), "root_path": plan.root_path,
            "url": f"https://www.ebi.ac.uk/biostudies/bioimages/studies/{ref.accno}",
            "study": plan.study.model_dump(mode="json", exclude_defaults=True)}
    for uid in plan.uids():
        rec = ledger.get_record(uid, RECORD) or {}
        ledger.put_record(uid, RECORD, {**rec, **body, "errors": []})
        log.info("%s: deposited in the BioImage Archive as %s (DOI %s)", uid, ref.accno, doi or "not yet assigned")
    _events(ledger, plan.uids(), ctx, "record", "succeeded", details=body)
    ledger.audit(ACTOR, "deposited", None, {**body, "datasets": plan.uids(), "selection": plan.selection.label()})
    from microfair.deposit.targets.base import Publication
    from microfair.deposit.targets.run import record_publication

    record_publication(ledger, plan.uids(), Publication(
        "bia", "published", ref.accno, doi or ref.accno, body["url"], version=ref.version,
        published_at=dt.datetime.now(dt.timezone.utc).isoformat(), api=client.base_url))
    for uid in plan.uids():
        refresh_provenance(cfg, ledger, uid)  # the RO-Crate gets the accession, the DOI and the depositor
    return body


def datacite_export(cfg: Any, ledger: Any, plan: DepositPlan, client: DataciteClient | None = None,
                    ctx: Any = None) -> dict[str, Any]:
    """Write the DataCite JSON of the deposited study; create (or update) a draft DOI when a client is given."""
    uids = plan.uids()
    rec = next((ledger.get_record(u, RECORD) for u in uids if (ledger.get_record(u, RECORD) or {}).get("accession")),
               None)
    if not rec:
        raise RuntimeError(f"{plan.selection.label()}: not deposited yet (no accession in the ledger)")
    previous = ledger.get_record(uids[0], "datacite") or {}
    settings = cfg.datacite
    publisher = settings.publisher or "EMBL-EBI BioImage Archive"
    payload = datacite_payload(plan.study, accession=rec["accession"], bia_doi=rec.get("doi"), publisher=publisher,
                               doi=previous.get("doi"), prefix=None if previous.get("doi") else settings.prefix,
                               eln_links=eln_links(ledger, uids))
    out = staging_dir(cfg, plan.selection) / f"datacite_{rec['accession']}.json"
    _write(out, json.dumps(payload, indent=2, ensure_ascii=False))
    doi = previous.get("doi")
    if client is not None:
        if doi:
            client.update(doi, payload)
        else:
            doi = client.create_draft(payload)
    body = {"accession": rec["accession"], "doi": doi, "state": "draft" if doi else "exported",
            "file": str(out), "payload": payload}
    for uid in uids:
        ledger.put_record(uid, "datacite", body)
        log.info("%s: DataCite metadata for %s written%s", uid, rec["accession"], f"; draft DOI {doi}" if doi else "")
    _events(ledger, uids, ctx, "datacite", "succeeded", details={"accession": rec["accession"], "doi": doi})
    for uid in uids:
        refresh_provenance(cfg, ledger, uid)
    return body


def datacite_for_accession(cfg: Any, ledger: Any, accno: str) -> dict[str, Any]:
    """The DataCite payload of a deposited study, from the ledger alone (``microfair datacite export ACC``)."""
    from microfair.deposit.study import StudyMetadata

    for ds in ledger.datasets():
        rec = ledger.get_record(ds.uid, RECORD) or {}
        if rec.get("accession") == accno and rec.get("study"):
            previous = ledger.get_record(ds.uid, "datacite") or {}
            study = StudyMetadata.model_validate(rec["study"])
            return datacite_payload(study, accession=accno, bia_doi=rec.get("doi"),
                                    publisher=cfg.datacite.publisher or "EMBL-EBI BioImage Archive",
                                    doi=previous.get("doi"), prefix=None if previous.get("doi") else cfg.datacite.prefix,
                                    eln_links=eln_links(ledger, [d.uid for d in ledger.datasets()
                                                                 if (ledger.get_record(d.uid, RECORD) or {}).get("accession") == accno]))
    raise KeyError(f"{accno}: no deposited study with this accession in the ledger")
