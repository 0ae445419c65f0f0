"""Collect: pick finished acquisitions up from the landing zones into the raw tree.

A file is *ready* when it is quiescent: its size and mtime were the same at two
looks at least ``stability_seconds`` apart (the first look is stored in the ledger
as a ``discovered`` dataset with ``observed_at``, so this holds across separate
scheduler runs) and, when the zone sets ``completion_marker``, the marker
``<file><marker>`` exists. Size and mtime are checked again just before and just
after the copy; a file that moved in between is left for the next scan.

The copy is checksummed while streaming (BLAKE3 + SHA-256, see
:mod:`microfair.checksum`), written under ``.<name>.partial-<uid>``, fsynced, read
back from disk (page cache dropped) and verified, made read-only, and only then
published at its final name with :func:`microfair.publish.publish_file`, which never
replaces anything. The raw path is claimed in the ledger (``datasets.raw_path`` is
unique) *before* the copy, so of two acquisitions that map to one raw path exactly
one wins; the other is quarantined as a name collision naming the winner. The
source is never modified. A partial file from an interrupted copy is resumed: its
prefix is checked against the source and the copy goes on from there.

A landing file that changes after it was collected is a new *version* of the same
acquisition (uid ``dataset_uid(microscope, relpath, "v<N>")``): it waits for
quiescence again, is collected as ``<stem>.v<N><ext>`` beside the first one, and the
earlier version becomes ``superseded`` (its raw copy is kept).

A dataset whose pipeline stopped half-way (collected, validated or converted, its
last stage event failed or interrupted, nothing running) is offered again by
:func:`scan`; :func:`collect` then re-uses the verified raw copy.

Where a file lands (``Project/Study/Experiment``), every part made safe by
:func:`microfair.safepath.safe_join` (a name that cannot be made safe is quarantined):

* ``tree: folders`` (default): the first three folders below the landing zone are
  Project, Study, Experiment; deeper folders are kept below Experiment. Levels
  that are missing are taken from the file name (project acronym, the description
  tokens as study, the date as experiment), else ``_unsorted``, the microscope and
  the file's modification date.
* ``tree: name``: only the name tokens are used, so a flat landing zone works.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from microfair.checksum import CHUNK, Digest, StreamingDigest, blake3_file, digest_file
from microfair.transfer import copy_into
from microfair.config import FacilityConfig
from microfair.companions import publish_companions
from microfair.landing import (IGNORED_SUFFIXES, SETTLED_STATES, SIDECAR_SUFFIX, UNFINISHED_STATES, Acquisition,
                               ScanResult, Waiting, dataset_uid, scan, version_uid)
from microfair.ledger import Dataset, Ledger, RunContext
from microfair.metadata.sidecar import raw_sidecar_path, sidecar_path_for
from microfair.naming import check_name, split_extension
from microfair.publish import publish_file
from microfair.quarantine import quarantine
from microfair.safepath import UnsafeName, safe_component, safe_join

__all__ = ["IGNORED_SUFFIXES", "SETTLED_STATES", "SIDECAR_SUFFIX", "Acquisition", "CollectError", "DestinationFull",
           "NotReady", "Rejected", "ScanResult", "Waiting", "collect", "copy_verified", "dataset_uid", "destination",
           "scan", "version_uid"]

log = logging.getLogger(__name__)


class CollectError(Exception):
    """Collect could not finish; ``retryable`` tells the task whether a retry may help."""

    retryable = True


class NotReady(CollectError):
    """The file is still being written (or moved, or collected by another worker) and is left for later."""


class DestinationFull(CollectError):
    """The raw tree's file system has no room for the copy."""


class Rejected(CollectError):
    """The file can never be collected as it is (empty, unsafe name, name collision): it goes to quarantine."""

    retryable = False


class Collision(Rejected):
    """Something that is not this acquisition's copy is already at the final name."""


def register(ledger: Ledger, acq: Acquisition) -> Dataset:
    """Make sure the acquisition has a dataset row (idempotent); returns it."""
    known = ledger.get(acq.uid)
    fields = dict(microscope=acq.microscope, source_path=acq.source, name=Path(acq.relpath).name,
                  size_bytes=acq.size, source_mtime_ns=acq.mtime_ns)
    if known is None:
        return ledger.upsert_dataset(acq.uid, state="discovered", **fields)
    if known.state in ("discovered", "failed"):
        return ledger.update(acq.uid, **fields)
    return known


def destination(cfg: FacilityConfig, acq: Acquisition, version: int = 1) -> Path:
    """Where the raw copy goes: ``<raw>/<Project>/<Study>/<Experiment>[/deeper folders]/<name>``.

    Version N > 1 of a landing file is ``<stem>.v<N><ext>`` beside version 1. Every part is made
    safe (:func:`microfair.safepath.safe_join`); :class:`~microfair.safepath.UnsafeName` when one cannot be.
    """
    zone = cfg.zone(acq.microscope)
    rel = Path(acq.relpath)
    report = check_name(rel.name, types=cfg.naming.types, max_length=cfg.naming.max_length)
    tokens = report.tokens
    folders = list(rel.parent.parts) if zone.tree == "folders" else []
    mdate = datetime.fromtimestamp(acq.mtime_ns / 1e9, tz=timezone.utc).date().isoformat()
    project = folders[0] if len(folders) > 0 else (tokens.project if tokens else "_unsorted")
    study = folders[1] if len(folders) > 1 else ((tokens.study if tokens else None) or acq.microscope)
    experiment = folders[2] if len(folders) > 2 else (tokens.date.isoformat() if tokens else mdate)
    name = safe_component(rel.name)
    if version > 1:
        stem, ext = split_extension(name)
        name = f"{stem}.v{version}{ext}"
    return safe_join(cfg.storage.raw, project, study, experiment, *folders[3:], name)


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
        os.truncate(tmp, 0)  # the same (locked) file, emptied
        src.seek(0)
        digest.close()
        return 0, StreamingDigest()
    return kept, digest


def _os_error(exc: OSError, dest: Path, doing: str) -> CollectError | None:
    """The collect error an OS error stands for (full disk, name too long), or None."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DestinationFull(f"{dest.parent} ran out of space {doing}: {exc.strerror}")
    if exc.errno == errno.ENAMETOOLONG:
        return Rejected(f"file name too long for the raw tree's file system ({len(os.fsencode(dest.name))} "
                        f"bytes, plus the temporary name): {dest.name[:60]}…")
    return None


def copy_verified(source: Path, dest: Path, *, tag: str, expect_size: int, expect_mtime_ns: int,
                  stats: dict[str, int] | None = None) -> Digest:
    """Checksummed, resumable copy of ``source`` to ``dest``, published only once verified; returns the digests.

    The temporary ``.<name>.partial-<tag>`` is locked while it is written (a second worker on the
    same acquisition gets :class:`NotReady`), fsynced, read back without the page cache and compared
    with the digest taken while copying, made read-only, and only then published at ``dest`` with
    :func:`~microfair.publish.publish_file`, which never replaces anything (:class:`Collision` if
    something is there). :class:`NotReady` when the source changes during the copy,
    :class:`DestinationFull` when the file system runs out of space (the partial copy is removed, so the
    space is given back; a copy interrupted by a crash keeps its partial and is resumed), :class:`Rejected` when the name is too long for the file system.
    ``stats`` (optional) receives ``resumed_at`` and ``bytes_written``.
    """
    tmp = dest.with_name(f".{dest.name}.partial-{tag}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest.parent).free
        already = tmp.stat().st_size if tmp.exists() else 0
        if free < expect_size - already:
            raise DestinationFull(f"{dest.parent} has {free} bytes free; the copy needs {expect_size - already} more")
        if already:
            tmp.chmod(0o600)  # a crash after the read-only step left it 0444
        lock = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        if (err := _os_error(exc, dest, "before the copy")) is None:
            raise
        raise err from exc
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NotReady(f"{source} is being collected by another worker right now") from None
        written, digest = 0, None
        try:
            with open(source, "rb", buffering=0) as src:
                kept, digest = _resume_prefix(src, tmp)
                if kept:
                    log.info("%s: resuming the copy at byte %d of %d", tag, kept, expect_size)
                out = os.open(tmp, os.O_RDWR | (0 if kept else os.O_TRUNC))
                try:
                    os.lseek(out, kept, os.SEEK_SET)
                    # overlapped read/write/hashes, fsynced, and read back from the disk during the copy
                    copied = copy_into(src, out, digest)
                    written = copied.bytes
                finally:
                    os.close(out)
        except OSError as exc:
            if digest is not None:
                digest.close()
            if (err := _os_error(exc, dest, "during the copy")) is None:
                raise
            if isinstance(err, DestinationFull):
                tmp.unlink(missing_ok=True)  # give the space back; the retry copies from the start
            raise err from exc
        if stats is not None:
            stats.update(resumed_at=kept, bytes_written=written)
        result = digest.digest()
        if not _same_file(source.stat(), expect_size, expect_mtime_ns) or result.size != expect_size:
            tmp.unlink(missing_ok=True)
            raise NotReady(f"{source} changed while it was being copied; it will be picked up at the next scan")
        on_disk = copied.read_back_blake3  # the temporary as the disk returned it (page cache dropped)
        if on_disk != result.blake3:
            tmp.unlink(missing_ok=True)
            raise CollectError(f"verification failed: {tmp} reads back as {on_disk}, copied {result.blake3}")
        tmp.chmod(0o444)
        try:
            publish_file(tmp, dest)
        except FileExistsError:
            # Whoever holds this raw path's ledger claim publishes here; the same bytes are another worker's
            # copy of this very acquisition, anything else is a stranger: never replaced, never adopted.
            tmp.unlink()
            there = blake3_file(dest)
            if there != result.blake3:
                raise Collision(f"name collision: {dest} appeared during the copy with other content "
                                f"(blake3 {there[:12]}… vs {result.blake3[:12]}…)") from None
            log.info("%s: %s was published meanwhile with the same content", tag, dest)
        return result
    finally:
        os.close(lock)


def _find_sidecar(source: Path) -> Path | None:
    """The user's sidecar: ``<stem>.meta.yaml`` (canonical) or ``<name>.meta.yaml`` beside the file."""
    for candidate in (sidecar_path_for(source), source.with_name(source.name + SIDECAR_SUFFIX)):
        if candidate.is_file():
            return candidate
    return None


def _claim(ledger: Ledger, uid: str, dest: Path) -> str | None:
    """Record ``dest`` as this dataset's raw path; returns the uid holding it instead, if any."""
    try:
        ledger.update(uid, raw_path=str(dest))
        return None
    except IntegrityError:
        with ledger.session() as s:
            return s.scalar(select(Dataset.uid).where(Dataset.raw_path == str(dest))) or "(unknown)"


def _reuse(ds: Dataset) -> Digest | None:
    """The verified raw copy of a dataset that is collected already, re-checked (BLAKE3), or None."""
    if ds.state not in (*UNFINISHED_STATES, "qc_done") or not ds.raw_path or not ds.blake3:
        return None
    raw = Path(ds.raw_path)
    if not raw.is_file() or raw.stat().st_size != ds.size_bytes or blake3_file(raw) != ds.blake3:
        raise CollectError(f"{ds.uid}: raw copy {raw} is missing or no longer matches the ledger; "
                           "a person must look (it is read-only)")
    return Digest(size=ds.size_bytes or 0, sha256=ds.sha256 or "", blake3=ds.blake3)


def _publish_sidecar(ledger: Ledger, uid: str, source: Path, dest: Path) -> None:
    """Copy the user's sidecar to ``<raw name>.meta.yaml``: one per raw copy, never shared."""
    sidecar = _find_sidecar(source)
    if sidecar is None:
        return
    side_dest = raw_sidecar_path(dest)
    st = sidecar.stat()
    if side_dest.exists():
        # Only this dataset holds ``dest`` (ledger claim), so this is a copy from an earlier attempt.
        side = digest_file(side_dest)
        if side.sha256 != digest_file(sidecar).sha256:
            side_dest.chmod(0o644)
            side_dest.unlink()
    if not side_dest.exists():
        side = copy_verified(sidecar, side_dest, tag=uid, expect_size=st.st_size, expect_mtime_ns=st.st_mtime_ns)
    ledger.add_file(uid, "sidecar", side_dest, size_bytes=side.size, sha256=side.sha256, blake3=side.blake3)


def _supersede(ledger: Ledger, acq: Acquisition, ds: Dataset) -> str | None:
    """Mark the earlier versions of this landing file superseded (their raw copies stay); returns the last."""
    last = None
    for v in range(1, ds.version):
        old = ledger.get(version_uid(acq.microscope, acq.relpath, v))
        if old is None or old.state in ("quarantined", "superseded"):
            continue
        ledger.update(old.uid, state="superseded", superseded_by=acq.uid,
                      reason=f"superseded by version {ds.version} ({acq.uid}): the landing file changed")
        log.info("%s: version %d superseded by %s", old.uid, old.version, acq.uid)
        last = old.uid
    return last


def _to_quarantine(cfg: FacilityConfig, ledger: Ledger, acq: Acquisition, outcome, reason: str,
                   details: dict | None = None) -> str:
    ledger.update(acq.uid, raw_path=None)  # release any claim on the raw path
    outcome.state, outcome.error = "failed", reason
    outcome.details = details or {}
    quarantine(cfg, ledger, acq.uid, stage="collect", reason=reason, file=Path(acq.source), details=details)
    return "quarantined"


def collect(cfg: FacilityConfig, ledger: Ledger, acq: Acquisition, ctx: RunContext | None = None) -> str:
    """Collect one acquisition into the raw tree. Returns the dataset state afterwards.

    Empty files, names that cannot be made safe and name collisions are quarantined (state
    ``quarantined``, with the reason); a file still being written raises :class:`NotReady`; a full
    destination raises :class:`DestinationFull` (retryable). A dataset collected already (offered again
    because a later stage stopped) keeps its verified raw copy. Everything is in the ledger.
    """
    ds = register(ledger, acq)
    source = Path(acq.source)
    with ledger.stage(acq.uid, "collect", ctx) as outcome:
        try:
            st = source.stat()
        except FileNotFoundError:
            raise NotReady(f"{source} disappeared from the landing zone before it could be collected") from None
        if not _same_file(st, acq.size, acq.mtime_ns):
            raise NotReady(f"{source} changed since the scan; it will be picked up at the next scan")
        reused = _reuse(ds)
        if reused is not None:
            log.info("%s: already collected at %s (BLAKE3 re-checked); not copied again", acq.uid, ds.raw_path)
            outcome.bytes, outcome.checksum = reused.size, f"sha256:{reused.sha256}"
            outcome.details = {"raw_path": ds.raw_path, "reused": True, "bytes_written": 0}
            return "collected"
        if st.st_size == 0:
            return _to_quarantine(cfg, ledger, acq, outcome,
                                  "empty file (0 bytes): the acquisition software wrote nothing")
        try:
            dest = destination(cfg, acq, ds.version)
        except UnsafeName as exc:
            return _to_quarantine(cfg, ledger, acq, outcome, f"unsafe name: {exc}")
        holder = _claim(ledger, acq.uid, dest)
        if holder is not None:
            return _to_quarantine(cfg, ledger, acq, outcome,
                                  f"name collision: {dest} already holds another acquisition's file (uid {holder})",
                                  {"existing_raw_copy": str(dest), "holder": holder})
        stats: dict[str, int] = {}
        try:
            # companions first (published complete or not at all), so the main file never appears without them
            companions = publish_companions(source, dest, tag=acq.uid, copy=copy_verified, digest=digest_file,
                                            collision=Collision)
            if dest.exists():
                result = _adopt(dest, source)
            else:
                log.info("%s: copying %s (%d bytes) to %s", acq.uid, source, acq.size, dest)
                result = copy_verified(source, dest, tag=acq.uid, expect_size=acq.size,
                                       expect_mtime_ns=acq.mtime_ns, stats=stats)
        except Rejected as exc:
            return _to_quarantine(cfg, ledger, acq, outcome, str(exc), {"existing_raw_copy": str(dest)})
        ledger.add_file(acq.uid, "raw", dest, size_bytes=result.size, sha256=result.sha256, blake3=result.blake3)
        for path, d in companions:
            ledger.add_file(acq.uid, "companion", path, size_bytes=d.size, sha256=d.sha256, blake3=d.blake3)
        _publish_sidecar(ledger, acq.uid, source, dest)
        project, study, experiment = dest.relative_to(cfg.storage.raw).parts[:3]
        ledger.update(acq.uid, state="collected", reason=None, raw_path=str(dest), sha256=result.sha256,
                      blake3=result.blake3, project=project, study=study, experiment=experiment,
                      collected_at=datetime.now(timezone.utc))
        supersedes = _supersede(ledger, acq, ds) if ds.version > 1 else None
        outcome.bytes, outcome.checksum = result.size, f"sha256:{result.sha256}"
        outcome.details = {"raw_path": str(dest), "version": ds.version, **stats,
                           **({"supersedes": supersedes} if supersedes else {})}
    log.info("%s: collected %s (sha256 %s)", acq.uid, dest, result.sha256)
    return "collected"


def _adopt(dest: Path, source: Path) -> Digest:
    """``dest`` exists although this dataset holds its claim: an earlier attempt published it, or a stranger.

    The same content is adopted (no copy); anything else is a :class:`Collision`.
    """
    existing, new = digest_file(dest), digest_file(source)
    if existing.sha256 != new.sha256:
        raise Collision(f"name collision: {dest} already holds a file no dataset claims, with different "
                        f"content (sha256 {existing.sha256[:12]}… vs {new.sha256[:12]}…)")
    log.info("%s is already in the raw tree with the same content (an earlier attempt published it)", dest)
    dest.chmod(0o444)
    return new
