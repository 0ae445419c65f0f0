"""Study file → Dataverse native JSON: the citation block, the biomedical block where it fits, the licence.

The table of this mapping is in ``docs/deposit.md`` (section 4).
"""

from __future__ import annotations

from typing import Any

from microfair.deposit.study import StudyMetadata
from microfair.deposit.targets.citation import (
    LICENCES,
    affiliation_names,
    citation_name,
    orcid_id,
    release_date,
    spdx,
)

def _p(name: str, value: Any, multiple: bool = False) -> dict[str, Any]:
    return {"typeName": name, "typeClass": "primitive", "multiple": multiple, "value": value}


def _cv(name: str, value: Any, multiple: bool = False) -> dict[str, Any]:
    return {"typeName": name, "typeClass": "controlledVocabulary", "multiple": multiple, "value": value}


def _c(name: str, values: list[dict[str, Any]]) -> dict[str, Any]:
    return {"typeName": name, "typeClass": "compound", "multiple": True, "value": values}


def _sub(**fields: Any) -> dict[str, Any]:
    """One value of a compound field: ``{typeName: primitive}`` for each non-empty field."""
    return {k: (_cv(k, v) if k.endswith("Scheme") or k == "publicationIDType" else _p(k, v))
            for k, v in fields.items() if v not in (None, "", [])}


def citation_fields(study: StudyMetadata, context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The citation block's fields for ``study`` (``context``: ``production_date``, ``bia_accession``)."""
    ctx = context or {}
    contact = study.contact()
    fields = [_p("title", study.title)]
    fields.append(_c("author", [_sub(authorName=citation_name(a),
                                     authorAffiliation="; ".join(affiliation_names(a, study)) or None,
                                     authorIdentifierScheme="ORCID" if orcid_id(a) else None,
                                     authorIdentifier=orcid_id(a)) for a in study.authors]))
    if contact is not None:
        fields.append(_c("datasetContact", [_sub(
            datasetContactName=citation_name(contact), datasetContactEmail=contact.email,
            datasetContactAffiliation="; ".join(affiliation_names(contact, study)) or None)]))
    fields.append(_c("dsDescription", [_sub(dsDescriptionValue=study.description)]))
    fields.append(_cv("subject", list(study.subject), multiple=True))
    if study.keywords:
        fields.append(_c("keyword", [_sub(keywordValue=k) for k in study.keywords if k]))
    pubs = [_sub(publicationCitation=", ".join(str(x) for x in (p.authors, p.title, p.year) if x) or None,
                 publicationIDType="doi" if p.doi else None,
                 publicationIDNumber=p.doi.removeprefix("https://doi.org/") if p.doi else None,
                 publicationURL=f"https://doi.org/{p.doi.removeprefix('https://doi.org/')}" if p.doi else None)
            for p in study.publications]
    if pubs:
        fields.append(_c("publication", pubs))
    grants = [_sub(grantNumberAgency=g.funder, grantNumberValue=g.id)
              for g in (study.funding.grants if study.funding else []) if g.funder]
    if grants:
        fields.append(_c("grantNumber", grants))
    notes = " ".join(x for x in ((study.funding.statement if study.funding else None), study.acknowledgements) if x)
    if notes:
        fields.append(_p("notesText", notes))
    production = study.production_date or ctx.get("production_date")
    if production:
        fields.append(_p("productionDate", str(production)))
    fields.append(_p("distributionDate", release_date(study).isoformat()))
    if ctx.get("bia_accession"):
        fields.append(_c("otherId", [_sub(otherIdAgency="BioImage Archive", otherIdValue=ctx["bia_accession"])]))
    return fields


def biomedical_fields(study: StudyMetadata, context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The biomedical block where the study says something it holds: organism, cell type, technology."""
    out: list[dict[str, Any]] = []
    organisms = sorted({b.organism.scientific_name for b in study.biosamples
                        if b.organism and b.organism.scientific_name})
    known = {"Homo sapiens", "Mus musculus", "Rattus norvegicus", "Danio rerio", "Drosophila melanogaster",
             "Caenorhabditis elegans", "Saccharomyces cerevisiae", "Arabidopsis thaliana", "Escherichia coli"}
    if [o for o in organisms if o in known]:
        out.append(_cv("studyAssayOrganism", [o for o in organisms if o in known], multiple=True))
    if [o for o in organisms if o not in known]:
        out.append(_p("studyAssayOtherOrganism", [o for o in organisms if o not in known], multiple=True))
    cells = sorted({b.biological_entity for b in study.biosamples if b.biological_entity})
    if cells:
        out.append(_p("studyAssayCellType", cells, multiple=True))
    methods = sorted({m.value for a in study.image_acquisitions for m in a.imaging_method if m.value}
                     | set((context or {}).get("imaging_methods") or []))
    if methods:
        out.append(_p("studyAssayOtherTechnologyType", methods, multiple=True))
    return out


def licence_of(study: StudyMetadata) -> dict[str, str] | None:
    key = spdx(study.license)
    if key is None:
        return None
    name, uri = LICENCES[key]
    return {"name": name, "uri": uri}


def dataset_version(study: StudyMetadata, context: dict[str, Any] | None = None, *,
                    biomedical: bool = False) -> dict[str, Any]:
    """The native JSON body of ``POST /api/dataverses/{alias}/datasets``."""
    blocks: dict[str, Any] = {"citation": {"fields": citation_fields(study, context)}}
    bio = biomedical_fields(study, context) if biomedical else []
    if bio:
        blocks["biomedical"] = {"fields": bio}
    return {"datasetVersion": {"license": licence_of(study), "metadataBlocks": blocks}}
