"""Write a dataset's crate where it belongs, after every stage: :func:`refresh`.

* ``<OME-Zarr>/ro-crate-metadata.json``, next to the root ``zarr.json`` (as the OME 2024 NGFF challenge
  places it). The converted tier is not read-only (a re-conversion replaces the whole Zarr), so the
  crate is written to a temporary name in the Zarr root and renamed over the old one (atomic on one file
  system); a re-conversion publishes a Zarr without a crate and the refresh after it writes a new one.
* ``<reports>/<tree>/<raw name>/ro-crate-metadata.json``, the same facts with the reports folder as root.

A crate is rewritten only when its content changed (no wall-clock field in it), so that a refresh
that finds nothing new leaves the file, its mtime and its backups alone.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from microfair.provenance.chain import read_chain
from microfair.provenance.crate import build_crate
from microfair.provenance.digest import CRATE_NAME
from microfair.provenance.facts import RECORD, snapshot_facts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CratePlace:
    where: str  # "zarr" or "reports"
    root: Path

    @property
    def path(self) -> Path:
        return self.root / CRATE_NAME


def crate_paths(cfg: Any, ds: Any) -> list[CratePlace]:
    """Where the crate of ``ds`` goes: its OME-Zarr root (once converted) and its reports folder."""
    from microfair.ingest import report_dir

    out = []
    if ds.zarr_path and Path(ds.zarr_path).is_dir():
        out.append(CratePlace("zarr", Path(ds.zarr_path)))
    if ds.raw_path:
        out.append(CratePlace("reports", report_dir(cfg, ds)))
    return out


def crate_file(cfg: Any, ledger: Any, uid: str) -> Path | None:
    """The crate in the dataset's reports folder (what the dashboard serves), or None when there is none."""
    ds = ledger.get(uid)
    if ds is None or not ds.raw_path:
        return None
    place = next((p for p in crate_paths(cfg, ds) if p.where == "reports"), None)
    return place.path if place is not None and place.path.is_file() else None


def chain_summary(crate: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard shows without rebuilding the crate: each action in one line, the data entities."""
    chain = read_chain(crate)
    return {"steps": [{"name": s.name, "status": s.status, "start": s.start, "end": s.end,
                       "tools": s.tools[:4], "agents": s.agents[:3], "error": s.error} for s in chain.steps],
            "identifiers": chain.identifiers, "licence": chain.licence, "data_entities": len(chain.data)}


def dumps(crate: dict[str, Any]) -> str:
    return json.dumps(crate, indent=2, ensure_ascii=False) + "\n"


def write_crate(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds exactly that; True when written."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


def refresh(cfg: Any, ledger: Any, uid: str) -> list[Path]:
    """Bring the crate of ``uid`` up to date in every place; returns the crates written.

    Never raises: a stage must not fail because its provenance could not be written. A problem is
    logged as a warning (with the uid) and kept in the ``provenance`` record's ``warnings``.
    """
    try:
        return _refresh(cfg, ledger, uid)
    except Exception as exc:
        reason = f"RO-Crate not updated: {type(exc).__name__}: {exc}"
        log.warning("%s: %s", uid, reason, exc_info=True)
        try:
            body = ledger.get_record(uid, RECORD) or {}
            warnings = [*(body.get("warnings") or []), {"at": _now(), "warning": reason}][-10:]
            ledger.put_record(uid, RECORD, {**body, "warnings": warnings})
        except Exception:
            log.warning("%s: the warning could not be recorded in the ledger either", uid, exc_info=True)
        return []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _refresh(cfg: Any, ledger: Any, uid: str) -> list[Path]:
    ds = ledger.get(uid)
    if ds is None or not ds.raw_path or ds.state == "quarantined":
        return []
    ledger.put_record(uid, RECORD, snapshot_facts(cfg, ledger, uid))
    written, crates, summary = [], {}, None
    for place in crate_paths(cfg, ds):
        crate = build_crate(ledger, uid, place.root)
        text = dumps(crate)
        if write_crate(place.path, text):
            written.append(place.path)
        crates[place.where] = {"path": str(place.path), "bytes": len(text.encode("utf-8"))}
        summary = chain_summary(crate)
    body = ledger.get_record(uid, RECORD) or {}
    if written or body.get("crates") != crates or body.get("chain") != summary:
        ledger.put_record(uid, RECORD, {**body, "crates": crates, "chain": summary, "updated_at": _now(),
                                        "warnings": []})
    if written:
        log.info("%s: RO-Crate written to %s", uid, ", ".join(str(p) for p in written))
    return written
