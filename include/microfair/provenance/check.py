"""A structural check of a crate, for the tests and ``microfair provenance UID --check``.

``roc-validator`` needs the network (it fetches the profiles), so the crate is checked here with
``rocrate``'s own reader (which refuses a data entity the root's ``hasPart`` does not reach) and
these rules, taken from RO-Crate 1.2 and Process Run Crate 0.5:

* the descriptor ``ro-crate-metadata.json`` is about ``./`` and conforms to RO-Crate 1.2;
* the root is a Dataset with ``name``, ``description``, ``license`` and an ISO 8601 ``datePublished``,
  and declares the Process Run Crate profile in ``conformsTo``;
* every ``{"@id": …}`` reference points to an entity of the graph (the spec URI excepted), no ``@id`` twice;
* every CreateAction has an ``instrument`` (a SoftwareApplication or an IndividualProduct, with a
  ``softwareVersion`` for software when known), an ``actionStatus``, an ``endTime`` unless it is still
  running, is mentioned by the root, and every File and Dataset is reached from the root's ``hasPart``.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from microfair.provenance.entities import PROCESS_RUN_CRATE

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
    if PROCESS_RUN_CRATE not in _ids(root.get("conformsTo")):
        problems.append(f"root conformsTo does not declare {PROCESS_RUN_CRATE}")
    for e in graph:
        for r in _refs({k: v for k, v in e.items() if k != "@id"}):
            if r not in by_id and not (e.get("@id") == "ro-crate-metadata.json" and r == SPEC) \
                    and r != PROCESS_RUN_CRATE:
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
            if t is not None and not _types(t) & {"SoftwareApplication", "IndividualProduct"}:
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
