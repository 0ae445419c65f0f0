"""Collect: pick finished acquisitions up from the landing zones into the raw tree.

A file is *ready* when it is complete: its mtime is older than the zone's
``stability_seconds`` and, when the zone sets ``completion_marker``, the marker
``<file><marker>`` exists. Size and mtime are checked again just before and just
after the copy; a file that moved in between is left for the next scan.

The copy is checksummed while streaming (BLAKE3 + SHA-256, see
:mod:`microfair.checksum`), written under ``.<name>.partial-<uid>``, fsynced, renamed
atomically, re-read from disk and verified, then made read-only. The source is
never modified. A partial file from an interrupted copy is resumed: its prefix is
checked against the source and the copy goes on from there.

Where a file lands (``Project/Study/Experiment``):

* ``tree: folders`` (default): the first three folders below the landing zone are
  Project, Study, Experiment; deeper folders are kept below Experiment. Levels
  that are missing are taken from the file name (project acronym, the description
  tokens as study, the date as experiment), else ``_unsorted``, the microscope and
  the file's modification date.
* ``tree: name``: only the name tokens are used, so a flat landing zone works.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from microfair.checksum import CHUNK, Digest, StreamingDigest, blake3_file, digest_file
from microfair.config import FacilityConfig, LandingZone
from microfair.ledger import Ledger, RunContext
from microfair.metadata.sidecar import sidecar_path_for
from microfair.naming import ascii_fold, check_name
from microfair.quarantine import quarantine

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.yaml"  # sidecars are `<stem>.meta.yaml` (or `<name>.meta.yaml`)
IGNORED_SUFFIXES = (".partial", ".part", ".tmp", ".crdownload", ".reason.json", SIDECAR_SUFFIX)
#: Dataset states after which a scan does not pick the same unchanged file up again.
SETTLED_STATES = ("collected", "validated", "converted", "qc_done", "quarantined")


class CollectError(Exception):
    """Collect could not finish; ``retryable`` tells the task whether a retry may help."""

    retryable = True


class NotReady(CollectError):
    """The file is still being written (or moved) and is left for the next scan."""


class DestinationFull(CollectError):
    """The raw tree's file system has no room for the copy."""


class Rejected(CollectError):
    """The file can never be collected as it is (empty, or a name collision): it goes to quarantine."""

    retryable = False


@dataclass(frozen=True)
class Acquisition:
    """A file in a landing zone that is complete and waiting to be collected."""

    uid: str
    microscope: str
    source: str
    relpath: str
    size: int
    mtime_ns: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Waiting:
    microscope: str
    source: str
    why: str


@dataclass(frozen=True)
class ScanResult:
    ready: list[Acquisition]
    waiting: list[Waiting]


def dataset_uid(microscope: str, relpath: str, variant: str = "") -> str:
    """Stable identifier of an acquisition: its microscope and its path in the landing zone.

    A file rewritten in place after it was collected is another acquisition: it gets
    a ``variant`` (its mtime and size) so that the first dataset keeps its history.
    """
    key = f"{microscope}\0{relpath}" + (f"\0{variant}" if variant else "")
    return "mf-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _is_acquisition(path: Path, zone: LandingZone) -> bool:
    name = path.name
    if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
        return False
    if zone.completion_marker and name.endswith(zone.completion_marker):
        return False
    return True


def _readiness(path: Path, st: os.stat_result, zone: LandingZone, now: float) -> str | None:
    age = now - st.st_mtime
    if age < zone.stability_seconds:
        return f"modified {age:.0f}s ago; waiting until unchanged for {zone.stability_seconds:.0f}s"
    if zone.completion_marker and not Path(str(path) + zone.completion_marker).exists():
        return f"completion marker {path.name}{zone.completion_marker} not there yet"
    return None


def scan(cfg: FacilityConfig, ledger: Ledger, *, now: float | None = None) -> ScanResult:
    """List complete acquisitions not collected yet, and what is still waiting (and why)."""
    now = time.time() if now is None else now
    ready: list[Acquisition] = []
    waiting: list[Waiting] = []
    for zone in cfg.landing_zones:
        if not zone.path.is_dir():
            log.error("landing zone %s of microscope %s does not exist or is not mounted", zone.path, zone.microscope)
            waiting.append(Waiting(zone.microscope, str(zone.path), "landing zone missing or not mounted"))
            continue
        for path in sorted(zone.path.rglob("*")):
            if path.is_symlink() or not path.is_file() or not _is_acquisition(path, zone):
                continue
            rel = path.relative_to(zone.path).as_posix()
            try:
                st = path.stat()
            except OSError:
                continue
            uid = dataset_uid(zone.microscope, rel)
            known = ledger.get(uid)
            if known and known.state in SETTLED_STATES and not _same_file(st, known.size_bytes, known.source_mtime_ns):
                uid = dataset_uid(zone.microscope, rel, f"{st.st_mtime_ns}:{st.st_size}")
                known = ledger.get(uid)
            if known and known.state in SETTLED_STATES:
                continue
            why = _readiness(path, st, zone, now)
            if why:
                waiting.append(Waiting(zone.microscope, str(path), why))
                continue
            ready.append(Acquisition(uid, zone.microscope, str(path), rel, st.st_size, st.st_mtime_ns))
    log.info("scan: %d acquisition(s) ready, %d waiting", len(ready), len(waiting))
    return ScanResult(ready, waiting)


def register(ledger: Ledger, acq: Acquisition) -> None:
    """Make sure the acquisition has a dataset row (idempotent)."""
    known = ledger.get(acq.uid)
    fields = dict(microscope=acq.microscope, source_path=acq.source, name=Path(acq.relpath).name,
                  size_bytes=acq.size, source_mtime_ns=acq.mtime_ns)
    if known is None:
        ledger.upsert_dataset(acq.uid, state="discovered", **fields)
    elif known.state in ("discovered", "failed"):
        ledger.update(acq.uid, **fields)


def destination(cfg: FacilityConfig, acq: Acquisition) -> Path:
    """Where the raw copy goes: ``<raw>/<Project>/<Study>/<Experiment>[/deeper folders]/<name>``."""
    zone = cfg.zone(acq.microscope)
    rel = Path(acq.relpath)
    report = check_name(rel.name, types=cfg.naming.types, max_length=cfg.naming.max_length)
    tokens = report.tokens
    folders = [ascii_fold(p) or "_" for p in rel.parent.parts] if zone.tree == "folders" else []
    mdate = datetime.fromtimestamp(acq.mtime_ns / 1e9, tz=timezone.utc).date().isoformat()
    project = folders[0] if len(folders) > 0 else (tokens.project if tokens else "_unsorted")
    study = folders[1] if len(folders) > 1 else ((tokens.study if tokens else None) or acq.microscope)
    experiment = folders[2] if len(folders) > 2 else (tokens.date.isoformat() if tokens else mdate)
    return cfg.storage.raw.joinpath(project, study, experiment, *folders[3:], rel.name)


def _same_file(st_a: os.stat_result, size: int | None, mtime_ns: int | None) -> bool:
    return st_a.st_size == size and st_a.st_mtime_ns == mtime_ns


def _resume_prefix(src, tmp: Path) -> tuple[int, StreamingDigest]:
    """Check an existing partial copy against the source; returns the bytes kept and their digest."""
    digest = StreamingDigest()
    if not tmp.exists():
        return 0, digest
    kept = 0
    with open(tmp, "rb", buffering=0) as part:
        while True:
            a = part.read(CHUNK)
            if not a:
                break
            b = src.read(len(a))
            if a != b:
                break
            digest.update(a)
            kept += len(a)
    if kept != tmp.stat().st_size:
        # The partial copy diverges from the source: start again from scratch.
        log.warning("partial copy %s does not match its source; restarting the copy", tmp)
        tmp.unlink()
        src.seek(0)
        return 0, StreamingDigest()
    return kept, digest


def copy_verified(source: Path, dest: Path, *, tag: str, expect_size: int, expect_mtime_ns: int) -> Digest:
    """Checksummed, resumable, atomic copy of ``source`` to ``dest``; returns the digests.

    Raises :class:`NotReady` when the source changes during the copy and
    :class:`DestinationFull` when the file system runs out of space (the partial
    copy is kept so that a retry resumes once space is freed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial-{tag}")
    free = shutil.disk_usage(dest.parent).free
    already = tmp.stat().st_size if tmp.exists() else 0
    if free < expect_size - already:
        raise DestinationFull(f"{dest.parent} has {free} bytes free; the copy needs {expect_size - already} more")
    try:
        with open(source, "rb", buffering=0) as src:
            kept, digest = _resume_prefix(src, tmp)
            if kept:
                log.info("%s: resuming the copy at byte %d of %d", tag, kept, expect_size)
            with open(tmp, "ab" if kept else "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                out.flush()
                os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DestinationFull(f"{dest.parent} ran out of space during the copy: {exc.strerror}") from exc
        raise
    result = digest.digest()
    if not _same_file(source.stat(), expect_size, expect_mtime_ns) or result.size != expect_size:
        tmp.unlink(missing_ok=True)
        raise NotReady(f"{source} changed while it was being copied; it will be picked up at the next scan")
    os.replace(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    on_disk = blake3_file(dest, drop_cache=True)
    if on_disk != result.blake3:
        dest.unlink()
        raise CollectError(f"verification failed: {dest} reads back as {on_disk}, copied {result.blake3}")
    dest.chmod(0o444)
    return result


def _find_sidecar(source: Path) -> Path | None:
    """The user's sidecar: ``<stem>.meta.yaml`` (canonical) or ``<name>.meta.yaml`` beside the file."""
    for candidate in (sidecar_path_for(source), source.with_name(source.name + SIDECAR_SUFFIX)):
        if candidate.is_file():
            return candidate
    return None


def collect(cfg: FacilityConfig, ledger: Ledger, acq: Acquisition, ctx: RunContext | None = None) -> str:
    """Collect one acquisition into the raw tree. Returns the dataset state afterwards.

    Empty files and name collisions are quarantined (state ``quarantined``);
    a file still being written raises :class:`NotReady`; a full destination
    raises :class:`DestinationFull` (retryable). Everything is in the ledger.
    """
    register(ledger, acq)
    source = Path(acq.source)
    with ledger.stage(acq.uid, "collect", ctx) as outcome:
        try:
            st = source.stat()
        except FileNotFoundError:
            raise NotReady(f"{source} disappeared from the landing zone before it could be collected") from None
        if not _same_file(st, acq.size, acq.mtime_ns):
            raise NotReady(f"{source} changed since the scan; it will be picked up at the next scan")
        if st.st_size == 0:
            reason = "empty file (0 bytes): the acquisition software wrote nothing"
            outcome.state, outcome.error = "failed", reason
            quarantine(cfg, ledger, acq.uid, stage="collect", reason=reason, file=source)
            return "quarantined"
        dest = destination(cfg, acq)
        if dest.exists():
            existing = digest_file(dest)
            new = digest_file(source)
            if existing.sha256 != new.sha256:
                reason = (f"name collision: {dest} already holds different content "
                          f"(sha256 {existing.sha256[:12]}… vs {new.sha256[:12]}…)")
                outcome.state, outcome.error = "failed", reason
                outcome.details = {"existing_raw_copy": str(dest)}
                quarantine(cfg, ledger, acq.uid, stage="collect", reason=reason, file=source,
                           details={"existing_raw_copy": str(dest), "sha256": new.sha256})
                return "quarantined"
            result = existing
            log.info("%s: %s is already in the raw tree with the same content", acq.uid, dest)
        else:
            log.info("%s: copying %s (%d bytes) to %s", acq.uid, source, acq.size, dest)
            result = copy_verified(source, dest, tag=acq.uid, expect_size=acq.size, expect_mtime_ns=acq.mtime_ns)
        dest.chmod(0o444)
        ledger.add_file(acq.uid, "raw", dest, size_bytes=result.size, sha256=result.sha256, blake3=result.blake3)
        sidecar = _find_sidecar(source)
        if sidecar is not None:
            side_dest = sidecar_path_for(dest)
            if not side_dest.exists():
                side = copy_verified(sidecar, side_dest, tag=acq.uid, expect_size=sidecar.stat().st_size,
                                     expect_mtime_ns=sidecar.stat().st_mtime_ns)
            else:
                side = digest_file(side_dest)
            ledger.add_file(acq.uid, "sidecar", side_dest, size_bytes=side.size, sha256=side.sha256,
                            blake3=side.blake3)
        project, study, experiment = dest.relative_to(cfg.storage.raw).parts[:3]
        ledger.update(acq.uid, state="collected", reason=None, raw_path=str(dest), sha256=result.sha256,
                      blake3=result.blake3, project=project, study=study, experiment=experiment,
                      collected_at=datetime.now(timezone.utc))
        outcome.bytes, outcome.checksum = result.size, f"sha256:{result.sha256}"
        outcome.details = {"raw_path": str(dest)}
    log.info("%s: collected %s (sha256 %s)", acq.uid, dest, result.sha256)
    return "collected"
