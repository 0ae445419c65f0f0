"""Build a dataset's RO-Crate (RO-Crate 1.2; Process, Workflow and Provenance Run Crate 0.5) from the ledger alone.

``build_crate(ledger, uid, root=...)`` returns the JSON-LD of ``ro-crate-metadata.json``. The same
facts are rendered for two places: ``root`` is the folder the crate is written into (the OME-Zarr,
or the dataset's reports folder). Files inside it get relative ids, everything else an absolute
``file:`` URI; the OME-Zarr is always ONE Dataset entity with its tree digest, never file by file.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from sqlalchemy import select

from microfair.ledger import Dataset, Record, StageEvent
from microfair.provenance import entities as E
from microfair.provenance.actions import Parts, acquisition_action, backup_actions, iso, significant, stage_actions
from microfair.provenance.facts import RECORD
from microfair.provenance.graph import Entity, Graph
from microfair.provenance.workflow import profile_entities, workflow_entities, workflow_run

VERSION = "1.2"
PIPELINE = ("collect", "validate", "convert", "qc", "backup", "irods", "deposit")
#: Records described elsewhere in the crate, or bookkeeping: not turned into identifier entities.
_KNOWN = {"dublin_core", "rembi", "qc", "image_metadata", "name_check", "backup_verdict", "irods", "bia",
          "datacite", RECORD, "quarantine", "primary", "eln", "publications", "pixel_proof", "nyquist",
          "metadata_report"}


def dataset_records(ledger: Any, uid: str) -> dict[str, dict[str, Any]]:
    """Every ledger record of ``uid`` by kind (the ledger has no list call: one query here)."""
    with ledger.session() as s:
        rows = s.execute(select(Record.kind, Record.body).join(Dataset).where(Dataset.uid == uid))
        return {kind: body for kind, body in rows}


def backup_run_events(ledger: Any, snapshots: set[str]) -> dict[str, Any]:
    """The per-target backup runs (dataset-less events) that made these snapshots, by snapshot id."""
    if not snapshots:
        return {}
    with ledger.session() as s:
        q = select(StageEvent).where(StageEvent.dataset_id.is_(None), StageEvent.stage == "backup",
                                     StageEvent.checksum.in_(snapshots)).order_by(StageEvent.id)
        return {ev.checksum: ev for ev in s.scalars(q)}


def _file(g: Graph, loc: E.Locator, path: str | None, facts: dict[str, Any] | None, **props: Any) -> str | None:
    if not path:
        return None
    ent: Entity = {"@id": loc.id_for(path), "@type": "File", "name": Path(path).name}
    if facts:
        ent["contentSize"] = str(facts.get("size"))
        if facts.get("sha256"):
            ent["sha256"] = facts["sha256"]
    ent.update({k: v for k, v in props.items() if v is not None})
    g.add(ent)
    return ent["@id"]


def _data_entities(g: Graph, loc: E.Locator, ds: Any, files: list[Any], prov: dict[str, Any],
                   records: dict[str, Any]) -> Parts:
    facts = prov.get("files") or {}
    p = Parts()
    fmt = (records.get("dublin_core") or {}).get("format")
    p.raw = _file(g, loc, ds.raw_path, {"size": ds.size_bytes, "sha256": ds.sha256}, encodingFormat=fmt,
                  description="raw copy (read-only) as collected from the landing zone")
    if ds.source_path and ds.source_path != ds.raw_path:
        p.landing = _file(g, loc, ds.source_path, {"size": ds.size_bytes, "sha256": ds.sha256},
                          description=f"the acquisition in the landing zone of {ds.microscope} (freed by the "
                                      "retention robot once 3-2-1 holds)")
    for f in files:
        if f.role == "sidecar":
            p.sidecar = _file(g, loc, f.path, facts.get(f.path), encodingFormat="application/yaml",
                              description="the user's metadata sidecar")
        elif f.role == "record":
            kind = Path(f.path).stem
            about = {"dublin_core": "Dublin Core record (15 elements)", "rembi": "REMBI record (BIA model v1.5)",
                     "image_metadata": "image metadata read through bioio"}.get(kind, f"{kind} record")
            p.records.append(_file(g, loc, f.path, facts.get(f.path), encodingFormat="application/json",
                                   description=about))
        elif f.role == "report":
            is_qc = Path(f.path).name == "qc.json"
            fid = _file(g, loc, f.path, facts.get(f.path), encodingFormat="application/json",
                        description="QC report: per-channel saturation, SNR, focus, dynamic range, flags"
                        if is_qc else f"report {Path(f.path).name}")
            (p.qc.insert(0, fid) if is_qc else p.reports.append(fid))  # other reports come from the conversion
        elif f.role == "thumbnail":
            p.qc.append(_file(g, loc, f.path, facts.get(f.path), encodingFormat="image/png",
                              description="thumbnail: maximum-intensity projection of one channel"))
    z = prov.get("zarr") or {}
    if ds.zarr_path:
        zid = loc.id_for(ds.zarr_path, folder=True)
        ent: Entity = {"@id": zid, "@type": "Dataset", "name": Path(ds.zarr_path).name,
                       "encodingFormat": "OME-Zarr (NGFF)",
                       "description": "the OME-Zarr conversion, listed as one entity with its tree digest"}
        if z.get("path") == ds.zarr_path:
            ent.update(contentSize=str(z["bytes"]), sha256=z["sha256"])
            ent["additionalProperty"] = [E.ref(g.add({"@id": "#zarr-tree-digest", "@type": "PropertyValue",
                                                      "name": "tree digest", "value": f"sha256:{z['sha256']}",
                                                      "description": z.get("algorithm"),
                                                      "valueReference": f"{z['files']} files"}))]
        if zid == "./":
            g.entities["./"].update({k: v for k, v in ent.items() if k not in ("@id", "@type", "name")})
        else:
            g.add(ent)
        p.zarr = zid
    return p


def _context_entities(g: Graph, ds: Any, prov: dict[str, Any], records: dict[str, Any], p: Parts) -> None:
    rembi, bia = records.get("rembi"), records.get("bia")
    facility = g.add(E.organization(prov.get("facility")))
    p.facility = facility["@id"]
    op = g.add(E.operator(rembi, records.get("name_check")))
    p.operator = op["@id"] if op else None
    dep = g.add(E.depositor(bia)) if bia else None
    p.depositor = dep["@id"] if dep else None
    if ds.microscope:
        p.microscope = g.add(E.microscope(ds.microscope, rembi, records.get("image_metadata")))["@id"]


def _root(g: Graph, ds: Any, records: dict[str, Any], p: Parts, actions: list[str], updated: str | None,
          default_licence: str | None) -> None:
    dc, rembi, bia = records.get("dublin_core") or {}, records.get("rembi") or {}, records.get("bia") or {}
    study = rembi.get("study") or {}
    root = g.entities["./"]
    root.update({"name": dc.get("title") or ds.name,
                 "description": study.get("description") or dc.get("description")
                 or f"{ds.name}: acquisition {ds.uid} of {ds.microscope}, from the microscope to its publication",
                 "datePublished": bia.get("release_date") or updated or iso(ds.created_at),
                 "conformsTo": profile_entities(g),
                 "mentions": [E.ref(a) for a in actions],
                 "publisher": E.ref(p.facility)})
    identifiers = [ds.uid]
    lic = g.add(E.licence(dc.get("rights") or study.get("license") or default_licence))
    if lic:
        root["license"] = E.ref(lic)
    if study.get("keywords") or dc.get("subject"):
        root["keywords"] = study.get("keywords") or dc.get("subject")
    authors = [g.add(E.person(a, g.get(p.facility))) for a in study.get("authors") or []]
    if authors:
        root["creator"] = [E.ref(a) for a in authors]
    elif p.operator:
        root["creator"] = [E.ref(p.operator)]
    tax = g.add(E.taxon(rembi))
    if tax:
        root["about"] = E.ref(tax)
    if ds.project:
        proj = g.add({"@id": f"#project-{E.slug(ds.project)}", "@type": "Project", "name": ds.project,
                      "parentOrganization": E.ref(p.facility)})
        part = proj
        if ds.study:
            part = g.add({"@id": f"#study-{E.slug(ds.project)}-{E.slug(ds.study)}", "@type": "CreativeWork",
                          "additionalType": "REMBI Study", "name": study.get("title") or ds.study,
                          "isPartOf": E.ref(proj)})
        root["isPartOf"] = E.ref(part)
    if bia.get("accession"):
        g.add({"@id": bia["url"], "@type": "CreativeWork", "name": f"BioImage Archive study {bia['accession']}",
               "identifier": bia["accession"], "publisher": "EMBL-EBI BioImage Archive",
               **({"datePublished": bia["release_date"]} if bia.get("release_date") else {})})
        identifiers.append(bia["accession"])
        root["sdPublisher"] = "EMBL-EBI BioImage Archive"
    for doi in dict.fromkeys(d for d in (bia.get("doi"), (records.get("datacite") or {}).get("doi")) if d):
        identifiers.insert(0, f"https://doi.org/{doi}")
    _other_identifiers(g, records, identifiers)
    root["identifier"] = identifiers
    # ELN entry (sidecar/project default ``eln``, issue 14 item 4) and publications: the entries it is based on.
    eln = records.get("eln") or {}
    if eln.get("url") or eln.get("entry_id"):
        label = " ".join(str(x) for x in (eln.get("system"), eln.get("entity_type"), eln.get("entry_id")) if x)
        root["isBasedOn"] = E.ref(g.add({"@id": eln.get("url") or f"#eln-{E.slug(label)}", "@type": "CreativeWork",
                                          "name": f"electronic lab notebook entry ({label or 'link'})",
                                          **({"identifier": str(eln["entry_id"])} if eln.get("entry_id") else {})}))
    cites = [c for c in study.get("publications") or [] if c]
    if cites:
        root["citation"] = [E.ref(g.add({"@id": c if c.startswith("http") else f"https://doi.org/{c}"
                                         if c.startswith("10.") else f"#citation-{E.slug(c)[:60]}",
                                         "@type": "ScholarlyArticle", "name": c})) for c in cites]


def _other_identifiers(g: Graph, records: dict[str, Any], identifiers: list[str]) -> None:
    """Deposit identifiers other stages record (Dataverse, Zenodo…: any record with a DOI, accession or URL)."""
    for target, pub in sorted((records.get("publications") or {}).items()):
        if not isinstance(pub, dict) or not (pub.get("landing_page") or pub.get("pid")):
            continue
        pid = str(pub.get("pid") or "")
        g.add({"@id": publication_id(target, pub), "@type": "CreativeWork",
               "name": f"{target} record {pub.get('id') or pid}", **({"identifier": pid} if pid else {}),
               **({"datePublished": pub["published_at"]} if pub.get("published_at") else {}),
               "creativeWorkStatus": pub.get("state") or "published"})
        if pid:
            doi = f"https://doi.org/{pid}" if pid.startswith("10.") else pid
            if doi not in identifiers:
                identifiers.append(doi)
    for kind in sorted(records):
        if kind in _KNOWN or kind == "publications" or kind.startswith("backup:"):
            continue
        body = records[kind] or {}
        doi = body.get("doi") or body.get("persistent_id") or body.get("persistentId")
        url = body.get("url") or body.get("html_url")
        if not (doi or url) or not isinstance(body, dict):
            continue
        if doi:
            identifiers.append(doi if str(doi).startswith(("http", "doi:")) else f"https://doi.org/{doi}")
        if url:
            g.add({"@id": url, "@type": "CreativeWork", "name": f"{kind} deposit",
                   **({"identifier": str(doi)} if doi else {})})


def publication_id(target: str, pub: dict[str, Any]) -> str:
    return pub.get("landing_page") or f"#publication-{E.slug(target)}"


def _sha2_hex(checksum: str | None) -> str | None:
    """iRODS ``sha2:<base64>`` as the hex digest the crate uses elsewhere; None for anything else."""
    if not checksum or not checksum.startswith("sha2:"):
        return None
    try:
        return base64.b64decode(checksum[5:], validate=True).hex()
    except ValueError:
        return None


def _irods_entities(g: Graph, records: dict[str, Any]) -> None:
    rec = records.get("irods") or {}
    for key, what in (("data_object", "raw file"), ("zarr_collection", "OME-Zarr collection")):
        if rec.get(key):
            hexd = _sha2_hex(rec.get("checksum")) if key == "data_object" else None
            g.add({"@id": f"#irods-{key}", "@type": "CreativeWork", "name": f"iRODS {what}",
                   "identifier": rec[key], **({"sha256": hexd} if hexd else {})})


#: Records of other stages that are results of a stage run: (kind, stage, what it is).
STAGE_RECORDS = (("metadata_report", "convert", "metadata report: which metadata reached the OME-Zarr"),
                 ("pixel_proof", "convert", "pixel proof: the OME-Zarr's pixels compared with the raw file's"),
                 ("nyquist", "qc", "Nyquist sampling check per channel and axis"))


def _record_entities(g: Graph, records: dict[str, Any]) -> dict[str, list[str]]:
    """Ledger records that are results of a stage (another engineer's record kinds), by stage."""
    out: dict[str, list[str]] = {}
    for kind, stage, what in STAGE_RECORDS:
        body = records.get(kind)
        if not isinstance(body, dict):
            continue
        verdict = next((f"{k}: {body[k]}" for k in ("verdict", "passed", "ok", "summary", "status")
                        if k in body and isinstance(body[k], (str, bool, int, float))), None)
        g.add({"@id": f"#record-{kind}", "@type": "CreativeWork", "name": what,
               "additionalType": f"microfair ledger record {kind}", **({"description": verdict} if verdict else {})})
        out.setdefault(stage, []).append(f"#record-{kind}")
    return out


def _verdict_entity(g: Graph, records: dict[str, Any]) -> None:
    v = records.get("backup_verdict")
    if v:
        g.add({"@id": "#backup-verdict", "@type": "CreativeWork", "name": "3-2-1 verdict",
               "description": ("3-2-1 holds" if v.get("compliant") else "3-2-1 does not hold: "
                               + "; ".join(v.get("reasons") or [])) + f" ({v.get('copies')} verified copies)",
               "dateModified": v.get("evaluated_at")})


def build_graph(ledger: Any, uid: str, root: str | Path | None) -> Graph:
    ds = ledger.require(uid)
    records = dataset_records(ledger, uid)
    prov = records.get(RECORD) or {}
    events = significant(ledger.events(uid))
    g = Graph()
    g.add({"@id": "./", "@type": "Dataset"})
    loc = E.Locator(root)
    p = _data_entities(g, loc, ds, ledger.files(uid), prov, records)
    _context_entities(g, ds, prov, records, p)
    workflow = workflow_entities(g, loc, PIPELINE)
    _irods_entities(g, records)
    _verdict_entity(g, records)
    actions = [a for a in [acquisition_action(g, records, p, ds.collected_at)] if a]
    p.extra = _record_entities(g, records)
    actions += stage_actions(g, events, prov.get("runs") or {}, records, p)
    snaps = {r.get("snapshot") for k, r in records.items() if k.startswith("backup:") and r.get("snapshot")}
    actions += backup_actions(g, records, backup_run_events(ledger, snaps), p)
    actions += workflow_run(g, workflow, events, p, [c["@id"] for c in g.of_type("ControlAction")])
    updated = max((iso(e.ended_at) for e in events if e.ended_at), default=None)
    _root(g, ds, records, p, actions, updated, prov.get("licence"))
    g.entities["./"]["mainEntity"] = E.ref(workflow)
    g.entities["./"]["hasPart"] = [E.ref(e) for e in g.of_type("File") + g.of_type("Dataset") if e["@id"] != "./"]
    return g


def build_crate(ledger: Any, uid: str, root: str | Path | None = None) -> dict[str, Any]:
    """The crate of ``uid`` as JSON-LD, for a crate written into folder ``root`` (see the module docstring)."""
    from rocrate.rocrate import ROCrate

    g = build_graph(ledger, uid, root)
    crate = ROCrate(version=VERSION)
    crate.metadata.extra_contexts.append(E.WORKFLOW_RUN_CONTEXT)
    for k, v in g.entities["./"].items():
        if not k.startswith("@"):
            crate.root_dataset[k] = v
    for ent in g.entities.values():
        if ent["@id"] != "./":
            crate.add_jsonld(ent)
    return crate.metadata.generate()
