"""Quarantine: where files that cannot be ingested go, with the reason beside them.

Quarantine never deletes: a landing-zone source is *copied* (the acquisition PC
keeps its file until a human acts); a raw copy already in the facility tree is
*moved* out of it, so the raw tree holds only data that passed validation.
Each quarantined file gets ``<name>.reason.json`` next to it, and the ledger
records the same reason, which the CLI and the dashboard show.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from microfair.config import FacilityConfig
from microfair.ledger import Ledger

log = logging.getLogger(__name__)


def quarantine_path(cfg: FacilityConfig, microscope: str, relpath: str) -> Path:
    return cfg.storage.quarantine / microscope / relpath


def quarantine(cfg: FacilityConfig, ledger: Ledger, uid: str, *, stage: str, reason: str,
               file: Path | None, move: bool = False, details: dict[str, Any] | None = None) -> Path:
    """Put ``file`` (or nothing, if it is gone or empty) into quarantine and record why.

    ``move=True`` moves a raw copy out of the raw tree; otherwise the file is copied.
    Returns the folder entry for the dataset in quarantine.
    """
    ds = ledger.require(uid)
    rel = _relative_to_zone(cfg, ds.microscope, ds.source_path)
    target = quarantine_path(cfg, ds.microscope, rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    if file is not None and file.exists():
        if move:
            if file.resolve() != target.resolve():
                file.chmod(0o644)
                shutil.move(str(file), target)
        else:
            tmp = target.with_name(f".{target.name}.partial")
            shutil.copyfile(file, tmp)
            os.replace(tmp, target)
        target.chmod(0o444)
    note = {
        "uid": uid, "microscope": ds.microscope, "source": ds.source_path, "stage": stage, "reason": reason,
        "quarantined_at": datetime.now(timezone.utc).isoformat(), "file": str(target) if target.exists() else None,
        **(details or {}),
    }
    reason_file = target.with_name(target.name + ".reason.json")
    reason_file.write_text(json.dumps(note, indent=2), encoding="utf-8")
    ledger.update(uid, state="quarantined", reason=f"{stage}: {reason}",
                  raw_path=None if move else ds.raw_path)
    if target.exists():
        ledger.add_file(uid, "quarantine", target, size_bytes=target.stat().st_size)
    ledger.put_record(uid, "quarantine", note)
    log.warning("%s quarantined at %s stage: %s (kept at %s)", uid, stage, reason, target)
    return target


def _relative_to_zone(cfg: FacilityConfig, microscope: str, source: str) -> str:
    try:
        return Path(source).relative_to(cfg.zone(microscope).path).as_posix()
    except (KeyError, ValueError):
        return Path(source).name
