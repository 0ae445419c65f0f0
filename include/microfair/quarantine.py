"""Quarantine: where files that cannot be ingested go, with the reason beside them.

Quarantine never deletes: a landing-zone source is *copied* (the acquisition PC
keeps its file until a human acts); a raw copy already in the facility tree is
*moved* out of it, so the raw tree holds only data that passed validation.
Each quarantined file gets ``<name>.reason.json`` next to it, and the ledger
records the same reason, which the CLI and the dashboard show.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from microfair.checksum import blake3_file
from microfair.companions import keep_companions
from microfair.config import FacilityConfig
from microfair.ledger import Ledger
from microfair.publish import publish_file
from microfair.safepath import UnsafeName, safe_join

log = logging.getLogger(__name__)

#: Folder (under ``<quarantine>/<microscope>/``) for files whose own name cannot be made safe.
UNSAFE_NAMES = "_unsafe-names"


class QuarantineError(OSError):
    """Quarantine could not keep the file (for example a full disk); nothing was left behind. Retry later."""

    retryable = True


def quarantine_path(cfg: FacilityConfig, microscope: str, relpath: str, uid: str | None = None) -> Path:
    """``<quarantine>/<microscope>/<relpath>`` made safe; a name that cannot be made safe goes to
    ``<quarantine>/<microscope>/_unsafe-names/<uid>/file`` (the original name is in the reason file)."""
    try:
        return safe_join(cfg.storage.quarantine, microscope, *PurePosixPath(relpath).parts)
    except UnsafeName:
        return safe_join(cfg.storage.quarantine, microscope, UNSAFE_NAMES, uid or "unknown", "file")


def quarantine(cfg: FacilityConfig, ledger: Ledger, uid: str, *, stage: str, reason: str,
               file: Path | None, move: bool = False, details: dict[str, Any] | None = None) -> Path:
    """Put ``file`` (or nothing, if it is gone or empty) into quarantine and record why.

    ``move=True`` moves a raw copy out of the raw tree; otherwise the file is copied. Either way the
    file appears in quarantine only complete, and never over another file (a second file for the same
    place gets ``<uid>_<name>``). A full disk raises :class:`QuarantineError` and leaves no partial.
    Returns the folder entry for the dataset in quarantine.
    """
    ds = ledger.require(uid)
    rel = _relative_to_zone(cfg, ds.microscope, ds.source_path)
    target = quarantine_path(cfg, ds.microscope, rel, uid)
    companions: list[Path] = []
    if file is not None and file.exists():
        target = _keep(file, target, uid, move=move)
        companions = keep_companions(file, target, uid, move=move, keep=_keep)  # e.g. a .vsi's _<stem>_ folder
    note = {
        "uid": uid, "microscope": ds.microscope, "source": ds.source_path, "stage": stage, "reason": reason,
        "quarantined_at": datetime.now(timezone.utc).isoformat(), "file": str(target) if target.exists() else None,
        **(details or {}),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    reason_file = target.with_name(target.name + ".reason.json")
    reason_file.write_text(json.dumps(note, indent=2), encoding="utf-8")
    ledger.update(uid, state="quarantined", reason=f"{stage}: {reason}",
                  raw_path=None if move else ds.raw_path)
    for kept in [target, *companions]:
        if kept.exists():
            ledger.add_file(uid, "quarantine", kept, size_bytes=kept.stat().st_size)
    ledger.put_record(uid, "quarantine", note)
    log.warning("%s quarantined at %s stage: %s (kept at %s)", uid, stage, reason, target)
    return target


def _keep(file: Path, target: Path, uid: str, *, move: bool) -> Path:
    """Copy (or move) ``file`` to ``target`` exclusively; returns where it is now."""
    if move and file.resolve() == target.resolve():
        return target
    tmp = target.with_name(f".{target.name}.partial-{uid}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            file.chmod(0o644)
        try:
            if not move:
                raise OSError(errno.EXDEV, "copy requested")
            os.link(file, tmp)  # same file system: the raw copy keeps its inode, no bytes copied
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            shutil.copyfile(file, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        final = _publish(tmp, target, uid)
        if move:
            file.unlink()
        return final
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise QuarantineError(exc.errno, f"quarantine {target.parent} ran out of space keeping {file.name}; "
                                  "nothing was left behind, retry once space is freed") from exc
        raise


def _publish(tmp: Path, target: Path, uid: str) -> Path:
    for final in (target, target.with_name(f"{uid}_{target.name}")):
        try:
            publish_file(tmp, final)
            return final
        except FileExistsError:
            if blake3_file(final) == blake3_file(tmp):
                tmp.unlink()
                return final
    raise FileExistsError(errno.EEXIST, "quarantine already holds other files at both names", str(target))


def _relative_to_zone(cfg: FacilityConfig, microscope: str, source: str) -> str:
    try:
        return Path(source).relative_to(cfg.zone(microscope).path).as_posix()
    except (KeyError, ValueError):
        return Path(source).name
