"""One ingest pass from a shell: discover → collect → validate → convert → QC, for every ready acquisition.

The same domain functions as the ``microfair_ingest`` DAG (:func:`microfair.collect.scan`,
:func:`microfair.collect.collect`, :func:`microfair.ingest.validate_dataset`,
:func:`~microfair.ingest.convert_dataset`, :func:`~microfair.ingest.qc_dataset`), one acquisition
after the other, for IT staff without the Airflow UI (``microfair ingest``). Every stage leaves its
event in the ledger exactly as under Airflow, so the dashboard and ``microfair status`` show the pass.

One bad file never stops the others: an acquisition that fails or is quarantined is reported with
its reason and the pass goes on. A stage that raised before it could record its own event (for
example a dataset in a state the stage refuses) gets a ``failed`` event here, so nothing fails
invisibly.

Conversion runs on ``client`` (a ``distributed.Client``) when given, else on dask's threaded
scheduler, sized by :mod:`microfair.convert.memory` to ``conversion.memory_limit_mb``, the same
bound the DAG's local cluster applies (the DAG needs worker processes only to keep the Airflow task
process small; a shell process has no such constraint).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from microfair.config import FacilityConfig
from microfair.ledger import Ledger, RunContext

log = logging.getLogger(__name__)

#: Dataset state after each stage that lets the next one run.
DONE = "qc_done"


@dataclass
class AcquisitionOutcome:
    """How far one acquisition got in this pass, and why it stopped."""

    uid: str
    microscope: str
    source: str
    state: str  # qc_done, quarantined, failed, not_ready
    stage: str  # the last stage attempted
    seconds: float
    error: str | None = None  # the reason of a failure or a quarantine
    flags: list[str] = field(default_factory=list)  # warnings recorded on the way (naming, QC)

    @property
    def ok(self) -> bool:
        return self.state == DONE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class PassResult:
    """Everything one pass did; ``failed`` lists what needs a person (failures and quarantines)."""

    run_id: str
    acquisitions: list[AcquisitionOutcome]
    waiting: list[dict[str, Any]]
    missing_zones: list[str]
    seconds: float

    @property
    def failed(self) -> list[AcquisitionOutcome]:
        return [a for a in self.acquisitions if a.state in ("failed", "quarantined")]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing_zones

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.acquisitions:
            out[a.state] = out.get(a.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "ok": self.ok, "seconds": round(self.seconds, 3), "counts": self.counts(),
                "acquisitions": [a.to_dict() for a in self.acquisitions], "waiting": self.waiting,
                "missing_zones": self.missing_zones}


def select_zones(cfg: FacilityConfig, zone: str | None) -> FacilityConfig:
    """``cfg`` restricted to one landing zone, named by its microscope or its path (None: all zones)."""
    if zone is None:
        return cfg
    chosen = [z for z in cfg.landing_zones if zone in (z.microscope, str(z.path))]
    if not chosen:
        known = ", ".join(z.microscope for z in cfg.landing_zones) or "none"
        raise ValueError(f"no landing zone {zone!r} in the configuration (zones: {known})")
    return cfg.model_copy(update={"landing_zones": chosen})


def run_pass(cfg: FacilityConfig, ledger: Ledger, *, zone: str | None = None, client: Any = None,
             run_id: str | None = None) -> PassResult:
    """Scan the landing zones (or only ``zone``) and take every ready acquisition through QC.

    :param cfg: the facility configuration.
    :param ledger: the facility ledger (every stage records its events there).
    :param zone: a landing zone's microscope name or path; all zones when None.
    :param client: a ``distributed.Client`` for the conversion; dask's threaded scheduler when None.
    :param run_id: recorded with every event (default ``cli__<UTC time>``).
    """
    from microfair.collect import scan

    started = time.perf_counter()
    cfg = select_zones(cfg, zone)
    run_id = run_id or "cli__" + datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    missing = [f"{z.microscope}: {z.path}" for z in cfg.landing_zones if not z.path.is_dir()]
    for m in missing:
        log.error("landing zone %s does not exist or is not mounted", m)
    found = scan(cfg, ledger)
    log.info("ingest pass %s: %d acquisition(s) ready, %d waiting", run_id, len(found.ready), len(found.waiting))
    outcomes = [ingest_acquisition(cfg, ledger, acq, client=client, ctx=RunContext(dag_id="microfair_cli",
                                                                                     run_id=run_id, task_id="ingest"))
                for acq in found.ready]
    waiting = [asdict(w) for w in found.waiting]
    result = PassResult(run_id, outcomes, waiting, missing, time.perf_counter() - started)
    log.info("ingest pass %s: %s in %.1f s", run_id, result.counts() or "nothing to do", result.seconds)
    return result


def ingest_acquisition(cfg: FacilityConfig, ledger: Ledger, acq: Any, *, client: Any = None,
                       ctx: RunContext | None = None) -> AcquisitionOutcome:
    """collect → validate → convert → QC of one acquisition; never raises for a bad file."""
    from microfair import ingest
    from microfair.collect import NotReady, collect

    started = time.perf_counter()
    uid = acq.uid
    stages = (
        ("collect", lambda: collect(cfg, ledger, acq, ctx)),
        ("validate", lambda: ingest.validate_dataset(cfg, ledger, uid, ctx)),
        ("convert", lambda: ingest.convert_dataset(cfg, ledger, uid, ctx, client=client)),
        ("qc", lambda: ingest.qc_dataset(cfg, ledger, uid, ctx)),
    )

    def outcome(state: str, stage: str, error: str | None = None) -> AcquisitionOutcome:
        return AcquisitionOutcome(uid, acq.microscope, acq.source, state, stage, time.perf_counter() - started,
                                  error, _flags(ledger, uid))

    for stage, run in stages:
        before = _last_event_id(ledger, uid, stage)
        try:
            state = run()
        except NotReady as exc:
            log.info("%s: not ready, left for the next pass: %s", uid, exc)
            return outcome("not_ready", stage, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the pass; the reason is kept
            reason = f"{type(exc).__name__}: {exc}"
            log.error("%s: %s failed: %s", uid, stage, reason)
            log.debug("%s: %s failed", uid, stage, exc_info=True)
            _record_unrecorded_failure(ledger, uid, stage, ctx, before, reason)
            return outcome("failed", stage, reason)
        if state == "quarantined":
            ds = ledger.get(uid)
            return outcome("quarantined", stage, ds.reason if ds is not None else None)
        if state == "not_ready":
            return outcome("not_ready", stage)
    return outcome(DONE, "qc")


def _last_event_id(ledger: Ledger, uid: str, stage: str) -> int:
    try:
        events = ledger.events(uid, stage)
    except Exception:  # noqa: BLE001 - a dataset not in the ledger yet has no events
        return 0
    return max((e.id for e in events), default=0)


def _record_unrecorded_failure(ledger: Ledger, uid: str, stage: str, ctx: RunContext | None, before: int,
                               reason: str) -> None:
    """A ``failed`` event for a stage that raised before recording one itself (e.g. a refused state)."""
    if ledger.get(uid) is None:
        return
    if any(e.id > before and e.state == "failed" for e in ledger.events(uid, stage)):
        return
    event_id = ledger.start_event(uid, stage, ctx)
    ledger.finish_event(event_id, "failed", error=reason)


def _flags(ledger: Ledger, uid: str) -> list[str]:
    """Warnings the stages recorded (``flagged`` events of this dataset, latest per stage)."""
    try:
        states = ledger.stage_states(uid)
    except Exception:  # noqa: BLE001 - no dataset, no flags
        return []
    return [f"{stage}: {st.error}" for stage, st in states.items() if st.state == "flagged" and st.error]
