"""DataCite Metadata Schema 4.x for a deposited study: the REST ``/dois`` payload, and a draft-DOI client.

The payload describes the study as a ``Dataset``: creators (authors with ORCID and
affiliations, ROR when given), title, publisher, publication year, subjects, licence,
funding, and the BioImage Archive accession (and its DOI) as related identifiers.
Without ``event`` DataCite creates a *draft* DOI, which can be edited or deleted;
publishing it (``event: publish``) is left to a person.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import requests

from microfair.deposit.study import StudyMetadata, licence

log = logging.getLogger(__name__)

SCHEMA_VERSION = "http://datacite.org/schema/kernel-4"
BIA_STUDY_URL = "https://www.ebi.ac.uk/biostudies/bioimages/studies/{accno}"
CONTENT_TYPE = "application/vnd.api+json"


class DataciteError(RuntimeError):
    """DataCite refused a request; the message carries DataCite's own error titles."""


def _creator(a: Any, study: StudyMetadata) -> dict[str, Any]:
    given, family = a.first_name, a.last_name
    if not (given or family) and a.name:
        parts = a.name.rsplit(" ", 1)
        given, family = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    out: dict[str, Any] = {"name": f"{family}, {given}" if given and family else (a.display_name or ""),
                           "nameType": "Personal"}
    if given:
        out["givenName"] = given
    if family:
        out["familyName"] = family
    if a.orcid:
        out["nameIdentifiers"] = [{"nameIdentifier": f"https://orcid.org/{a.orcid.rsplit('/', 1)[-1]}",
                                   "nameIdentifierScheme": "ORCID", "schemeUri": "https://orcid.org"}]
    affs = []
    for ref in a.affiliations:
        o = study.organisation(ref)
        if o is None:
            continue
        aff: dict[str, Any] = {"name": o.name}
        if o.ror:
            aff.update(affiliationIdentifier=o.ror, affiliationIdentifierScheme="ROR", schemeUri="https://ror.org")
        affs.append(aff)
    out["affiliation"] = affs
    return out


def datacite_attributes(study: StudyMetadata, *, accession: str, bia_doi: str | None = None,
                        publisher: str = "EMBL-EBI BioImage Archive", doi: str | None = None,
                        prefix: str | None = None, url: str | None = None,
                        publication_year: int | None = None, eln_links: Sequence[str] = ()) -> dict[str, Any]:
    """The DataCite ``attributes`` of one deposited study (Metadata Schema 4.x, JSON:API form)."""
    release = study.release_date or dt.date.today()
    attrs: dict[str, Any] = {
        "creators": [_creator(a, study) for a in study.authors],
        "titles": [{"title": study.title or ""}],
        "publisher": {"name": publisher},
        "publicationYear": publication_year or release.year,
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": "Bioimaging study"},
        "url": url or BIA_STUDY_URL.format(accno=accession),
        "descriptions": [{"description": study.description or "", "descriptionType": "Abstract"}],
        "subjects": [{"subject": k} for k in study.keywords if k],
        "dates": [{"date": release.isoformat(), "dateType": "Available"}],
        "alternateIdentifiers": [{"alternateIdentifier": accession,
                                  "alternateIdentifierType": "BioStudies accession"}],
        "relatedIdentifiers": [],
        "language": "en",
        "schemaVersion": SCHEMA_VERSION,
    }
    if bia_doi and bia_doi != doi:
        attrs["relatedIdentifiers"].append({"relatedIdentifier": bia_doi, "relatedIdentifierType": "DOI",
                                            "relationType": "IsIdenticalTo"})
    for p in study.publications:
        if p.doi:
            attrs["relatedIdentifiers"].append({
                "relatedIdentifier": p.doi.removeprefix("https://doi.org/"), "relatedIdentifierType": "DOI",
                "relationType": "IsSupplementTo"})
    for url in dict.fromkeys(eln_links):  # the notebook entries the data were recorded in (guide §3.2.3)
        attrs["relatedIdentifiers"].append({"relatedIdentifier": url, "relatedIdentifierType": "URL",
                                            "relationType": "IsDocumentedBy"})
    lic = licence(study.license)
    if lic:
        attrs["rightsList"] = [{"rights": lic[0], "rightsUri": lic[1],
                                "rightsIdentifier": "CC0-1.0" if lic[0] == "CC0" else "CC-BY-4.0",
                                "rightsIdentifierScheme": "SPDX", "schemeUri": "https://spdx.org/licenses/"}]
    if study.funding and study.funding.grants:
        attrs["fundingReferences"] = [{"funderName": g.funder, **({"awardNumber": g.id} if g.id else {})}
                                      for g in study.funding.grants if g.funder]
    if doi:
        attrs["doi"] = doi
    elif prefix:
        attrs["prefix"] = prefix
    return attrs


def datacite_payload(study: StudyMetadata, **kw: Any) -> dict[str, Any]:
    """The body of ``POST /dois`` (no ``event``: a draft DOI)."""
    return {"data": {"type": "dois", "attributes": datacite_attributes(study, **kw)}}


class DataciteClient:
    """DataCite REST API with a repository account (basic auth; the password is never logged).

    :param base_url: ``https://api.test.datacite.org`` (test) or ``https://api.datacite.org``.
    """

    def __init__(self, base_url: str, repository_id: str, password: str, *, timeout: float = 60.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.repository_id = repository_id
        self._auth = (repository_id, password)
        self.timeout = timeout
        self.http = session or requests.Session()
        self.http.trust_env = False

    def __repr__(self) -> str:
        return f"DataciteClient({self.base_url!r}, repository={self.repository_id!r})"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.http.request(method, f"{self.base_url}/{path}", json=body, auth=self._auth, timeout=self.timeout,
                              headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})
        if r.status_code in (401, 403):
            raise DataciteError(f"DataCite refused repository {self.repository_id!r} (HTTP {r.status_code}): "
                                "check the DataCite connection")
        if r.status_code >= 400:
            try:
                titles = [e.get("title", str(e)) for e in r.json().get("errors", [])]
            except ValueError:
                titles = [r.text[:500]]
            raise DataciteError(f"DataCite answered HTTP {r.status_code} to {method} /{path}: " + "; ".join(titles))
        return r.json() if r.content else {}

    def create_draft(self, payload: dict[str, Any]) -> str:
        """Create a draft DOI (``payload`` without ``event``); return the DOI."""
        payload["data"]["attributes"].pop("event", None)
        out = self._call("POST", "dois", payload)
        doi = out["data"]["attributes"]["doi"] if "attributes" in out.get("data", {}) else out["data"]["id"]
        log.info("DataCite: draft DOI %s created", doi)
        return doi

    def update(self, doi: str, payload: dict[str, Any]) -> None:
        payload["data"]["attributes"].pop("event", None)
        payload["data"]["attributes"].pop("prefix", None)
        payload["data"]["attributes"]["doi"] = doi
        self._call("PUT", f"dois/{doi}", payload)
        log.info("DataCite: DOI %s updated", doi)

    def get(self, doi: str) -> dict[str, Any]:
        return self._call("GET", f"dois/{doi}")
