"""The dataset's history as actions: one ``CreateAction`` per stage run (Process Run Crate 0.5).

Each stage event of the ledger becomes an action with its start and end time, its status
(``CompletedActionStatus``, ``FailedActionStatus`` with the error, or ``ActiveActionStatus``
while it runs), its ``instrument`` (software with version), its ``object`` (inputs and the
settings it ran with, as ``PropertyValue``), its ``result`` and its ``agent``. Backup copies
come from the per-target records (``backup:<target>``) and the target's run event, and the
acquisition itself is the first action: the operator at the microscope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from microfair.provenance import entities as E
from microfair.provenance.graph import Entity, Graph

STATUS = {"succeeded": "CompletedActionStatus", "flagged": "CompletedActionStatus",
          "skipped": "CompletedActionStatus", "failed": "FailedActionStatus",
          "interrupted": "FailedActionStatus", "running": "ActiveActionStatus"}
LABEL = {"collect": "Collect from the landing zone", "validate": "Validate name and metadata",
         "convert": "Convert to OME-Zarr", "qc": "Quality control", "backup": "3-2-1 backup evaluation",
         "irods": "Register in iRODS", "deposit": "Deposit in the BioImage Archive"}
#: At most this many attempts of one stage are listed (the newest); older ones are counted.
MAX_PER_STAGE = 10


def iso(at: datetime | str | None) -> str | None:
    if at is None:
        return None
    if isinstance(at, str):
        return at
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")


@dataclass
class Parts:
    """The data entities and agents the actions point at (ids already in the graph)."""

    landing: str | None = None
    raw: str | None = None
    sidecar: str | None = None
    zarr: str | None = None
    records: list[str] = field(default_factory=list)
    qc: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)  # reports of the conversion pass (metadata_report.json)
    facility: str | None = None
    operator: str | None = None
    depositor: str | None = None
    microscope: str | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)  # more results per stage (other records)


def _refs(*ids: str | None) -> list[dict[str, str]]:
    return [E.ref(i) for i in ids if i]


def _instruments(g: Graph, ev: Any, run: dict[str, Any] | None, image_metadata: dict[str, Any] | None) -> list[dict]:
    versions = dict((run or {}).get("software") or {})
    versions.pop("python", None)
    tools = [E.pypi_software(name, v) for name, v in versions.items()] or [E.software("microfair", None)]
    if ev.stage == "validate" and (image_metadata or {}).get("reader"):
        tools.append(E.software(f"bioio reader {image_metadata['reader']}", image_metadata.get("reader_version")))
    return [E.ref(g.add(t)) for t in tools]


def _inputs_outputs(stage: str, p: Parts, ev: Any, records: dict[str, Any]) -> tuple[list, list]:
    if stage == "collect":
        return _refs(p.landing), _refs(p.raw, p.sidecar)
    if stage == "validate":
        return _refs(p.raw, p.sidecar), _refs(*p.records)
    if stage == "convert":
        return _refs(p.raw), _refs(p.zarr, *p.reports)
    if stage == "qc":
        return _refs(p.zarr), _refs(*p.qc)
    if stage == "backup":
        return _refs(p.raw), _refs("#backup-verdict" if records.get("backup_verdict") else None)
    if stage == "irods":
        return _refs(p.raw, p.zarr), _refs(*(f"#irods-{k}" for k in ("data_object", "zarr_collection")
                                            if (records.get("irods") or {}).get(k)))
    if stage == "deposit":
        target = _deposit_target(ev)
        if target != "bia":
            pub = (records.get("publications") or {}).get(target) or {}
            return _refs(p.raw), _refs((pub.get("landing_page") or f"#publication-{E.slug(target)}")
                                       if pub.get("landing_page") or pub.get("pid") else None)
        bia = records.get("bia") or {}
        return _refs(p.raw), _refs(bia.get("url") if bia.get("accession") else None)
    return [], []


TARGETS = {"bia": "the BioImage Archive", "zenodo": "Zenodo", "dataverse": "Dataverse"}


def _deposit_target(ev: Any) -> str:
    """``bia`` for the BioImage Archive steps, else the repository named in the step (``zenodo:publish``)."""
    step = str((ev.details or {}).get("step") or "")
    return step.split(":", 1)[0] if ":" in step else "bia"


def _parameters(g: Graph, aid: str, stage: str, run: dict[str, Any] | None, records: dict[str, Any]) -> list[dict]:
    params = dict((run or {}).get("parameters") or {})
    if stage == "qc" and (records.get("qc") or {}).get("thresholds"):
        params = records["qc"]["thresholds"]  # what QC actually compared against
    return [E.ref(g.add(E.parameter(aid, k, v))) for k, v in sorted(params.items())]


def _changed_nothing(ev: Any) -> bool:
    d = ev.details or {}
    return (ev.stage == "irods" and ev.state == "succeeded" and d.get("transferred") == 0
            and not d.get("avus_added") and not d.get("avus_removed"))


def significant(events: list[Any]) -> list[Any]:
    """The events the crate lists: an iRODS re-run that transferred and changed nothing is not new provenance
    (so that a re-run leaves the crate, and the copy of it in iRODS, as they were)."""
    out, registered = [], False
    for ev in events:
        if registered and _changed_nothing(ev):
            continue
        registered = registered or (ev.stage == "irods" and ev.state == "succeeded")
        out.append(ev)
    return out


def stage_actions(g: Graph, events: list[Any], runs: dict[str, Any], records: dict[str, Any], p: Parts) -> list[str]:
    """One CreateAction (and its ControlAction, linking it to its step) per listed stage event."""
    by_stage: dict[str, list[Any]] = {}
    for ev in events:
        by_stage.setdefault(ev.stage, []).append(ev)
    keep = {ev.id for evs in by_stage.values() for ev in evs[-MAX_PER_STAGE:]}
    ids: list[str] = []
    for ev in events:
        if ev.id not in keep:
            continue
        run = runs.get(str(ev.id))
        aid = f"#run-{ev.id}"
        step = (ev.details or {}).get("step")
        if ev.stage == "deposit" and step and ":" in str(step):
            target, sub = str(step).split(":", 1)
            name = f"Deposit in {TARGETS.get(target, target)}: {sub}"
        else:
            name = LABEL.get(ev.stage, ev.stage) + (f": {step}" if step else "")
        objects, results = _inputs_outputs(ev.stage, p, ev, records)
        results += _refs(*p.extra.get(ev.stage, []))
        action: Entity = {"@id": aid, "@type": "CreateAction", "name": name,
                          "instrument": _instruments(g, ev, run, records.get("image_metadata"))
                          + _refs(tool if (tool := f"#tool-{E.slug(ev.stage)}") in g else None),  # the step's tool
                          "object": objects + _parameters(g, aid, ev.stage, run, records),
                          "actionStatus": f"http://schema.org/{STATUS.get(ev.state, 'CompletedActionStatus')}",
                          "startTime": iso(ev.started_at), "agent": _agent(ev.stage, p)}
        if ev.ended_at is not None:
            action["endTime"] = iso(ev.ended_at)
        if results and ev.state in ("succeeded", "flagged", "skipped"):
            action["result"] = results
        if ev.error:
            action["error" if ev.state in ("failed", "interrupted") else "description"] = ev.error[:500]
        if ev.attempt and ev.attempt > 1:
            action["description"] = (action.get("description", "") + f" (attempt {ev.attempt})").strip()
        if ev.dag_id:
            action["identifier"] = " / ".join(str(x) for x in (ev.dag_id, ev.run_id, ev.task_id,
                                                                 ev.map_index) if x is not None)
        if run and run.get("recorded_after"):
            action["disambiguatingDescription"] = ("software versions and settings recorded after this run "
                                                   "(from the configuration at that time)")
        g.add(action)
        step_id = f"#step-{E.slug(ev.stage)}"
        if step_id in g:
            g.add({"@id": f"#control-{ev.id}", "@type": "ControlAction", "name": f"orchestrate {name}",
                   "instrument": E.ref(step_id), "object": E.ref(aid)})
        ids.append(aid)
    dropped = len(events) - len(keep)
    if dropped:
        g.add({"@id": "#older-attempts", "@type": "PropertyValue", "name": "older attempts not listed",
               "value": dropped})
    return ids


def _agent(stage: str, p: Parts) -> dict | list[dict]:
    if stage == "deposit" and p.depositor:
        return [E.ref(p.depositor), *_refs(p.facility)]
    return E.ref(p.facility) if p.facility else []


def acquisition_action(g: Graph, records: dict[str, Any], p: Parts, collected_at: Any) -> str | None:
    """The acquisition at the microscope: the operator as agent, the microscope as instrument."""
    if not p.microscope:
        return None
    params = ((records.get("rembi") or {}).get("image_acquisition") or {}).get("image_acquisition_parameters") or {}
    software = params.get("acquisition_software")
    instruments = [E.ref(p.microscope)]
    if software:
        instruments.append(E.ref(g.add(E.software(str(software), None))))
    action: Entity = {"@id": "#acquisition", "@type": "CreateAction", "name": "Image acquisition",
                      "instrument": instruments, "actionStatus": "http://schema.org/CompletedActionStatus",
                      "result": _refs(p.landing or p.raw)}
    when = params.get("acquisition_date") or (records.get("dublin_core") or {}).get("date")
    action["endTime"] = when or iso(collected_at)
    if not when:
        action["description"] = "acquisition time unknown: the end time is when the file was collected"
    if p.operator:
        action["agent"] = E.ref(p.operator)
    g.add(action)
    return action["@id"]


def backup_actions(g: Graph, records: dict[str, Any], run_events: dict[str, Any], p: Parts) -> list[str]:
    """One CreateAction per backup target holding a copy: the restic snapshot, verified by a read-back or not."""
    ids = []
    for kind in sorted(k for k in records if k.startswith("backup:")):
        rec = records[kind]
        target, snap = rec.get("target") or kind.split(":", 1)[1], rec.get("snapshot")
        if not snap:
            continue
        ev = run_events.get(snap)
        snap_id = f"#backup-{E.slug(target)}-{E.slug(snap[:16])}"
        g.add({"@id": snap_id, "@type": "CreativeWork", "name": f"restic snapshot {snap[:8]} on target {target}",
               "identifier": snap, "description": ("verified: read back with the ledger's checksum"
                                                   if rec.get("verified") else
                                                   f"not verified: {rec.get('reason') or 'not read back yet'}")})
        aid = f"#backup-copy-{E.slug(target)}"
        action: Entity = {"@id": aid, "@type": "CreateAction", "name": f"Back up to {target}",
                          "instrument": [E.ref(g.add(E.software("restic", None, "https://restic.net/")))],
                          "object": _refs(p.raw), "result": [E.ref(snap_id)],
                          "actionStatus": "http://schema.org/CompletedActionStatus",
                          "endTime": rec.get("verified_at") or rec.get("checked_at"),
                          "agent": E.ref(p.facility) if p.facility else []}
        if ev is not None:
            action["startTime"] = iso(ev.started_at)
            action["identifier"] = " / ".join(str(x) for x in (ev.dag_id, ev.run_id, ev.task_id) if x)
        g.add(action)
        ids.append(aid)
    return ids
