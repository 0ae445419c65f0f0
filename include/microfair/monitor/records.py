"""A dataset's ledger records, as the detail page shows them.

Records are read generically: every kind a dataset has is shown. The kinds the stages
write are summarised in the facility's words (iRODS registration, BioImage Archive
deposit, DataCite); any other kind is shown as its JSON fields. Nothing is invented for
a record that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Record kinds the detail page shows in a section of their own (not again under "Other records").
SECTION_KINDS = ("dublin_core", "rembi", "qc", "backup_verdict", "irods", "bia", "datacite", "pixel_proof",
                 "nyquist", "eln", "metadata_report", "provenance", "publications")

#: Large sub-documents left out of the generic view (shown as a count or not at all).
_BULKY = ("study", "payload", "uploads", "channels", "histogram", "locations")


@dataclass(frozen=True)
class Field:
    label: str
    value: str
    href: str | None = None
    code: bool = False  # a path, checksum or identifier: shown in a monospace font


@dataclass
class RecordView:
    kind: str
    title: str
    fields: list[Field]
    problems: list[str] = field(default_factory=list)
    raw: dict[str, Any] | None = None  # the whole body, for the collapsible "all fields" view


def _s(value: Any) -> str | None:
    if value is None or value == "" or value == [] or value == {}:
        return None
    return str(value)


def _add(out: list[Field], label: str, value: Any, *, href: str | None = None, code: bool = False) -> None:
    text = _s(value)
    if text is not None:
        out.append(Field(label, text, href, code))


def irods_view(body: dict[str, Any]) -> RecordView:
    """The iRODS registration: where the data live in the zone, and what was verified."""
    f: list[Field] = []
    _add(f, "Collection", body.get("collection"), code=True)
    _add(f, "Raw data object", body.get("data_object"), code=True)
    _add(f, "OME-Zarr collection", body.get("zarr_collection"), code=True)
    _add(f, "Mode", body.get("mode"))
    _add(f, "Checksum (iRODS)", body.get("checksum"), code=True)
    objects, verified = body.get("objects"), body.get("checksums_verified")
    if objects is not None:
        _add(f, "Objects", f"{objects} ({verified if verified is not None else '?'} checksums verified, "
                           f"{body.get('transferred', 0)} transferred in the last run)")
    if body.get("avus_added") is not None or body.get("avus_removed") is not None:
        _add(f, "Metadata (AVUs)", f"+{body.get('avus_added') or 0} / -{body.get('avus_removed') or 0} in the last run")
    _add(f, "Owner", body.get("owner"))
    _add(f, "Group (read access)", body.get("group"))
    _add(f, "Registered", body.get("registered_at"))
    return RecordView("irods", "iRODS", f, _problems(body), body)


def bia_view(body: dict[str, Any]) -> RecordView:
    """The BioImage Archive deposit: accession, status, DOI, release date and uploads."""
    f: list[Field] = []
    acc = body.get("accession")
    _add(f, "Accession", acc, href=body.get("url") or (
        f"https://www.ebi.ac.uk/biostudies/bioimages/studies/{acc}" if acc else None), code=True)
    _add(f, "Status", body.get("status"))
    _add(f, "Version", body.get("version"))
    doi = body.get("doi")
    _add(f, "DOI", doi, href=f"https://doi.org/{doi}" if doi else None, code=True)
    _add(f, "Release date", body.get("release_date"))
    _add(f, "Upload folder", body.get("root_path"), code=True)
    uploads = body.get("uploads")
    if isinstance(uploads, dict) and uploads:
        _add(f, "Files uploaded", len(uploads))
    study = body.get("study")
    if isinstance(study, dict):
        _add(f, "Study title", study.get("title"))
    return RecordView("bia", "BioImage Archive", f, _problems(body), body)


def datacite_view(body: dict[str, Any]) -> RecordView:
    f: list[Field] = []
    doi = body.get("doi")
    _add(f, "DOI", doi, href=f"https://doi.org/{doi}" if doi else None, code=True)
    _add(f, "State", body.get("state"))
    _add(f, "For accession", body.get("accession"), code=True)
    _add(f, "Metadata file", body.get("file"), code=True)
    return RecordView("datacite", "DataCite", f, _problems(body), body)


def generic_view(kind: str, body: Any) -> RecordView:
    """Any other record: its scalar fields, bulky sub-documents summarised by size."""
    f: list[Field] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, (dict, list)):
                if key in _BULKY or len(str(value)) > 300:
                    _add(f, key, f"{len(value)} item(s)")
                else:
                    _add(f, key, _inline(value))
            else:
                _add(f, key, value)
    else:
        _add(f, "value", body)
    return RecordView(kind, kind.replace("_", " "), f, _problems(body) if isinstance(body, dict) else [],
                      body if isinstance(body, dict) else None)


def _inline(value: dict | list) -> str:
    """A small dict or list on one line, readable: ``X: 512, Y: 512`` (nested parts in parentheses)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_inline(v) if isinstance(v, (dict, list)) else v}" for k, v in value.items()
                         if v is not None and v != "")
    return ", ".join(f"({_inline(v)})" if isinstance(v, (dict, list)) else str(v) for v in value)


KNOWN = {"irods": irods_view, "bia": bia_view, "datacite": datacite_view}


def record_view(kind: str, body: Any) -> RecordView:
    view = KNOWN.get(kind)
    return view(body) if view and isinstance(body, dict) else generic_view(kind, body)


def other_records(records: dict[str, Any]) -> list[RecordView]:
    """Every record kind that has no section of its own on the detail page, in name order."""
    return [generic_view(k, records[k]) for k in sorted(records) if k not in SECTION_KINDS]


def _problems(body: dict[str, Any]) -> list[str]:
    errs = body.get("errors") or body.get("error")
    if isinstance(errs, str):
        return [errs]
    if isinstance(errs, list):
        return [str(e) for e in errs]
    return []
