"""The provenance chain of a crate, in the facility's words: for ``microfair provenance UID`` and the dashboard.

Read from the crate's JSON-LD (not from the ledger), so what people see is what the crate says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChainStep:
    id: str
    name: str
    status: str  # completed | failed | running
    start: str | None
    end: str | None
    tools: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Chain:
    name: str
    licence: str | None
    part_of: str | None
    identifiers: list[str]
    steps: list[ChainStep]
    data: list[dict[str, Any]]


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [] if v is None else [v]


def read_chain(crate: dict[str, Any]) -> Chain:
    by_id = {e["@id"]: e for e in crate.get("@graph", [])}
    root = by_id.get("./", {})

    def name(ref: Any) -> str:
        e = by_id.get(ref.get("@id") if isinstance(ref, dict) else ref, {})
        label = e.get("name") or (ref.get("@id") if isinstance(ref, dict) else str(ref))
        return f"{label} {e['softwareVersion']}" if e.get("softwareVersion") else label

    steps = []
    workflow = (root.get("mainEntity") or {}).get("@id")
    for ref in _list(root.get("mentions")):
        a = by_id.get(ref["@id"], {})
        if "OrganizeAction" in _list(a.get("@type")) or (workflow and {"@id": workflow} in _list(a.get("instrument"))):
            continue  # the workflow run and its orchestration span the steps listed here
        status = str(a.get("actionStatus", "")).rsplit("/", 1)[-1].removesuffix("ActionStatus").lower()
        params = {by_id[r["@id"]]["name"]: by_id[r["@id"]].get("value") for r in _list(a.get("object"))
                  if "PropertyValue" in _list(by_id.get(r["@id"], {}).get("@type"))}
        steps.append(ChainStep(
            id=a.get("@id", ""), name=a.get("name", ""), status=status or "completed", start=a.get("startTime"),
            end=a.get("endTime"), tools=[name(t) for t in _list(a.get("instrument"))],
            agents=[name(x) for x in _list(a.get("agent"))],
            inputs=[name(r) for r in _list(a.get("object"))
                    if "PropertyValue" not in _list(by_id.get(r["@id"], {}).get("@type"))],
            outputs=[name(r) for r in _list(a.get("result"))], settings=params, error=a.get("error")))
    data = [{"id": e["@id"], "name": e.get("name"), "type": e.get("@type"), "size": e.get("contentSize"),
             "sha256": e.get("sha256")} for r in _list(root.get("hasPart")) if (e := by_id.get(r["@id"]))]
    lic = by_id.get((root.get("license") or {}).get("@id", ""), {}).get("name")
    part = by_id.get((root.get("isPartOf") or {}).get("@id", ""), {})
    return Chain(root.get("name", ""), lic, part.get("name"), [str(i) for i in _list(root.get("identifier"))],
                 steps, data)


def format_chain(chain: Chain) -> str:
    """The chain as text, one block per action."""
    out = [chain.name, f"  licence: {chain.licence or 'none recorded'}"
                       + (f"; study: {chain.part_of}" if chain.part_of else ""),
           f"  identifiers: {', '.join(chain.identifiers)}", ""]
    for i, s in enumerate(chain.steps, 1):
        when = " → ".join(t for t in (s.start, s.end) if t) or "time unknown"
        out.append(f"{i:2d}. {s.name}  [{s.status}]  {when}")
        if s.tools:
            out.append(f"      with: {', '.join(s.tools)}")
        if s.agents:
            out.append(f"      by: {', '.join(s.agents)}")
        if s.inputs:
            out.append(f"      from: {', '.join(s.inputs)}")
        if s.outputs:
            out.append(f"      made: {', '.join(s.outputs)}")
        if s.settings:
            out.append("      settings: " + ", ".join(f"{k}={v}" for k, v in s.settings.items()))
        if s.error:
            out.append(f"      error: {s.error}")
    out += ["", f"data entities: {len(chain.data)}"]
    for d in chain.data:
        digest = f" sha256 {d['sha256'][:16]}…" if d.get("sha256") else ""
        out.append(f"  - {d['name']} ({d['type']}, {d['size'] or '?'} bytes{digest})")
    return "\n".join(out)
