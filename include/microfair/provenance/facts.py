"""What the crate needs that no stage records itself, snapshotted into the ledger record ``provenance``.

The crate is built from the ledger alone (:mod:`microfair.provenance.crate`). A few facts are not in
the ledger when a stage ends, so :func:`snapshot_facts` adds them, right after each stage:

* per finished stage event: the software versions and the settings it ran with (conversion settings,
  QC thresholds, naming policy, iRODS mode, 3-2-1 rule), taken from the configuration at that moment;
* the SHA-256 and size of the small files the stages write (reports, records, thumbnails, sidecar);
* the OME-Zarr's tree digest (:mod:`microfair.provenance.digest`), once per conversion;
* the facility (name, institution, ROR) from the configuration.

Events that ended before this snapshot was first taken get the configuration of that moment, marked
``"recorded_after": true``: the dataset page and the crate say so instead of pretending.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from microfair.provenance.actions import MAX_PER_STAGE
from microfair.provenance.digest import file_sha256, tree_digest

log = logging.getLogger(__name__)

RECORD = "provenance"
#: Ledger file roles whose files are described one by one (small files; the Zarr gets a tree digest).
SMALL_ROLES = ("sidecar", "record", "report", "thumbnail")
#: The distributions whose versions each stage's software depends on (beyond microfair itself).
STAGE_SOFTWARE = {
    "collect": ("blake3",),
    "validate": ("bioio", "ome-types"),
    "convert": ("zarr", "dask", "numpy", "ome-zarr-models"),
    "qc": ("numpy", "scikit-image"),
    "irods": ("python-irodsclient",),
    "backup": (),
    "deposit": ("requests",),
}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def software_versions(stage: str) -> dict[str, str]:
    names = ("microfair", *STAGE_SOFTWARE.get(stage, ()))
    out = {n: v for n in names if (v := _version(n))}
    out["python"] = platform.python_version()
    return out


def stage_parameters(cfg: Any, stage: str, ds: Any) -> dict[str, Any]:
    """The settings ``stage`` runs with, from the facility configuration (JSON-ready)."""
    if stage == "collect":
        zone = next((z for z in cfg.landing_zones if z.microscope == ds.microscope), None)
        return {"stability_seconds": zone.stability_seconds, "completion_marker": zone.completion_marker,
                "tree": zone.tree} if zone else {}
    if stage == "validate":
        return cfg.naming.model_dump(mode="json")
    if stage == "convert":
        return cfg.conversion.model_dump(mode="json")
    if stage == "qc":
        return cfg.qc.model_dump(mode="json")
    if stage == "irods":
        return {"mode": cfg.irods.mode, "include_zarr": cfg.irods.include_zarr}
    if stage == "backup":
        b = cfg.backup
        return {"required_copies": b.required_copies, "required_media": b.required_media,
                "required_offsite": b.required_offsite, "targets": [t.name for t in b.targets]}
    if stage == "deposit":
        return {"release_in_days": cfg.biostudies.release_in_days}
    return {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_facts(path: Path, known: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
        return known
    return {"size": st.st_size, "sha256": file_sha256(path), "mtime_ns": st.st_mtime_ns}


def snapshot_facts(cfg: Any, ledger: Any, uid: str) -> dict[str, Any]:
    """Bring the ``provenance`` record of ``uid`` up to date (see the module docstring) and return it."""
    ds = ledger.require(uid)
    prev = ledger.get_record(uid, RECORD) or {}
    body: dict[str, Any] = {k: v for k, v in prev.items() if k != "warnings"}
    body["facility"] = cfg.facility.model_dump(mode="json")
    body["licence"] = cfg.project_defaults(ds.project).license if ds.project else None
    runs = dict(prev.get("runs") or {})
    first = not runs
    events = ledger.events(uid)
    by_stage: dict[str, list[int]] = {}
    for ev in events:
        by_stage.setdefault(ev.stage, []).append(ev.id)
    listed = {str(i) for ids in by_stage.values() for i in ids[-MAX_PER_STAGE:]}  # what the crate lists
    runs = {k: v for k, v in runs.items() if k in listed}
    for ev in events:
        if ev.state == "running" or str(ev.id) in runs or str(ev.id) not in listed:
            continue
        runs[str(ev.id)] = {"stage": ev.stage, "software": software_versions(ev.stage),
                            "parameters": stage_parameters(cfg, ev.stage, ds), "recorded_at": _now(),
                            **({"recorded_after": True} if first and ev.ended_at and
                               (datetime.now(timezone.utc) - _aware(ev.ended_at)).total_seconds() > 3600 else {})}
    body["runs"] = runs
    known = prev.get("files") or {}
    files: dict[str, Any] = {}
    for f in ledger.files(uid):
        if f.role in SMALL_ROLES:
            facts = _file_facts(Path(f.path), known.get(f.path))
            if facts is not None:
                files[f.path] = facts
    body["files"] = files
    body["zarr"] = _zarr_facts(ledger, uid, ds, prev.get("zarr"))
    return body


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _zarr_facts(ledger: Any, uid: str, ds: Any, known: dict[str, Any] | None) -> dict[str, Any] | None:
    """The tree digest of the OME-Zarr, computed once per successful conversion (the convert event id)."""
    if not ds.zarr_path or not Path(ds.zarr_path).is_dir():
        return None
    converts = [e for e in ledger.events(uid, "convert") if e.state == "succeeded"]
    event_id = converts[-1].id if converts else None
    if known and known.get("path") == ds.zarr_path and known.get("convert_event") == event_id:
        return known
    log.info("%s: computing the tree digest of %s for its RO-Crate", uid, ds.zarr_path)
    digest = tree_digest(ds.zarr_path)
    return {"path": ds.zarr_path, "convert_event": event_id, **digest.to_dict(), "computed_at": _now()}
