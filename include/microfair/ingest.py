"""The ingest stages after collect: validate, convert, QC — one function per stage.

Each takes the facility configuration, the ledger, a dataset uid and the run
context, records one stage event, and returns the dataset state afterwards
(``validated``, ``converted``, ``qc_done`` or ``quarantined``). The DAG tasks
and the CLI call exactly these functions.

Where things go, mirroring the raw tree ``<raw>/<Project>/<Study>/<Experiment>/<name>``:

* ``<converted>/<Project>/<Study>/<Experiment>/<stem>.ome.zarr``: the OME-Zarr;
* ``<reports>/<Project>/<Study>/<Experiment>/<name>/``: ``dublin_core.json``,
  ``rembi.json``, ``image_metadata.json``, ``name_check.json``, ``METADATA.ome.xml``,
  ``qc.json`` and ``thumbnails/``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from microfair.config import FacilityConfig
from microfair.ledger import Dataset, Ledger, RunContext
from microfair.naming import check_name, split_extension
from microfair.provenance import refresh as refresh_provenance
from microfair.quarantine import quarantine
from microfair.safepath import safe_join

log = logging.getLogger(__name__)


def _tree(cfg: FacilityConfig, ds: Dataset) -> tuple[str, ...]:
    return Path(ds.raw_path).parent.relative_to(cfg.storage.raw).parts


def report_dir(cfg: FacilityConfig, ds: Dataset) -> Path:
    """``<reports>/<tree>/<raw name>/`` (the raw name, so that each version has its own), made safe."""
    return safe_join(cfg.storage.reports, *_tree(cfg, ds), Path(ds.raw_path).name)


def zarr_path(cfg: FacilityConfig, ds: Dataset) -> Path:
    stem, _ = split_extension(Path(ds.raw_path).name)
    return safe_join(cfg.storage.converted, *_tree(cfg, ds), f"{stem}.ome.zarr")


def write_json(path: Path, body: Any) -> Path:
    """Write JSON atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _require_state(ds: Dataset, allowed: tuple[str, ...], stage: str) -> None:
    if ds.state not in allowed:
        raise RuntimeError(f"{ds.uid}: cannot run {stage} on a dataset in state {ds.state!r}"
                           + (f" ({ds.reason})" if ds.reason else ""))


def validate_dataset(cfg: FacilityConfig, ledger: Ledger, uid: str, ctx: RunContext | None = None) -> str:
    """Naming convention, metadata through bioio, Dublin Core and REMBI records."""
    from microfair.eln.ingest import link_dataset
    from microfair.imaging import UnreadableImage, open_image
    from microfair.metadata import extract_metadata
    from microfair.metadata.records import build_dublin_core, build_rembi
    from microfair.metadata.sidecar import SidecarError, load_sidecar

    ds = ledger.require(uid)
    _require_state(ds, ("collected", "validated", "converted", "qc_done"), "validate")
    raw = Path(ds.raw_path)
    out = report_dir(cfg, ds)
    with ledger.stage(uid, "validate", ctx) as outcome:
        name = check_name(ds.name, types=cfg.naming.types, max_length=cfg.naming.max_length)
        ledger.put_record(uid, "name_check", name.to_dict())
        ledger.update(uid, name_valid=name.valid)
        write_json(out / "name_check.json", name.to_dict())
        flags: list[str] = []
        if not name.valid:
            problem = "name does not follow the convention: " + "; ".join(name.violations)
            log.warning("%s: %s (suggested: %s)", uid, problem, name.suggestion)
            if cfg.naming.policy == "quarantine":
                outcome.state, outcome.error = "failed", problem
                quarantine(cfg, ledger, uid, stage="validate", reason=problem, file=raw, move=True,
                           details={"suggestion": name.suggestion})
                return "quarantined"
            flags.append(problem)
        try:
            img = open_image(raw)
            meta = extract_metadata(img)
        except UnreadableImage as exc:
            outcome.state, outcome.error = "failed", str(exc)
            quarantine(cfg, ledger, uid, stage="validate", reason=str(exc), file=raw, move=True,
                       details={"error_class": exc.kind})  # damaged / unsupported_layout / no_reader
            return "quarantined"
        try:
            sidecar = load_sidecar(raw)
        except SidecarError as exc:
            sidecar = None
            flags.append(f"sidecar ignored: {exc}")
            log.warning("%s: sidecar %s.meta.yaml ignored: %s", uid, raw.name, exc)
        defaults = cfg.project_defaults(ds.project or "")
        facts = {"uid": uid, "file_name": ds.name, "size_bytes": ds.size_bytes, "sha256": ds.sha256,
                 "raw_path": ds.raw_path, "microscope": ds.microscope}
        args = dict(tokens=name.tokens, sidecar=sidecar, defaults=defaults, facility=cfg.facility)
        dublin_core = build_dublin_core(meta, facts, **args)
        rembi = build_rembi(meta, facts, **args)
        link_dataset(cfg, ledger, uid, sidecar, defaults, dublin_core, rembi)  # the ELN entry, if one is named
        meta_dict = meta.to_dict()
        ome_xml = meta_dict.pop("ome_xml", None) or ""
        (out / "METADATA.ome.xml").write_text(ome_xml, encoding="utf-8")
        for kind, body in (("image_metadata", meta_dict), ("dublin_core", dublin_core), ("rembi", rembi)):
            ledger.put_record(uid, kind, body)
            ledger.add_file(uid, "record", write_json(out / f"{kind}.json", body))
        ledger.update(uid, state="validated", reason=None)
        outcome.details = {"reader": meta.reader, "scenes": len(meta.scenes), "flags": flags}
        if flags:
            outcome.state = "flagged"
            outcome.error = "; ".join(flags)
    refresh_provenance(cfg, ledger, uid)  # the RO-Crate after each stage; logs, never fails the stage
    log.info("%s: validated (%s, %d scene(s))%s", uid, meta.reader, len(meta.scenes),
             f"; flagged: {'; '.join(flags)}" if flags else "")
    return "validated"


def convert_dataset(cfg: FacilityConfig, ledger: Ledger, uid: str, ctx: RunContext | None = None, *,
                    client: Any = None) -> str:
    """Convert the raw copy to OME-Zarr in one pass; the same pass yields the QC report and thumbnails.

    Re-running replaces the OME-Zarr atomically (the old copy goes only once the new one is in place).
    """
    from microfair.convert import convert_to_zarr
    from microfair.convert.proof import record_pixel_proof
    from microfair.imaging import UnreadableImage, open_image
    from microfair.metadata.report import record_metadata_report
    from microfair.qc import write_qc_report

    ds = ledger.require(uid)
    _require_state(ds, ("validated", "converted", "qc_done"), "convert")
    raw, out, reports = Path(ds.raw_path), zarr_path(cfg, ds), report_dir(cfg, ds)
    ome_file = reports / "METADATA.ome.xml"
    ome_xml = ome_file.read_text(encoding="utf-8") if ome_file.is_file() else None
    with ledger.stage(uid, "convert", ctx) as outcome:
        try:
            img = open_image(raw)
        except UnreadableImage as exc:
            # It was readable at validation: the raw copy changed or the disk is failing. Never quarantine
            # here on a guess; fail loudly so that a person looks (the raw copy is read-only).
            raise RuntimeError(f"raw copy {raw} can no longer be read: {exc}") from exc
        result = convert_to_zarr(img, out, settings=cfg.conversion, ome_xml=ome_xml or None, qc=cfg.qc,
                                 client=client, overwrite=True, uid=uid)
        qc_json = write_qc_report(result.qc, reports, uid=uid)
        record_metadata_report(ledger, uid, reports, out, ome_xml)  # metadata_report.json: what reached the Zarr
        ledger.add_file(uid, "zarr", out, size_bytes=result.written_bytes)
        ledger.add_file(uid, "report", qc_json)
        ledger.update(uid, state="converted", zarr_path=str(out))
        outcome.bytes = result.written_bytes
        outcome.details = {
            "zarr_path": str(out), "ngff_version": result.ngff_version, "scenes": len(result.scenes),
            "levels": [len(s.levels) for s in result.scenes], "seconds": round(result.seconds, 3),
            "mb_per_second": round(result.mb_per_second, 1), "source_bytes": result.source_bytes,
            "dask": "distributed" if client is not None else "threads",
        }
        outcome.details["pixel_proof"] = record_pixel_proof(ledger, uid, result)  # ledger record + stage provenance
    refresh_provenance(cfg, ledger, uid)
    return "converted"


def qc_dataset(cfg: FacilityConfig, ledger: Ledger, uid: str, ctx: RunContext | None = None, *,
               client: Any = None) -> str:
    """Record the QC report (computed in the conversion pass) and raise its flags; nothing is dropped.

    When no report is there (a Zarr converted by an earlier version), QC is computed from level 0.
    """
    from microfair.qc import qc_from_zarr, write_qc_report
    from microfair.qc.nyquist import attach_nyquist

    ds = ledger.require(uid)
    _require_state(ds, ("converted", "qc_done"), "qc")
    reports = report_dir(cfg, ds)
    qc_json = reports / "qc.json"
    with ledger.stage(uid, "qc", ctx) as outcome:
        if not qc_json.is_file():
            log.info("%s: no QC report from the conversion pass; computing it from %s", uid, ds.zarr_path)
            write_qc_report(qc_from_zarr(ds.zarr_path, cfg.qc, client=client, uid=uid), reports, uid=uid)
        report = attach_nyquist(qc_json, reports / "METADATA.ome.xml", cfg.qc, uid=uid,
                                image_metadata=ledger.get_record(uid, "image_metadata"))
        ledger.put_record(uid, "nyquist", report["nyquist"])
        ledger.put_record(uid, "qc", report)
        for rel in report.get("thumbnails", {}).values():
            ledger.add_file(uid, "thumbnail", reports / rel)
        ledger.update(uid, state="qc_done")
        flags = report.get("flags", [])
        outcome.details = {"passed": report.get("passed"), "flags": len(flags)}
        if flags:
            outcome.state = "flagged"
            outcome.error = "; ".join(f.get("reason", str(f)) for f in flags)
            log.warning("%s: QC flagged: %s", uid, outcome.error)
        else:
            log.info("%s: QC passed", uid)
    refresh_provenance(cfg, ledger, uid)
    return "qc_done"
