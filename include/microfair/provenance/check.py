"""A structural check of a crate, for the tests and ``microfair provenance UID --check``.

``roc-validator`` needs the network (it fetches the profiles), so the crate is checked here with
``rocrate``'s own reader (which refuses a data entity the root's ``hasPart`` does not reach) and
these rules, taken from RO-Crate 1.2 and Process Run Crate 0.5:

* the descriptor ``ro-crate-metadata.json`` is about ``./`` and conforms to RO-Crate 1.2;
* the root is a Dataset with ``name``, ``description``, ``license`` and an ISO 8601 ``datePublished``,
  and declares the Process, Workflow and Provenance Run Crate profiles in ``conformsTo`` (each described
  as a CreativeWork);
* Workflow Run Crate: the root's ``mainEntity`` is a File + SoftwareSourceCode + ComputationalWorkflow whose
  ``step``\ s are HowToSteps, and a CreateAction (the workflow run) has it as ``instrument``;
* Provenance Run Crate: every ControlAction's ``instrument`` is a step of that workflow and its ``object`` a
  CreateAction; an OrganizeAction has the engine (a SoftwareApplication) as ``instrument`` and the workflow
  run as ``result``;
* every ``{"@id": …}`` reference points to an entity of the graph (the spec URI excepted), no ``@id`` twice;
* every CreateAction has an ``instrument`` (a SoftwareApplication or an IndividualProduct, with a
  ``softwareVersion`` for software when known), an ``actionStatus``, an ``endTime`` unless it is still
  running, is mentioned by the root, and every File and Dataset is reached from the root's ``hasPart``.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from microfair.provenance.entities import PROCESS_RUN_CRATE, PROVENANCE_RUN_CRATE, WORKFLOW_RUN_CRATE

PROFILES = (PROCESS_RUN_CRATE, WORKFLOW_RUN_CRATE, PROVENANCE_RUN_CRATE)

SPEC = "https://w3id.org/ro/crate/1.2"


def _types(e: dict[str, Any]) -> set[str]:
    t = e.get("@type", [])
    return {t} if isinstance(t, str) else set(t)


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"@id"}:
            return [value["@id"]]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _ids(value: Any) -> set[str]:
    return set(_refs(value))


def check_crate(crate: dict[str, Any], *, recommended: bool = True) -> list[str]:
    """Problems with the crate's JSON-LD (empty when it passes); also reads it with ``rocrate``.

    ``recommended=False`` leaves out what RO-Crate only recommends (the root's name, description and
    licence): a dataset that failed before validation has no licence on record yet.
    """
    from rocrate.rocrate import ROCrate

    problems: list[str] = []
    graph = crate.get("@graph") or []
    ctx = crate.get("@context")
    if f"{SPEC}/context" not in (ctx if isinstance(ctx, list) else [ctx]):
        problems.append(f"@context does not include {SPEC}/context")
    ids = [e.get("@id") for e in graph]
    by_id = {e.get("@id"): e for e in graph}
    problems += [f"@id {i!r} appears {ids.count(i)} times" for i in sorted({i for i in ids if ids.count(i) > 1})]
    problems += [f"entity without @id or @type: {e}" for e in graph if "@id" not in e or "@type" not in e]
    meta, root = by_id.get("ro-crate-metadata.json"), by_id.get("./")
    if meta is None or meta.get("about") != {"@id": "./"} or meta.get("conformsTo") != {"@id": SPEC}:
        problems.append(f"descriptor ro-crate-metadata.json must be about ./ and conform to {SPEC}")
    if root is None or "Dataset" not in _types(root):
        return problems + ["the root ./ is not a Dataset"]
    for key in ("name", "description", "license", "datePublished") if recommended else ("datePublished",):
        if not root.get(key):
            problems.append(f"root ./ has no {key}")
    try:
        datetime.fromisoformat(str(root.get("datePublished")))
    except ValueError:
        problems.append(f"root datePublished {root.get('datePublished')!r} is not ISO 8601")
    for profile in PROFILES:
        if profile not in _ids(root.get("conformsTo")):
            problems.append(f"root conformsTo does not declare {profile}")
        elif "CreativeWork" not in _types(by_id.get(profile) or {}):
            problems.append(f"profile {profile} is not described as a CreativeWork")
    problems += _workflow_rules(graph, by_id, root)
    for e in graph:
        for r in _refs({k: v for k, v in e.items() if k != "@id"}):
            if r not in by_id and not (e.get("@id") == "ro-crate-metadata.json" and r == SPEC):
                problems.append(f"{e.get('@id')} refers to {r!r}, which the crate does not describe")
    mentioned, parts = _ids(root.get("mentions")), _ids(root.get("hasPart"))
    for e in graph:
        eid, types = e.get("@id"), _types(e)
        if types & {"File", "Dataset"} and eid not in ("./",) and eid not in parts:
            problems.append(f"data entity {eid} is not in the root's hasPart")
        if "CreateAction" not in types:
            continue
        tools = [by_id.get(i) for i in _ids(e.get("instrument"))]
        if not tools:
            problems.append(f"{eid}: CreateAction without instrument")
        for t in tools:
            if t is not None and not _types(t) & {"SoftwareApplication", "IndividualProduct", "ComputationalWorkflow"}:
                problems.append(f"{eid}: instrument {t['@id']} is neither software nor a product")
        if not e.get("actionStatus"):
            problems.append(f"{eid}: no actionStatus")
        if not e.get("endTime") and not str(e.get("actionStatus", "")).endswith("ActiveActionStatus"):
            problems.append(f"{eid}: finished action without endTime")
        if eid not in mentioned:
            problems.append(f"{eid}: CreateAction not in the root's mentions")
        for t in ("startTime", "endTime"):
            if e.get(t):
                try:
                    datetime.fromisoformat(str(e[t]))
                except ValueError:
                    problems.append(f"{eid}: {t} {e[t]!r} is not ISO 8601")
    try:
        ROCrate(copy.deepcopy(crate))  # the reader consumes the dict it is given
    except Exception as exc:  # the library's own reader: its refusal is a finding, not a crash
        problems.append(f"rocrate cannot read the crate: {type(exc).__name__}: {exc}")
    return problems


def _workflow_rules(graph: list[dict[str, Any]], by_id: dict[Any, dict[str, Any]], root: dict[str, Any]) -> list[str]:
    """Workflow Run Crate and Provenance Run Crate 0.5: the workflow, its run, the steps and the engine."""
    problems: list[str] = []
    main_id = next(iter(_ids(root.get("mainEntity"))), None)
    main = by_id.get(main_id) or {}
    if not {"File", "SoftwareSourceCode", "ComputationalWorkflow"} <= _types(main):
        return [f"root mainEntity {main_id!r} is not a ComputationalWorkflow (File, SoftwareSourceCode)"]
    steps = _ids(main.get("step"))
    for sid in steps:
        if "HowToStep" not in _types(by_id.get(sid) or {}):
            problems.append(f"workflow step {sid} is not a HowToStep")
    runs = [e for e in graph if "CreateAction" in _types(e) and main_id in _ids(e.get("instrument"))]
    if not runs:
        problems.append(f"no CreateAction of the workflow run has the mainEntity {main_id} as instrument")
    run_ids = {e["@id"] for e in runs}
    for e in graph:
        if "ControlAction" in _types(e):
            if not _ids(e.get("instrument")) or not _ids(e.get("instrument")) <= steps:
                problems.append(f"{e.get('@id')}: ControlAction instrument is not a step of the workflow")
            tools = {t for s in _ids(e.get("instrument")) for t in _ids((by_id.get(s) or {}).get("workExample"))}
            for o in _ids(e.get("object")) or {None}:
                action = by_id.get(o) or {}
                if "CreateAction" not in _types(action):
                    problems.append(f"{e.get('@id')}: ControlAction object is not a CreateAction")
                elif not tools <= _ids(action.get("instrument")):
                    problems.append(f"{e.get('@id')}: the step's tool (workExample) is not the instrument of {o}")
    organize = [e for e in graph if "OrganizeAction" in _types(e)]
    if not organize:
        problems.append("no OrganizeAction (the engine's orchestration)")
    for e in organize:
        tools = [by_id.get(i) or {} for i in _ids(e.get("instrument"))]
        if not tools or not all("SoftwareApplication" in _types(t) for t in tools):
            problems.append(f"{e.get('@id')}: OrganizeAction instrument is not the engine (a SoftwareApplication)")
        if not _ids(e.get("result")) & run_ids:
            problems.append(f"{e.get('@id')}: OrganizeAction result is not the workflow run's CreateAction")
    return problems
