"""Landing-zone scan: which files are quiescent and due to be collected, and why the others wait.

Readiness is *quiescence, not age*: a file is ready when its size and mtime were
the same at two looks at least ``stability_seconds`` apart (and its completion
marker exists, where configured). The first look is stored in the ledger, as a
``discovered`` dataset row with ``size_bytes``, ``source_mtime_ns`` and
``observed_at``, so this works across separate scheduler runs and processes. With
``stability_seconds: 0`` one look is enough.

Per landing file, the ledger holds its versions: ``dataset_uid(microscope, relpath)``
for version 1, ``dataset_uid(microscope, relpath, "v<N>")`` for version N. The
newest version decides:

* ``discovered``/``failed``: not collected yet; ready once quiescent;
* ``collected``/``validated``/``converted``/``qc_done`` and unchanged: done, except
  that a pipeline which stopped half-way (last stage event ``failed`` or
  ``interrupted``, nothing ``running``, not ``qc_done``) is offered again;
* any of those, or ``quarantined``, and *changed*: a new version N+1 is started;
* ``quarantined`` and unchanged: never offered again (a person decides).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from microfair.config import FacilityConfig, LandingZone
from microfair.companions import companion_roots, inside, newest_change_ns
from microfair.ledger import Dataset, Ledger, StageStatus

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.yaml"  # sidecars are `<stem>.meta.yaml` (or `<name>.meta.yaml`)
IGNORED_SUFFIXES = (".partial", ".part", ".tmp", ".crdownload", ".reason.json", SIDECAR_SUFFIX)
#: Dataset states of a file that went through collect; its unchanged file is not offered again.
SETTLED_STATES = ("collected", "validated", "converted", "qc_done", "quarantined", "superseded")
#: States of a dataset whose pipeline may have stopped half-way (offered again when its last stage failed).
UNFINISHED_STATES = ("collected", "validated", "converted")
PIPELINE_STAGES = ("collect", "validate", "convert", "qc")
STOPPED = ("failed", "interrupted")


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
    #: Seconds until the next look can call the file quiescent (None: not a matter of time).
    settles_in: float | None = None


@dataclass(frozen=True)
class ScanResult:
    ready: list[Acquisition]
    waiting: list[Waiting]


def dataset_uid(microscope: str, relpath: str, variant: str = "") -> str:
    """Stable identifier of an acquisition: its microscope and its path in the landing zone.

    Version N > 1 of a file rewritten after collection has ``variant="v<N>"``.
    """
    key = f"{microscope}\0{relpath}" + (f"\0{variant}" if variant else "")
    return "mf-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def version_uid(microscope: str, relpath: str, version: int) -> str:
    return dataset_uid(microscope, relpath, "" if version == 1 else f"v{version}")


def _is_acquisition(path: Path, zone: LandingZone) -> bool:
    name = path.name
    if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
        return False
    if zone.completion_marker and name.endswith(zone.completion_marker):
        return False
    return True


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _same(st: os.stat_result, ds: Dataset) -> bool:
    return st.st_size == ds.size_bytes and st.st_mtime_ns == ds.source_mtime_ns


class _Zone:
    """The ledger's view of one landing zone, read in two queries per scan."""

    def __init__(self, ledger: Ledger, zone: LandingZone) -> None:
        with ledger.session() as s:
            self.datasets = {d.uid: d for d in s.scalars(select(Dataset).where(Dataset.microscope == zone.microscope))}
            rows = s.execute(select(Dataset.uid, StageStatus.stage, StageStatus.state, StageStatus.updated_at)
                             .join(Dataset, Dataset.id == StageStatus.dataset_id)
                             .where(Dataset.microscope == zone.microscope,
                                    Dataset.state.in_(UNFINISHED_STATES))).all()
        self.stages: dict[str, list[tuple[datetime, str, str]]] = {}
        for uid, stage, state, at in rows:
            if stage in PIPELINE_STAGES:
                self.stages.setdefault(uid, []).append((_aware(at), stage, state))

    def versions(self, microscope: str, rel: str) -> list[Dataset]:
        out: list[Dataset] = []
        while (ds := self.datasets.get(version_uid(microscope, rel, len(out) + 1))) is not None:
            out.append(ds)
        return out

    def stopped_half_way(self, uid: str) -> str | None:
        """Why the pipeline of ``uid`` should be resumed, or None (finished, running or never started)."""
        stages = self.stages.get(uid, [])
        if not stages or any(state == "running" for _, _, state in stages):
            return None
        _, stage, state = max(stages)
        return f"its {stage} stage {state}" if state in STOPPED else None


def _observe(ledger: Ledger, zone: LandingZone, path: Path, rel: str, st: os.stat_result, uid: str,
             version: int, now: float) -> None:
    try:
        ledger.upsert_dataset(uid, state="discovered", microscope=zone.microscope, source_path=str(path),
                              name=path.name, size_bytes=st.st_size, source_mtime_ns=st.st_mtime_ns,
                              observed_at=datetime.fromtimestamp(now, tz=timezone.utc), version=version)
    except IntegrityError:  # another scan recorded this look at the same moment; its look counts
        log.debug("%s: first look recorded by a concurrent scan", uid)


def _look(ledger: Ledger, known: _Zone, zone: LandingZone, path: Path, rel: str, st: os.stat_result,
          now: float) -> Acquisition | tuple[str, float | None] | None:
    """The acquisition if ``path`` is ready, a reason to wait, or None when there is nothing to do."""
    versions = known.versions(zone.microscope, rel)
    latest = versions[-1] if versions else None
    if latest is None or (latest.state in SETTLED_STATES and not _same(st, latest)):
        version = 1 if latest is None else latest.version + 1
        uid = version_uid(zone.microscope, rel, version)
        _observe(ledger, zone, path, rel, st, uid, version, now)
        if zone.stability_seconds > 0:
            return ("first seen now" if latest is None else
                    f"changed after {latest.uid} was {latest.state}: version {version}") + \
                f"; waiting until unchanged for {zone.stability_seconds:g}s", zone.stability_seconds
    elif latest.state in SETTLED_STATES:
        why = known.stopped_half_way(latest.uid) if latest.state in UNFINISHED_STATES else None
        if why is None:
            return None
        log.info("%s: offered again: %s and nothing is running", latest.uid, why)
        uid = latest.uid
    else:  # discovered / failed: not collected yet
        uid = latest.uid
        if not _same(st, latest) or latest.observed_at is None:
            _observe(ledger, zone, path, rel, st, uid, latest.version, now)
            if zone.stability_seconds > 0:
                return (f"changed since the last look; waiting until unchanged for {zone.stability_seconds:g}s",
                        zone.stability_seconds)
        else:
            quiet = now - _aware(latest.observed_at).timestamp()
            if quiet < zone.stability_seconds:
                return (f"unchanged for {quiet:.1f}s; waiting until unchanged for {zone.stability_seconds:g}s",
                        zone.stability_seconds - quiet)
            if (newest_change_ns(path) or 0) > _aware(latest.observed_at).timestamp() * 1e9:
                _observe(ledger, zone, path, rel, st, uid, latest.version, now)
                return (f"its companion files changed since the last look; waiting until unchanged for "
                        f"{zone.stability_seconds:g}s", zone.stability_seconds)
    if zone.completion_marker and not Path(str(path) + zone.completion_marker).exists():
        return f"completion marker {path.name}{zone.completion_marker} not there yet", None
    return Acquisition(uid, zone.microscope, str(path), rel, st.st_size, st.st_mtime_ns)


def scan(cfg: FacilityConfig, ledger: Ledger, *, now: float | None = None,
         settle_up_to: float = 10.0) -> ScanResult:
    """List quiescent acquisitions not collected yet (or to resume), and what is still waiting (and why).

    Each look is recorded in the ledger (``discovered`` rows), which is how quiescence is measured
    across runs. When files wait only for their second look and that is due within ``settle_up_to``
    seconds (short ``stability_seconds``), the scan sleeps until then and looks again itself, so one
    run collects them. ``now`` (tests) fixes the clock and never sleeps.
    """
    result = _scan_once(cfg, ledger, now)
    due = [w.settles_in for w in result.waiting if w.settles_in is not None and w.settles_in <= settle_up_to]
    if now is None and due:
        pause = max(due) + 0.05
        log.info("scan: %d file(s) are due for their second look in %.1fs; looking again then", len(due), pause)
        time.sleep(pause)
        result = _scan_once(cfg, ledger, None)
    log.info("scan: %d acquisition(s) ready, %d waiting", len(result.ready), len(result.waiting))
    return result


def missing_zones(cfg: FacilityConfig) -> list[LandingZone]:
    """The landing zones whose folder does not exist or is not mounted (their files cannot be seen)."""
    return [zone for zone in cfg.landing_zones if not zone.path.is_dir()]


def _scan_once(cfg: FacilityConfig, ledger: Ledger, now: float | None) -> ScanResult:
    ready: list[Acquisition] = []
    waiting: list[Waiting] = []
    for zone in cfg.landing_zones:
        if not zone.path.is_dir():
            log.error("landing zone %s of microscope %s does not exist or is not mounted", zone.path, zone.microscope)
            waiting.append(Waiting(zone.microscope, str(zone.path), "landing zone missing or not mounted"))
            continue
        known = _Zone(ledger, zone)
        paths = sorted(zone.path.rglob("*"))
        # files in a main file's companion folder travel with it, also once retention freed the main file
        belongs = companion_roots([*paths, *(Path(d.source_path) for d in known.datasets.values() if d.source_path)])
        for path in paths:
            if path.is_symlink() or not path.is_file() or not _is_acquisition(path, zone) or inside(path, belongs):
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            rel = path.relative_to(zone.path).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(path).decode("utf-8", "backslashreplace")
                log.error("%s: the file name is not valid UTF-8; rename it on the acquisition PC", shown)
                waiting.append(Waiting(zone.microscope, shown, "file name is not valid UTF-8; rename it"))
                continue
            look = _look(ledger, known, zone, path, rel, st, time.time() if now is None else now)
            if isinstance(look, Acquisition):
                ready.append(look)
            elif look is not None:
                waiting.append(Waiting(zone.microscope, str(path), *look))
    return ScanResult(ready, waiting)
