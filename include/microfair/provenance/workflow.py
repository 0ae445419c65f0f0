"""The workflow side of the crate: Workflow Run Crate 0.5 and Provenance Run Crate 0.5.

* the DAG file is the root's ``mainEntity`` (File + SoftwareSourceCode + ComputationalWorkflow) with one
  ``HowToStep`` per life-cycle stage, each ``workExample`` the microfair function the stage runs;
* one ``CreateAction`` for the workflow run (instrument = the workflow) spans the first to the last stage;
* an ``OrganizeAction`` (instrument = the engine, Apache Airflow) orchestrates the per-stage ``ControlAction``\\ s.

The DAG file gets its SHA-256 when it is reachable from the installed package
(``microfair_airflow/bundle/dags``, found without importing Airflow); otherwise it is a ``#`` id.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from microfair import __version__
from microfair.provenance import entities as E
from microfair.provenance.actions import Parts, iso
from microfair.provenance.graph import Entity, Graph

PROFILES = {E.PROCESS_RUN_CRATE: "Process Run Crate", E.WORKFLOW_RUN_CRATE: "Workflow Run Crate",
            E.PROVENANCE_RUN_CRATE: "Provenance Run Crate"}
DAG_FILE = "microfair_ingest.py"
#: Stage -> (the microfair function the step runs, the DAG it runs in).
STEP_TOOLS = {"collect": ("microfair.collect.collect", "microfair_ingest"),
              "validate": ("microfair.ingest.validate_dataset", "microfair_ingest"),
              "convert": ("microfair.ingest.convert_dataset", "microfair_ingest"),
              "qc": ("microfair.ingest.qc_dataset", "microfair_ingest"),
              "backup": ("microfair.backup.evaluate_policy", "microfair_backup"),
              "irods": ("microfair.irods.register_dataset", "microfair_irods"),
              "deposit": ("microfair.deposit", "microfair_deposit")}
WORKFLOW_ID = "#workflow-microfair_ingest"


def dag_path() -> Path | None:
    """The installed ingest DAG file (``microfair_airflow/bundle/dags``), without importing the package."""
    try:
        spec = importlib.util.find_spec("microfair_airflow")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = Path(base) / "bundle" / "dags" / DAG_FILE
        if path.is_file():
            return path
    return None


def _engine() -> Entity:
    try:
        version: str | None = importlib.metadata.version("apache-airflow")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {**E.software("Apache Airflow", version), "url": "https://airflow.apache.org/"}


def profile_entities(g: Graph) -> list[dict[str, str]]:
    """The three profiles, described as CreativeWork entities (the profiles ask for that)."""
    return [E.ref(g.add({"@id": url, "@type": "CreativeWork", "name": f"{name} 0.5", "version": "0.5"}))
            for url, name in PROFILES.items()]


def workflow_entities(g: Graph, loc: E.Locator, stages: tuple[str, ...]) -> str:
    """The DAG as the workflow with its steps; each step's tool. Returns the workflow's ``@id``."""
    path = dag_path()
    wf: Entity = {"@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"], "name": f"dags/{DAG_FILE}",
                  "description": "the Apache Airflow DAG of the research-data life cycle (collect to QC); the "
                                 "backup, iRODS and deposit steps run from their own DAGs of the same bundle",
                  "programmingLanguage": E.ref(g.add({"@id": "#python", "@type": "ComputerLanguage",
                                                      "name": "Python", "url": "https://www.python.org/"})),
                  "runtimePlatform": "Apache Airflow", "encodingFormat": "text/x-python"}
    if path is not None:
        data = path.read_bytes()
        wf.update({"@id": loc.id_for(path), "sha256": hashlib.sha256(data).hexdigest(), "contentSize": str(len(data))})
    else:
        wf.update({"@id": WORKFLOW_ID, "disambiguatingDescription": "DAG file not reachable from the installed "
                                                                    "package: referenced by id, without digest"})
    steps = []
    for i, stage in enumerate(stages):
        func, dag = STEP_TOOLS.get(stage, (f"microfair {stage}", "microfair_ingest"))
        tool = g.add({"@id": f"#tool-{E.slug(stage)}", "@type": "SoftwareApplication", "name": func,
                      "softwareVersion": __version__, "isPartOf": E.ref(g.add(E.software("microfair", __version__)))})
        steps.append(E.ref(g.add({"@id": f"#step-{E.slug(stage)}", "@type": "HowToStep", "name": stage,
                                  "position": i + 1, "workExample": E.ref(tool),
                                  "description": f"task {stage} of DAG {dag}"})))
    wf["step"] = steps
    return g.add(wf)["@id"]


def workflow_run(g: Graph, workflow: str, events: list[Any], p: Parts, control_ids: list[str]) -> list[str]:
    """The workflow run's CreateAction and the engine's OrganizeAction; returns their ids (for ``mentions``)."""
    starts = [iso(e.started_at) for e in events if e.started_at]
    ends = [iso(e.ended_at) for e in events if e.ended_at]
    running = any(e.state == "running" for e in events) or not ends
    last = {e.stage: e.state for e in events}
    status = ("ActiveActionStatus" if running else
              "FailedActionStatus" if any(s in ("failed", "interrupted") for s in last.values())
              else "CompletedActionStatus")
    results = [E.ref(i) for i in (p.zarr, *p.records, *p.qc, *p.reports) if i]
    run: Entity = {"@id": "#workflow-run", "@type": "CreateAction", "name": "Run of the microfair life cycle",
                   "instrument": E.ref(workflow), "object": [E.ref(i) for i in (p.raw, p.sidecar) if i],
                   "actionStatus": f"http://schema.org/{status}",
                   **({"agent": E.ref(p.facility)} if p.facility else {})}
    times = {**({"startTime": min(starts)} if starts else {}), **({"endTime": max(ends)} if ends and not running
                                                                 else {})}
    run.update(times)
    if results and status != "FailedActionStatus":
        run["result"] = results
    g.add(run)
    engine = g.add(_engine())
    g.add({"@id": "#orchestration", "@type": "OrganizeAction", "name": "Orchestration by Apache Airflow",
           "instrument": E.ref(engine), "object": [E.ref(c) for c in control_ids], "result": E.ref(run),
           "actionStatus": run["actionStatus"], **times, **({"agent": E.ref(p.facility)} if p.facility else {})})
    return ["#workflow-run", "#orchestration"]
