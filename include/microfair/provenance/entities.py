"""Contextual entities of a dataset's crate: people, the facility, the microscope, software, licence, project.

Each function returns a plain JSON-LD dict (``@id``, ``@type`` and properties). Identifiers are
the public ones when the ledger has them (ORCID, ROR, licence URL, NCBI taxon) and local
``#`` identifiers otherwise, so that two crates of one facility name the same thing alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

Entity = dict[str, Any]

PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
WORKFLOW_RUN_CRATE = "https://w3id.org/ro/wfrun/workflow/0.5"
PROVENANCE_RUN_CRATE = "https://w3id.org/ro/wfrun/provenance/0.5"
WORKFLOW_RUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
ORCID = re.compile(r"(\d{4}-\d{4}-\d{4}-\d{3}[\dX])$")
LICENCES = {
    "CC-BY-4.0": ("https://creativecommons.org/licenses/by/4.0/", "Creative Commons Attribution 4.0 International"),
    "CC0-1.0": ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0 1.0 Universal"),
    "CC-BY-SA-4.0": ("https://creativecommons.org/licenses/by-sa/4.0/", "Creative Commons Attribution-ShareAlike 4.0"),
    "CC-BY-NC-4.0": ("https://creativecommons.org/licenses/by-nc/4.0/", "Creative Commons Attribution-NonCommercial 4.0"),
}


def ref(entity_or_id: Entity | str) -> dict[str, str]:
    return {"@id": entity_or_id if isinstance(entity_or_id, str) else entity_or_id["@id"]}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


class Locator:
    """``@id`` of a file or folder: relative to the crate root when inside it, else an absolute ``file:`` URI."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root).resolve() if root else None

    def id_for(self, path: str | Path, *, folder: bool = False) -> str:
        p = Path(path).resolve()
        if self.root is not None:
            if p == self.root:
                return "./"
            if p.is_relative_to(self.root):
                rel = quote(p.relative_to(self.root).as_posix())
                return rel + "/" if folder else rel
        return "file://" + quote(p.as_posix()) + ("/" if folder else "")


def licence(value: str | None) -> Entity | None:
    """The licence as a CreativeWork named by its URL (SPDX ids and ``CC BY 4.0`` spellings); None if unknown."""
    if not value:
        return None
    key = re.sub(r"[\s_]+", "-", value.strip()).upper().replace("CC-ZERO", "CC0-1.0")
    key = {"CC-BY": "CC-BY-4.0", "CC0": "CC0-1.0"}.get(key, key)
    for spdx, (url, name) in LICENCES.items():
        if key == spdx.upper():
            return {"@id": url, "@type": "CreativeWork", "name": name, "identifier": spdx}
    if value.startswith(("http://", "https://")):
        return {"@id": value, "@type": "CreativeWork", "name": value}
    return {"@id": f"#licence-{slug(value)}", "@type": "CreativeWork", "name": value}


def organization(facility: dict[str, Any] | None) -> Entity:
    f = facility or {}
    ror = f.get("ror")
    out: Entity = {"@id": ror if ror and ror.startswith("https://") else f"#facility-{slug(f.get('name') or 'facility')}",
                   "@type": "Organization", "name": f.get("name") or "imaging facility"}
    if f.get("institution"):
        out["parentOrganization"] = f["institution"]
    if f.get("contact_email"):
        out["email"] = f["contact_email"]
    return out


def person(author: dict[str, Any], affiliation: Entity | None = None) -> Entity:
    """A Person from a sidecar, REMBI or study-file author; identified by ORCID when given."""
    name = author.get("name") or " ".join(p for p in (author.get("first_name"), author.get("last_name")) if p)
    orcid = ORCID.search(author.get("orcid") or "")
    out: Entity = {"@id": f"https://orcid.org/{orcid.group(1)}" if orcid else f"#person-{slug(name or 'unknown')}",
                   "@type": "Person", "name": name or "unknown"}
    if author.get("email"):
        out["email"] = author["email"]
    if author.get("role"):
        out["jobTitle"] = author["role"]
    if affiliation is not None:
        out["affiliation"] = ref(affiliation)
    return out


def operator(rembi: dict[str, Any] | None, name_check: dict[str, Any] | None) -> Entity | None:
    """Who acquired the image: the sidecar author whose role is acquisition (else the first), or the name's user."""
    authors = ((rembi or {}).get("study") or {}).get("authors") or []
    pick = next((a for a in authors if "acqui" in (a.get("role") or "").lower()), authors[0] if authors else None)
    if pick:
        return person(pick)
    user = ((name_check or {}).get("tokens") or {}).get("creator")
    return {"@id": f"#person-{slug(user)}", "@type": "Person", "name": user,
            "description": "user named in the file name"} if user else None


def depositor(bia: dict[str, Any] | None) -> Entity | None:
    """The deposit's contact author (study file): flagged ``contact``, else the first with an e-mail."""
    authors = ((bia or {}).get("study") or {}).get("authors") or []
    pick = (next((a for a in authors if a.get("contact")), None) or next((a for a in authors if a.get("email")), None)
            or (authors[0] if authors else None))
    return person(pick) if pick else None


def software(name: str, version: str | None, url: str | None = None) -> Entity:
    out: Entity = {"@id": url or f"#software-{slug(name)}" + (f"-{slug(version)}" if version else ""),
                   "@type": "SoftwareApplication", "name": name}
    if version:
        out["softwareVersion"] = version
    return out


def pypi_software(dist: str, version: str | None) -> Entity:
    if dist == "microfair":
        return software("microfair", version)
    url = f"https://pypi.org/project/{dist}/{version}/" if version else f"https://pypi.org/project/{dist}/"
    return {**software(dist, version, url), "url": f"https://pypi.org/project/{dist}/"}


def microscope(name: str, rembi: dict[str, Any] | None, image_metadata: dict[str, Any] | None) -> Entity:
    """The microscope as an IndividualProduct: the facility's name for it, its model and maker from the file."""
    acq = (rembi or {}).get("image_acquisition") or {}
    params = acq.get("image_acquisition_parameters") or {}
    meta = image_metadata or {}
    out: Entity = {"@id": f"#microscope-{slug(name)}", "@type": "IndividualProduct", "name": name,
                   "identifier": name}
    if meta.get("instrument") or acq.get("imaging_instrument"):
        out["model"] = meta.get("instrument") or acq.get("imaging_instrument")
    if meta.get("manufacturer"):
        out["manufacturer"] = meta["manufacturer"]
    objective = ", ".join(str(x) for x in (params.get("objective"),
                                           params.get("magnification") and f"{params['magnification']}x",
                                           params.get("numerical_aperture") and f"NA {params['numerical_aperture']}",
                                           params.get("immersion")) if x)
    if objective:
        out["description"] = f"objective: {objective}"
    return out


def taxon(rembi: dict[str, Any] | None) -> Entity | None:
    org = ((rembi or {}).get("biosample") or {}).get("organism") or {}
    name = org.get("scientific_name")
    tax = str(org.get("ncbi_taxon") or "").removeprefix("NCBITaxon_").removeprefix("NCBITaxon:") or None
    if not name and not tax:
        return None
    return {"@id": f"http://purl.obolibrary.org/obo/NCBITaxon_{tax}" if tax else f"#taxon-{slug(name)}",
            "@type": "Taxon", "name": name or f"NCBI taxon {tax}"}


def parameter(prefix: str, key: str, value: Any) -> Entity:
    """One setting as a PropertyValue (Process Run Crate: parameter values are objects of the action)."""
    if isinstance(value, (list, dict)):
        shown: Any = json.dumps(value, ensure_ascii=False)
    else:
        shown = value if isinstance(value, (int, float, bool)) or value is None else str(value)
    return {"@id": f"{prefix}-param-{slug(key)}", "@type": "PropertyValue", "name": key,
            "value": "null" if shown is None else shown}
