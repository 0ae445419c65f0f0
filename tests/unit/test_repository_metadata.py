"""The study file mapped to Dataverse's citation block and to Zenodo's metadata (the tables in docs/deposit.md),
the licence as SPDX, every missing citation field listed, and the publication AVUs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from microfair.deposit.dataverse import biomedical_fields, citation_fields, dataset_version
from microfair.deposit.study import parse_study
from microfair.deposit.targets.citation import spdx, validate_citation
from microfair.deposit.zenodo import zenodo_metadata
from microfair.irods.avu import Avu, publication_avus

EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"


def _study(**changes):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(changes)
    study, problems = parse_study(data)
    assert problems == []
    return study


def _values(fields):
    return {f["typeName"]: f["value"] for f in fields}


def test_citation_block_from_the_example_study():
    study = _study(publications=[{"title": "A paper", "authors": "Lebon A", "year": 2025,
                                  "doi": "https://doi.org/10.1234/abc"}])
    v = _values(citation_fields(study, {"production_date": "2024-05-02", "bia_accession": "S-BIAD100"}))
    assert v["title"] == study.title and v["subject"] == ["Medicine, Health and Life Sciences"]
    lebon, martin = v["author"]
    assert lebon["authorName"]["value"] == "Lebon, Ana" and martin["authorName"]["value"] == "Martin, Paul"
    assert lebon["authorIdentifier"]["value"] == "0000-0002-1825-0097"
    assert lebon["authorIdentifierScheme"] == {"typeName": "authorIdentifierScheme",
                                               "typeClass": "controlledVocabulary", "multiple": False,
                                               "value": "ORCID"}
    assert lebon["authorAffiliation"]["value"] == "Example institute imaging facility"
    assert "authorIdentifier" not in martin
    assert v["datasetContact"][0]["datasetContactEmail"]["value"] == "ana.lebon@example.org"
    assert v["dsDescription"][0]["dsDescriptionValue"]["value"] == study.description
    assert [k["keywordValue"]["value"] for k in v["keyword"]] == study.keywords
    assert v["publication"][0]["publicationIDNumber"]["value"] == "10.1234/abc"
    assert v["grantNumber"][0]["grantNumberAgency"]["value"] == "Example Research Agency"
    assert v["grantNumber"][0]["grantNumberValue"]["value"] == "ERA-2024-0001"
    assert v["productionDate"] == "2024-05-02" and v["distributionDate"] == dt.date.today().isoformat()
    assert v["otherId"][0]["otherIdValue"]["value"] == "S-BIAD100"
    body = dataset_version(study, biomedical=True)["datasetVersion"]
    assert body["license"] == {"name": "CC BY 4.0", "uri": "http://creativecommons.org/licenses/by/4.0"}
    bio = _values(body["metadataBlocks"]["biomedical"]["fields"])
    assert bio["studyAssayOrganism"] == ["Homo sapiens"] and bio["studyAssayCellType"] == ["HeLa cell line"]
    assert "biomedical" not in dataset_version(study)["datasetVersion"]["metadataBlocks"]
    assert _values(biomedical_fields(_study(biosamples=[{"title": "x", "organism": "Xenopus laevis"}]))) == {
        "studyAssayOtherOrganism": ["Xenopus laevis"], "studyAssayOtherTechnologyType": ["fluorescence microscopy"]}


def test_zenodo_metadata_from_the_example_study():
    today = dt.date(2026, 12, 1)
    study = _study(release_date="2027-03-01")
    md = zenodo_metadata(study, {"bia_accession": "S-BIAD100", "bia_doi": "10.6019/S-BIAD100"}, community="mf",
                         today=today)
    assert md["upload_type"] == "dataset" and md["title"] == study.title and md["license"] == "cc-by-4.0"
    assert md["creators"][0] == {"name": "Lebon, Ana", "affiliation": "Example institute imaging facility",
                                 "orcid": "0000-0002-1825-0097"}
    assert md["access_right"] == "embargoed" and md["embargo_date"] == "2027-03-01"
    assert md["publication_date"] == "2026-12-01"
    assert {"identifier": "10.6019/S-BIAD100", "relation": "isVariantFormOf", "scheme": "doi"} in md[
        "related_identifiers"]
    assert md["communities"] == [{"identifier": "mf"}] and "ERA-2024-0001" in md["notes"]
    assert md["description"].startswith("<p>Demonstration study")
    assert zenodo_metadata(_study(), today=today)["access_right"] == "open"


def test_licences_as_spdx():
    assert [spdx(x) for x in ("CC-BY-4.0", "cc by 4.0", "CC0", "cc0-1.0", "Etalab 2.0", "GPL-3.0", None)] == [
        "CC-BY-4.0", "CC-BY-4.0", "CC0-1.0", "CC0-1.0", "Etalab-2.0", None, None]


def test_every_missing_citation_field_is_listed_with_its_path():
    data = yaml.safe_load(EXAMPLE.read_text())
    for k in ("title", "description", "subject"):
        del data[k]
    data["license"] = "GPL-3.0"
    data["authors"][0].pop("email")
    data["authors"][1] = {"affiliations": ["nowhere"]}
    study, _ = parse_study(data)
    dv = {(p.path, p.message.split(" (")[0]) for p in validate_citation(study, "dataverse")}
    assert {p for p, _m in dv} == {"title", "description", "subject", "license", "authors[0].email",
                                   "authors[1].name", "authors[1].affiliations[0]"}
    zen = {p.path for p in validate_citation(study, "zenodo")}
    assert zen == {"title", "description", "license", "authors[1].name", "authors[1].affiliations[0]"}


def test_publication_avus():
    avus = publication_avus("microfair", {"zenodo": {"pid": "10.5281/zenodo.1", "landing_page": "https://z/1",
                                                      "state": "published", "version": 1}, "dataverse": {}})
    assert avus == [Avu("microfair.publication.zenodo.pid", "10.5281/zenodo.1"),
                    Avu("microfair.publication.zenodo.landing_page", "https://z/1"),
                    Avu("microfair.publication.zenodo.state", "published"),
                    Avu("microfair.publication.zenodo.version", "1")]
